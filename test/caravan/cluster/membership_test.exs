defmodule Caravan.Cluster.MembershipTest do
  use ExUnit.Case, async: true

  alias Caravan.Cluster.Membership

  describe "observe/3" do
    test "prunes a node only after disconnect_after consecutive misses" do
      m = Membership.new()
      {m, []} = Membership.observe(m, [:a@h, :b@h], 3)
      {m, []} = Membership.observe(m, [:a@h], 3)
      {m, []} = Membership.observe(m, [:a@h], 3)
      {m, [:b@h]} = Membership.observe(m, [:a@h], 3)
      assert Membership.known(m) == [:a@h]
    end

    test "an answer that lists the node again resets its count" do
      m = Membership.new()
      {m, []} = Membership.observe(m, [:a@h, :b@h], 2)
      {m, []} = Membership.observe(m, [:a@h], 2)
      {m, []} = Membership.observe(m, [:a@h, :b@h], 2)
      {m, []} = Membership.observe(m, [:a@h], 2)
      {_m, [:b@h]} = Membership.observe(m, [:a@h], 2)
    end

    test ":never prunes nothing" do
      m =
        Enum.reduce(1..50, elem(Membership.observe(Membership.new(), [:b@h], :never), 0), fn _,
                                                                                             m ->
          {m, []} = Membership.observe(m, [], :never)
          m
        end)

      assert Membership.known(m) == [:b@h]
    end
  end

  describe "candidates/6" do
    test "skips self, connected, in-flight and backing-off nodes" do
      m = Membership.new() |> Membership.connect_result(:d@h, :error, 0, 1000, 1000)
      m = Membership.connect_result(m, :d@h, :error, 0, 1000, 1000)
      found = [:self@h, :a@h, :b@h, :c@h, :d@h, :e@h]
      assert Membership.candidates(m, found, [:a@h], [:b@h], :self@h, 10) == [:c@h, :e@h]
      assert Membership.candidates(m, found, [:a@h], [:b@h], :self@h, 1_000) == [:c@h, :d@h, :e@h]
    end
  end

  describe "connect_result/6" do
    test "the first failure retries at the next poll, then waits, capped at max_backoff" do
      retry_at = fn m -> elem(m.failures[:x@h], 1) end
      m = Membership.connect_result(Membership.new(), :x@h, :error, 0, 1000, 5000)
      assert retry_at.(m) == 0
      m = Membership.connect_result(m, :x@h, :error, 0, 1000, 5000)
      assert retry_at.(m) == 1000
      m = Membership.connect_result(m, :x@h, :error, 0, 1000, 5000)
      assert retry_at.(m) == 3000

      m =
        Enum.reduce(1..100, m, fn _, m ->
          Membership.connect_result(m, :x@h, :error, 0, 1000, 5000)
        end)

      assert retry_at.(m) == 5000
      assert Membership.failures(m, :x@h) == 103
    end

    test "a success clears the backoff" do
      m = Membership.connect_result(Membership.new(), :x@h, :error, 0, 1000, 5000)
      m = Membership.connect_result(m, :x@h, :ok, 0, 1000, 5000)
      assert Membership.failures(m, :x@h) == 0
    end
  end
end

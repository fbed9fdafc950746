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

  describe "observe/4: evidence of absence" do
    test "an answer not known to be complete counts no misses, but joins" do
      m = Membership.new()
      partial = %{complete: false, self_listed: false}
      {m, []} = Membership.observe(m, [:a@h, :b@h], 1)
      {m, []} = Membership.observe(m, [:a@h, :c@h], 1, partial)
      assert Membership.known(m) == [:a@h, :b@h, :c@h]
      {_m, [:b@h, :c@h]} = Membership.observe(m, [:a@h], 1)
    end

    test "once this node was listed, an answer that leaves it out counts no misses" do
      m = Membership.new()
      listed = %{complete: true, self_listed: true}
      {m, []} = Membership.observe(m, [:a@h, :b@h], 1, listed)
      # Empty (every check failing at once), or wrong about this node.
      for _ <- 1..10, do: {_, []} = Membership.observe(m, [], 1)
      {m, []} = Membership.observe(m, [], 1)
      # A real scale-down, this node still listed: pruned at once.
      {_m, [:b@h]} = Membership.observe(m, [:a@h], 1, listed)
    end
  end

  describe "candidates/6" do
    test "skips self, connected, in-flight and backing-off nodes" do
      m = Membership.new() |> Membership.connect_result(:d@h, :error, 0, 1000, 1000)
      m = Membership.connect_result(m, :d@h, :error, 0, 1000, 1000)
      found = [:self@h, :a@h, :b@h, :c@h, :d@h, :e@h]
      assert Membership.candidates(m, found, [:a@h], [:b@h], :self@h, 10) == [:c@h, :e@h]
      # Never-tried peers first, then the failing one.
      assert Membership.candidates(m, found, [:a@h], [:b@h], :self@h, 1_000) == [:c@h, :e@h, :d@h]
    end

    test "retries rotate: the one due longest goes first" do
      m =
        Enum.reduce([{:x@h, 0}, {:y@h, 100}, {:z@h, 200}], Membership.new(), fn {n, t}, m ->
          Membership.connect_result(m, n, :error, t, 1000, 1000)
        end)

      assert Membership.candidates(m, [:z@h, :y@h, :new@h, :x@h], [], [], :self@h, 5_000) ==
               [:new@h, :x@h, :y@h, :z@h]

      m = Membership.connect_result(m, :x@h, :error, 5_000, 1000, 1000)

      assert Membership.candidates(m, [:z@h, :y@h, :x@h], [], [], :self@h, 10_000) == [
               :y@h,
               :z@h,
               :x@h
             ]
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

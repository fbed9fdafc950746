defmodule Caravan.Cluster.DnsStrategyTest do
  # Unit tests: an injected dns_client (Caravan.Test.FakeDns) and connect /
  # disconnect / list MFAs that report to the test process, as libcluster's
  # own tests do. Real nodes and real DNS are in the integration tests.
  use ExUnit.Case, async: true

  import ExUnit.CaptureLog

  alias Caravan.Cluster.DnsStrategy
  alias Caravan.Test.FakeDns

  @poll 50

  setup context do
    {:ok, connected} = Agent.start_link(fn -> [] end)

    query =
      "t#{:erlang.phash2(context.test)}-#{System.unique_integer([:positive])}.service.consul"

    {:ok, connected: connected, query: query}
  end

  # The MFAs. The node is appended to the args, as libcluster does.
  def connect(test, connected, node) do
    send(test, {:connect, node, self()})

    cond do
      String.contains?(Atom.to_string(node), "stalled") -> Process.sleep(:infinity)
      String.contains?(Atom.to_string(node), "refuses") -> false
      true -> Agent.update(connected, &[node | &1]) && true
    end
  end

  def disconnect(test, connected, node) do
    send(test, {:disconnect, node})
    Agent.update(connected, &List.delete(&1, node))
    true
  end

  def list(connected), do: Agent.get(connected, & &1)

  defp record(port, host, addresses \\ []),
    do: %{port: port, host: host, priority: 1, weight: 1, addresses: addresses}

  defp start(ctx, config) do
    state = %Cluster.Strategy.State{
      topology: :unit,
      connect: {__MODULE__, :connect, [self(), ctx.connected]},
      disconnect: {__MODULE__, :disconnect, [self(), ctx.connected]},
      list_nodes: {__MODULE__, :list, [ctx.connected]},
      config:
        Keyword.merge(
          [query: ctx.query, node_sname: "app", poll_interval: @poll, dns_client: FakeDns],
          config
        )
    }

    start_supervised!({DnsStrategy, [state]})
  end

  test "the first poll connects every peer at start, named <node_sname>-<port>@<target>", ctx do
    FakeDns.serve(ctx.query, [
      {:ok, [record(4001, "a.node.dc1.consul"), record(4002, "b.node.dc1.consul")]}
    ])

    start(ctx, poll_interval: 60_000)
    assert_receive {:connect, :"app-4001@a.node.dc1.consul", _}, 1_000
    assert_receive {:connect, :"app-4002@b.node.dc1.consul", _}, 1_000
  end

  test "skips this node and nodes already listed, and connects nothing twice", ctx do
    {:ok, _} = Agent.start_link(fn -> nil end)
    Agent.update(ctx.connected, fn _ -> [:"app-4002@b"] end)
    self_name = Node.self() |> Atom.to_string()
    FakeDns.serve(ctx.query, [{:ok, [record(4001, "a"), record(4002, "b")]}])

    if self_name == "nonode@nohost" do
      start(ctx, [])
      assert_receive {:connect, :"app-4001@a", _}, 1_000
      refute_receive {:connect, :"app-4002@b", _}, 5 * @poll
      refute_receive {:connect, :"app-4001@a", _}, 2 * @poll
    end
  end

  test "legacy get_nodes/1 clients work, and their empty answers never prune", ctx do
    FakeDns.serve(ctx.query, [{:ok, [record(4001, "a")]}, {:ok, []}])

    log =
      capture_log(fn ->
        start(ctx, dns_client: FakeDns.Legacy, disconnect_after: 1)
        assert_receive {:connect, :"app-4001@a", _}, 1_000
        refute_receive {:disconnect, _}, 10 * @poll
      end)

    # Said once, at info, not as a failure at every poll.
    line = "Caravan.Test.FakeDns.Legacy lists no peers for #{inspect(ctx.query)}"
    assert [_] = Regex.scan(~r/\[info\] .*#{Regex.escape(line)}/, log)
    # (capture_log sees the whole VM's log: look for this query only.)
    refute log =~ "DNS lookup for #{inspect(ctx.query)} failed"
  end

  test "connects in parallel: a stalled peer delays nobody and is abandoned at connect_timeout",
       ctx do
    FakeDns.serve(ctx.query, [
      {:ok, [record(4001, "stalled"), record(4002, "b"), record(4003, "c")]}
    ])

    log =
      capture_log(fn ->
        strategy = start(ctx, poll_interval: 60_000, connect_timeout: 200)
        assert_receive {:connect, :"app-4001@stalled", stalled_pid}, 1_000
        assert_receive {:connect, :"app-4002@b", _}, 100
        assert_receive {:connect, :"app-4003@c", _}, 100
        ref = Process.monitor(stalled_pid)
        assert_receive {:DOWN, ^ref, :process, _, :killed}, 1_000
        # The strategy logs in the handler that killed the attempt; wait for it to finish.
        :sys.get_state(strategy)
      end)

    assert log =~
             "unable to connect to :\"app-4001@stalled\": no handshake within connect_timeout (200 ms)"
  end

  test "at most connect_concurrency attempts run at once", ctx do
    records = for i <- 1..5, do: record(4000 + i, "stalled#{i}")
    FakeDns.serve(ctx.query, [{:ok, records}])

    capture_log(fn ->
      start(ctx, poll_interval: 60_000, connect_concurrency: 2, connect_timeout: 60_000)
      assert_receive {:connect, _, _}, 1_000
      assert_receive {:connect, _, _}, 1_000
      refute_receive {:connect, _, _}, 200
    end)
  end

  test "a refusing peer is retried with backoff, not at every poll", ctx do
    FakeDns.serve(ctx.query, [{:ok, [record(4001, "refuses")]}])

    capture_log(fn ->
      strategy = start(ctx, poll_interval: @poll, max_backoff: 4 * @poll)
      Caravan.Test.Nodes.wait_until(fn -> length(FakeDns.calls(ctx.query)) >= 20 end, 15_000)
      :sys.get_state(strategy)
    end)

    attempts = count_messages({:connect, :"app-4001@refuses"})
    polls = length(FakeDns.calls(ctx.query))
    # Retry delays run 0, 1, 3, 4, 4, ... poll intervals: about a third as
    # many attempts as polls; half allows for polls a loaded machine delays
    # (the delays are in milliseconds).
    assert attempts <= div(polls, 2) + 1, "#{attempts} attempts over #{polls} polls"
    assert attempts >= 3
  end

  test "a node missing from disconnect_after successful answers is disconnected", ctx do
    full = {:ok, [record(4001, "a"), record(4002, "b")]}
    FakeDns.serve(ctx.query, [full])

    capture_log(fn ->
      start(ctx, disconnect_after: 3)
      assert_receive {:connect, :"app-4002@b", _}, 1_000
      FakeDns.set(ctx.query, [{:ok, [record(4001, "a")]}])
      assert_receive {:disconnect, :"app-4002@b"}, 20 * @poll
    end)

    calls_after_change = FakeDns.calls(ctx.query)
    assert length(calls_after_change) >= 4
  end

  test "an unresolved target is no evidence that its node left", ctx do
    up = record(4001, "a.example", [{127, 0, 0, 5}])
    unresolved = Map.merge(record(4001, "a.example"), %{unresolved: true})
    FakeDns.serve(ctx.query, [{:ok, [up]}])

    capture_log(fn ->
      start(ctx, node_host: :address, disconnect_after: 2)
      assert_receive {:connect, :"app-4001@127.0.0.5", _}, 1_000
      # Its A/AAAA lookups fail, poll after poll: it stays.
      FakeDns.set(ctx.query, [{:ok, [unresolved]}])
      refute_receive {:disconnect, _}, 15 * @poll
      # Gone from a whole answer: pruned as usual.
      FakeDns.set(ctx.query, [{:ok, []}])
      assert_receive {:disconnect, :"app-4001@127.0.0.5"}, 20 * @poll
    end)
  end

  test "failed lookups never disconnect, however many", ctx do
    FakeDns.serve(ctx.query, [{:ok, [record(4001, "a")]}, {:error, :timeout}])

    log =
      capture_log(fn ->
        start(ctx, disconnect_after: 1)
        assert_receive {:connect, :"app-4001@a", _}, 1_000
        refute_receive {:disconnect, _}, 15 * @poll
      end)

    assert log =~ "keeping every connected node until DNS answers again"
    assert list(ctx.connected) == [:"app-4001@a"]
  end

  test "nodes connected by other means are never touched", ctx do
    Agent.update(ctx.connected, fn _ -> [:"other-1@elsewhere"] end)
    FakeDns.serve(ctx.query, [{:ok, []}])

    capture_log(fn ->
      start(ctx, disconnect_after: 1)
      refute_receive {:disconnect, _}, 10 * @poll
    end)
  end

  test "a hung lookup never blocks the strategy, and lookups never overlap", ctx do
    FakeDns.serve(ctx.query, [{:hang, 10 * @poll, {:ok, [record(4001, "a")]}}])
    pid = start(ctx, [])
    Process.sleep(2 * @poll)
    {time, state} = :timer.tc(fn -> :sys.get_state(pid) end)
    assert is_pid(state.lookup)
    assert time < 100_000
    assert_receive {:connect, :"app-4001@a", _}, 30 * @poll
    assert FakeDns.max_in_flight(ctx.query) == 1
  end

  test "node_host: :address names peers after glue, .addr. targets and IPv6", ctx do
    FakeDns.serve(ctx.query, [
      {:ok,
       [
         record(4001, "node1.node.dc1.consul", [{10, 0, 1, 5}]),
         record(4002, "0a000106.addr.dc1.consul", []),
         record(4003, "v6.node.dc1.consul", [{0x2001, 0xDB8, 0, 0, 0, 0, 0, 1}]),
         record(4004, "noaddr.example.com", [])
       ]}
    ])

    log =
      capture_log(fn ->
        start(ctx, node_host: :address, poll_interval: 60_000)
        assert_receive {:connect, :"app-4001@10.0.1.5", _}, 1_000
        assert_receive {:connect, :"app-4002@10.0.1.6", _}, 1_000
        assert_receive {:connect, :"app-4003@2001:db8::1", _}, 1_000
        refute_receive {:connect, _, _}, 100
      end)

    assert log =~ "carries no address for \"noaddr.example.com\""
    assert [opts] = FakeDns.calls(ctx.query)
    assert opts[:resolve_addresses] == true
  end

  test "discovery options reach the client", ctx do
    FakeDns.serve(ctx.query, [{:ok, []}])

    start(ctx,
      poll_interval: 60_000,
      nameservers: ["127.0.0.1:8600"],
      timeout: 300,
      transport: :tcp
    )

    Caravan.Test.Nodes.wait_until(fn -> FakeDns.calls(ctx.query) != [] end, 2_000, 10)
    assert [opts] = FakeDns.calls(ctx.query)
    assert opts[:nameservers] == ["127.0.0.1:8600"]
    assert opts[:timeout] == 300
    assert opts[:transport] == :tcp
    assert opts[:resolve_addresses] == false
  end

  test "hostile records are ignored with a warning and never become atoms", ctx do
    bad = ["a@b", "a b", "x\u0000y", "é.consul", String.duplicate("a", 300), "-x"]

    FakeDns.serve(ctx.query, [
      {:ok, Enum.map(bad, &record(4001, &1)) ++ [record(0, "ok"), record(70_000, "ok")]}
    ])

    log =
      capture_log(fn ->
        start(ctx, poll_interval: 60_000)
        refute_receive {:connect, _, _}, 300
      end)

    assert log =~ "is not an RFC 1123 hostname"
    assert log =~ "is not a TCP port"

    for host <- bad do
      assert_raise ArgumentError, fn -> String.to_existing_atom("app-4001@" <> host) end
    end
  end

  test "at most max_nodes peers are taken from one answer", ctx do
    FakeDns.serve(ctx.query, [{:ok, for(i <- 1..10, do: record(4000 + i, "h#{i}"))}])

    log =
      capture_log(fn ->
        start(ctx, poll_interval: 60_000, max_nodes: 3)
        for _ <- 1..3, do: assert_receive({:connect, _, _}, 1_000)
        refute_receive {:connect, _, _}, 200
      end)

    assert log =~ "only the first max_nodes (3) are used"
  end

  test "fresh names every poll stop at max_node_names, loudly", ctx do
    topology = :"budget#{System.unique_integer([:positive])}"
    n = :counters.new(1, [])

    answers =
      Stream.repeatedly(fn ->
        :counters.add(n, 1, 1)
        i = :counters.get(n, 1)

        {:ok,
         for(j <- 1..10, do: record(4001, "fresh#{i}x#{j}#{System.unique_integer([:positive])}"))}
      end)
      |> Enum.take(30)

    FakeDns.serve(ctx.query, answers)

    state = %{
      topology: topology,
      connect: {__MODULE__, :connect, [self(), ctx.connected]},
      disconnect: {__MODULE__, :disconnect, [self(), ctx.connected]},
      list_nodes: {__MODULE__, :list, [ctx.connected]},
      config: [
        query: ctx.query,
        node_sname: "app",
        poll_interval: 10,
        dns_client: FakeDns,
        max_node_names: 25
      ]
    }

    log =
      capture_log(fn ->
        start_supervised!({DnsStrategy, [state]})
        minted = fn -> Caravan.Cluster.NodeNames.minted(topology) end
        Caravan.Test.Nodes.wait_until(fn -> minted.() == 25 end, 10_000)
        # Three more polls of fresh names create none.
        polls = length(FakeDns.calls(ctx.query))
        Caravan.Test.Nodes.wait_until(fn -> length(FakeDns.calls(ctx.query)) >= polls + 3 end)
      end)

    assert Caravan.Cluster.NodeNames.minted(topology) == 25

    names = for {:ok, records} <- answers, %{host: host} <- records, do: "app-4001@" <> host

    existing =
      Enum.count(names, fn name ->
        try do
          String.to_existing_atom(name)
        rescue
          ArgumentError -> false
        end
      end)

    assert existing == 25
    assert log =~ "its max_node_names budget (25)"
  end

  test "emits libcluster's telemetry events for connects and disconnects", ctx do
    :telemetry.attach(self())
    FakeDns.serve(ctx.query, [{:ok, [record(4001, "a"), record(4002, "refuses")]}])

    capture_log(fn ->
      start(ctx, disconnect_after: 1)

      assert_receive {:telemetry, [:libcluster, :connect_node, :ok], %{duration: d},
                      %{node: :"app-4001@a", topology: :unit}},
                     1_000

      assert is_integer(d)

      assert_receive {:telemetry, [:libcluster, :connect_node, :error], %{},
                      %{node: :"app-4002@refuses", topology: :unit, reason: :unreachable}},
                     1_000

      FakeDns.set(ctx.query, [{:ok, []}])

      assert_receive {:telemetry, [:libcluster, :disconnect_node, :ok], %{duration: _},
                      %{node: :"app-4001@a", topology: :unit}},
                     1_000
    end)
  end

  describe "starting" do
    test "as libcluster's supervisor starts it: start_link([state])", ctx do
      FakeDns.serve(ctx.query, [{:ok, [record(4001, "a")]}])

      child =
        Caravan.Test.LibclusterSupervisor.child_spec(:caravan,
          strategy: DnsStrategy,
          connect: {__MODULE__, :connect, [self(), ctx.connected]},
          list_nodes: {__MODULE__, :list, [ctx.connected]},
          config: [query: ctx.query, node_sname: "app", dns_client: FakeDns]
        )

      start_supervised!(child)
      assert_receive {:connect, :"app-4001@a", _}, 1_000
    end

    test "standalone, with flat options and a name", ctx do
      FakeDns.serve(ctx.query, [{:ok, []}])
      name = :"strategy#{System.unique_integer([:positive])}"

      pid =
        start_supervised!(
          {DnsStrategy, query: ctx.query, node_sname: "app", dns_client: FakeDns, name: name}
        )

      assert Process.whereis(name) == pid
      assert :sys.get_state(pid).config.connect == {:net_kernel, :connect_node, []}
    end

    test "bad options fail the start with the ArgumentError", ctx do
      assert_raise ArgumentError, ~r/invalid :poll_interval 0/, fn ->
        DnsStrategy.start_link(query: ctx.query, node_sname: "app", poll_interval: 0)
      end
    end
  end

  defp count_messages(pattern, acc \\ 0) do
    {tag, node} = pattern

    receive do
      {^tag, ^node, _} -> count_messages(pattern, acc + 1)
    after
      0 -> acc
    end
  end
end

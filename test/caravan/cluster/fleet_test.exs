defmodule Caravan.Cluster.FleetTest do
  # Membership at fleet scale against the Consul fixture (trimmed, shuffled
  # UDP answers), with a fake cluster: connect / disconnect / list MFAs that
  # report to the test process, as libcluster's own tests do.
  use ExUnit.Case, async: true

  import ExUnit.CaptureLog

  alias Caravan.Cluster.DnsStrategy
  alias Caravan.Test.{ConsulDns, FakeDns}

  @poll 100
  @service "fleet"
  @query "fleet.service.consul"

  def connect(test, connected, node) do
    send(test, {:connect, node})

    cond do
      String.contains?(Atom.to_string(node), "stalled") -> Process.sleep(:infinity)
      true -> Agent.update(connected, &Enum.uniq([node | &1])) && true
    end
  end

  def disconnect(test, connected, node) do
    send(test, {:disconnect, node})
    Agent.update(connected, &List.delete(&1, node))
    true
  end

  def list(connected), do: Agent.get(connected, & &1)

  defp start(config) do
    {:ok, connected} = Agent.start_link(fn -> [] end)

    {topology, config} = Keyword.pop(config, :topology, :fleet)

    state = %Cluster.Strategy.State{
      topology: topology,
      connect: {__MODULE__, :connect, [self(), connected]},
      disconnect: {__MODULE__, :disconnect, [self(), connected]},
      list_nodes: {__MODULE__, :list, [connected]},
      config:
        Keyword.merge(
          [query: @query, node_sname: "app", node_host: :address, poll_interval: @poll],
          config
        )
    }

    Process.put(:strategy, start_supervised!({DnsStrategy, [state]}))
    connected
  end

  # `count` instances behind the Consul fixture, all connected by a strategy
  # started with `config`.
  defp joined_fleet(count, config) do
    consul = ConsulDns.start!()
    all = instances(1..count)
    ConsulDns.set(consul, @service, all)
    connected = start([nameservers: [ConsulDns.nameserver(consul)]] ++ config)
    wait_until(fn -> length(Agent.get(connected, & &1)) == count end, 10_000)
    {consul, all, connected}
  end

  defp instances(range), do: for(i <- range, do: {{127, 1, div(i, 200), rem(i, 200) + 1}, 4001})
  defp node_of({{a, b, c, d}, port}), do: :"app-#{port}@#{a}.#{b}.#{c}.#{d}"

  defp disconnects, do: drain({:disconnect, :_}, [])

  # The next `count` disconnects, sorted; fewer if `timeout` ms pass first.
  defp await_disconnects(count, timeout) do
    deadline = System.monotonic_time(:millisecond) + timeout

    Enum.reduce_while(1..count, [], fn _, acc ->
      receive do
        {:disconnect, node} -> {:cont, [node | acc]}
      after
        max(deadline - System.monotonic_time(:millisecond), 0) -> {:halt, acc}
      end
    end)
    |> Enum.sort()
  end

  defp drain(pattern, acc) do
    receive do
      {:disconnect, node} -> drain(pattern, [node | acc])
    after
      0 -> Enum.reverse(acc)
    end
  end

  test "150 instances behind trimmed, shuffled UDP answers: all joined, none wrongly dropped, the removed pruned on time" do
    capture_log(fn ->
      {consul, all, connected} = joined_fleet(150, disconnect_after: 3)
      # 40 polls, counted in queries answered (one a poll once polls ask
      # over TCP first; time stretches under load).
      polls_before = ConsulDns.queries(consul)
      asked = fn -> consul |> ConsulDns.queries() |> then(&(&1.udp + &1.tcp)) end
      wait_until(fn -> asked.() - polls_before.udp - polls_before.tcp >= 40 end, 40 * @poll * 10)
      assert disconnects() == []
      assert length(Agent.get(connected, & &1)) == 150
      # After the first TCP confirmation, polls ask over TCP first: UDP is
      # asked again only when an answer shrinks.
      assert ConsulDns.queries(consul).udp - polls_before.udp <= 2

      # Ten instances go for good: exactly those are pruned, within
      # disconnect_after polls (one more for the poll in flight at the
      # change), counted in queries, one a poll: time stretches under load.
      {gone, staying} = Enum.split(all, 10)
      before = asked.()
      ConsulDns.set(consul, @service, staying)
      expected = Enum.sort(Enum.map(gone, &node_of/1))
      assert_receive {:disconnect, first}, 5_000
      # Counted as the first disconnect arrives: the poll that made it.
      assert asked.() - before <= 3 + 1
      assert Enum.sort([first | await_disconnects(length(expected) - 1, 5_000)]) == expected
      after_prune = asked.()
      wait_until(fn -> asked.() - after_prune >= 10 end, 10 * @poll * 10)
      assert disconnects() == []
    end)
  end

  test "when TCP fails after polls moved to it, UDP answers still join newcomers and drop nobody" do
    capture_log(fn ->
      {consul, all, connected} = joined_fleet(120, disconnect_after: 2)
      # Polls ask over TCP first now; TCP starts failing, and a newcomer
      # registers: it is in about two UDP answers of three.
      ConsulDns.tcp(consul, :servfail)
      newcomer = {{127, 9, 0, 1}, 4001}
      ConsulDns.set(consul, @service, [newcomer | all])
      node = node_of(newcomer)
      assert_receive {:connect, ^node}, 30 * @poll * 5
      before = ConsulDns.srv_queries(consul)
      wait_until(fn -> ConsulDns.srv_queries(consul) - before >= 20 end, 20 * @poll * 10)
      assert disconnects() == []
      assert length(Agent.get(connected, & &1)) == 121
    end)
  end

  test "A/AAAA follow-ups failing for 10 polls disconnect nobody" do
    # Instances registered with host names: Consul's SRV answer carries
    # their addresses only while its recursors answer; when they fail, it
    # has no glue and the A/AAAA follow-ups get SERVFAIL.
    consul = ConsulDns.start!()
    hosts = for i <- 1..4, into: %{}, do: {"n#{i}.example", {127, 2, 0, i}}
    ConsulDns.set(consul, @service, for(host <- Map.keys(hosts), do: {host, 4001}))
    ConsulDns.recursors(consul, hosts)

    capture_log(fn ->
      connected =
        start(nameservers: [ConsulDns.nameserver(consul)], disconnect_after: 2, timeout: 500)

      wait_until(fn -> length(Agent.get(connected, & &1)) == 4 end, 5_000)
      ConsulDns.recursors(consul, :failing)
      # 10 polls, each an SRV query and its failing follow-ups.
      before = ConsulDns.srv_queries(consul)
      wait_until(fn -> ConsulDns.srv_queries(consul) - before >= 10 end, 10 * @poll * 10)
      assert disconnects() == []
      assert length(Agent.get(connected, & &1)) == 4
    end)
  end

  test "40 stalled peers listed first never starve a healthy new one" do
    FakeDns.serve(@query, [{:ok, stalled()}])

    capture_log(fn ->
      start(
        dns_client: FakeDns,
        node_host: :target,
        poll_interval: 200,
        connect_timeout: 200,
        disconnect_after: :never
      )

      # The stalled peers fill every connect slot, poll after poll.
      wait_until(fn -> length(FakeDns.calls(@query)) >= 5 end, 5 * 200 * 10)
      drain_connects()
      FakeDns.set(@query, [{:ok, stalled() ++ [record(5000, "healthy")]}])
      polls = length(FakeDns.calls(@query))
      assert_receive {:connect, :"app-5000@healthy"}, 10 * 200
      # Within 2 polls, counted in lookups (one may have been in flight).
      assert length(FakeDns.calls(@query)) - polls <= 2 + 1
    end)
  end

  test "a forged burst of 10x the per-poll rate leaves room for an honest newcomer" do
    topology = :"burst#{System.unique_integer([:positive])}"
    forged = for i <- 1..100, do: record(6000 + i, "forged-#{topology}-#{i}")
    FakeDns.serve(@query, [{:ok, forged}])

    log =
      capture_log(fn ->
        start_named(topology, max_new_names: 10, max_node_names: 100)

        # The first poll's 10 names are connected; the poll schedule may move
        # its phase, so one more forged poll can run before the answer changes.
        for _ <- 1..10, do: assert_receive({:connect, _}, 1_000)
        honest = record(5000, "honest-#{topology}")
        FakeDns.set(@query, [{:ok, [honest]}])
        polls = length(FakeDns.calls(@query))
        honest_node = :"app-5000@honest-#{topology}"
        assert_receive {:connect, ^honest_node}, 10 * @poll
        # At the next poll (one more may have been in flight at the change).
        assert length(FakeDns.calls(@query)) - polls <= 1 + 1
      end)

    assert log =~ "90 new node name(s) left for later polls: at most max_new_names (10)"
    assert Caravan.Cluster.NodeNames.minted(topology) <= 21
  end

  test "the name budget warns at 80%, and every refusal is an error with telemetry" do
    :telemetry.attach(self())
    topology = :"budget#{System.unique_integer([:positive])}"
    fresh = fn poll -> for i <- 1..10, do: record(6000 + i, "f#{poll}-#{topology}-#{i}") end
    FakeDns.serve(@query, for(poll <- 1..4, do: {:ok, fresh.(poll)}))

    log =
      capture_log(fn ->
        start_named(topology, max_node_names: 20)

        assert_receive {:telemetry, [:caravan, :node_names, :near_limit],
                        %{minted: 20, budget: 20}, %{topology: ^topology}},
                       1_000

        assert_receive {:telemetry, [:caravan, :node_names, :refused], %{count: 10, budget: 20},
                        %{topology: ^topology}},
                       1_000
      end)

    assert log =~ "80% of its max_node_names budget (20)"
    assert log =~ "refused 10 new node name(s)"
  end

  # A strategy of its own topology (its own name budget) on FakeDns.
  defp start_named(topology, config) do
    start(
      [topology: topology, dns_client: FakeDns, node_host: :target, disconnect_after: :never] ++
        config
    )
  end

  defp stalled, do: for(i <- 1..40, do: record(4000 + i, "stalled#{i}"))
  defp record(port, host), do: %{port: port, host: host, priority: 1, weight: 1, addresses: []}

  defp drain_connects do
    receive do
      {:connect, _} -> drain_connects()
    after
      0 -> :ok
    end
  end

  test "a dns_client that never returns: polls go on, and the strategy answers throughout" do
    FakeDns.serve(@query, [{:ok, [record(4001, "a")]}, {:hang, :infinity, {:ok, []}}])

    log =
      capture_log(fn ->
        start(dns_client: FakeDns, node_host: :target, timeout: 200)
        pid = Process.get(:strategy)
        assert_receive {:connect, :"app-4001@a"}, 1_000
        # The second lookup hangs; from its start until the next poll the
        # strategy answers, and the next poll runs within 2 * poll_interval
        # + the deadline (timeout 200 + 1,000 ms), allowing 250 ms for load.
        wait_until(fn -> length(FakeDns.calls(@query)) >= 2 end, 2_000)
        hung_at = System.monotonic_time(:millisecond)

        samples =
          Stream.repeatedly(fn ->
            assert %{lookup: _} = :sys.get_state(pid, 1_000)
            Process.sleep(50)
            length(FakeDns.calls(@query))
          end)
          |> Enum.take_while(&(&1 < 3))
          |> length()

        assert System.monotonic_time(:millisecond) - hung_at <= 2 * @poll + 1_200 + 250
        assert samples >= 10
        assert disconnects() == []
      end)

    assert log =~ "gave no answer within 1200 ms"
  end

  defp wait_until(fun, timeout) do
    cond do
      fun.() -> :ok
      timeout <= 0 -> flunk("condition not met in time")
      true -> Process.sleep(20) && wait_until(fun, timeout - 20)
    end
  end
end

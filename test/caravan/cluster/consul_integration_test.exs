defmodule Caravan.Cluster.ConsulIntegrationTest do
  # Real nodes (OS processes) with the epmd-less flags and DnsStrategy on the
  # default transport, behind the Consul fixture: trimmed, shuffled UDP
  # answers and empty ones. Ports 26000-26999.
  use ExUnit.Case, async: false

  alias Caravan.Test.{Cluster, ConsulDns, Nodes}

  @moduletag :cluster
  @moduletag timeout: 180_000
  @service "app-dist"
  @poll 300

  setup do
    Nodes.refute_epmd!()
    :ok
  end

  defp instances(members), do: for({name, ip} <- members, do: {ip, Caravan.Epmd.dist_port(name)})

  defp start!(members, consul, strategy \\ []) do
    Cluster.start_members!(
      members,
      consul.server,
      Keyword.merge(
        [query: "#{@service}.service.consul", poll_interval: @poll, node_host: :address],
        strategy
      )
    )
  end

  @watch_nodedowns """
  if old = Process.whereis(:test_nodedowns), do: Process.exit(old, :kill)

  pid =
    spawn(fn ->
      :net_kernel.monitor_nodes(true)

      loop = fn loop, downs ->
        receive do
          {:nodedown, node} -> loop.(loop, [node | downs])
          {:downs, from} -> send(from, {:downs, downs}) && loop.(loop, downs)
          _ -> loop.(loop, downs)
        end
      end

      loop.(loop, [])
    end)

  Process.register(pid, :test_nodedowns)
  """

  @nodedowns "send(:test_nodedowns, {:downs, self()}); receive do {:downs, d} -> d end"

  # Checks every 100 ms, until `done?` holds, that every node still sees
  # every other, and then that no node saw a nodedown (a disconnect healed
  # between two checks included).
  defp stays_meshed!(nodes, done?) do
    Enum.each(nodes, &Nodes.eval!(&1, @watch_nodedowns))

    Stream.repeatedly(fn -> Cluster.meshed?(nodes) end)
    |> Enum.reduce_while(:ok, fn meshed, :ok ->
      cond do
        not meshed ->
          flunk("the mesh broke: #{inspect(Enum.map(nodes, &{&1.name, Cluster.visible(&1)}))}")

        done?.() ->
          {:halt, :ok}

        true ->
          Process.sleep(100) && {:cont, :ok}
      end
    end)

    downs = for node <- nodes, do: {node.name, Nodes.eval!(node, @nodedowns)}
    assert Enum.all?(downs, &(elem(&1, 1) == [])), "nodedowns: #{inspect(downs)}"
  end

  # True once `count` more SRV queries have been answered: `count` polls of
  # one node, or one poll of `count` nodes. Polls are counted, not timed:
  # they stretch on a loaded machine.
  defp after_polls(consul, count) do
    from = ConsulDns.srv_queries(consul)
    fn -> ConsulDns.srv_queries(consul) - from >= count end
  end

  test "12 nodes among 112 instances, answered in trimmed, shuffled UDP subsets: meshed for 30 polls, no disconnect" do
    members = Cluster.loopback_members(26001, 12)
    # 100 more instances nobody listens for: UDP answers carry about 90 of
    # the 112, a different subset each time.
    phantoms = for i <- 1..100, do: {{127, 0, 3, i}, 26001}
    consul = ConsulDns.start!()
    ConsulDns.set(consul, @service, instances(members) ++ phantoms)

    nodes = start!(members, consul)
    Cluster.await_mesh!(nodes, 10 * @poll)
    stays_meshed!(nodes, after_polls(consul, 30 * 12))
    assert %{udp: udp} = ConsulDns.queries(consul)
    assert udp >= 12, "the nodes asked over UDP first"
  end

  test "NXDOMAIN, then empty NOERROR, for 10 polls each while this node lives: no disconnect" do
    members = Cluster.loopback_members(26011, 3)
    consul = ConsulDns.start!()
    ConsulDns.set(consul, @service, instances(members))
    nodes = start!(members, consul, disconnect_after: 2)
    Cluster.await_mesh!(nodes, 10 * @poll)

    # Every check of the service fails at once (an agent restart, a bad
    # deploy of the check): Consul answers NXDOMAIN...
    ConsulDns.set(consul, @service, [])
    stays_meshed!(nodes, after_polls(consul, 10 * 3))
    # ...or NOERROR with no records.
    ConsulDns.empty_answer(consul, :nodata)
    stays_meshed!(nodes, after_polls(consul, 10 * 3))

    # The checks pass again, and a real scale-down is still pruned on time.
    [a, b, _c] = members
    ConsulDns.set(consul, @service, instances([a, b]))
    [na, nb, nc] = nodes
    Nodes.eval!(nc, "Supervisor.stop(Caravan.Test.ClusterSup)")

    Nodes.wait_until(
      fn -> nc.name not in Cluster.visible(na) and nc.name not in Cluster.visible(nb) end,
      10 * @poll
    )
  end
end

defmodule Caravan.Cluster.IntegrationTest do
  # Real nodes (OS processes) with the epmd-less flags and DnsStrategy, and a
  # real dnsmasq serving Consul's record shapes. Ports 22000-22999.
  use ExUnit.Case, async: false

  alias Caravan.Test.{Cluster, Dnsmasq, Nodes}

  @moduletag :cluster
  @moduletag timeout: 180_000
  @query "app-dist.service.consul"

  setup do
    Nodes.refute_epmd!()
    :ok
  end

  defp members(port, count, first_ip \\ 2), do: Cluster.loopback_members(port, count, first_ip)

  test "5 nodes on one port (the Nomad shape) form a full mesh within 2 poll intervals" do
    members = members(22001, 5)
    dns = Dnsmasq.start!(Cluster.records(@query, members))

    nodes =
      Cluster.start_members!(members, dns,
        query: @query,
        poll_interval: 1_000,
        node_host: :address
      )

    elapsed = Cluster.await_mesh!(nodes, 2 * 1_000)
    IO.puts("\n  5-node mesh complete #{elapsed} ms after the last node was up")
    assert Enum.map(nodes, &Cluster.visible/1) |> Enum.all?(&(length(&1) == 4))
  end

  test "node_host: :target names peers after .node. targets, resolved like any host" do
    # Three hosts, one port: app-22011@node<i>.node.dc1.consul on 127.0.0.<i+1>,
    # found through an ERL_INETRC file (one entry per address).
    members = for i <- 1..3, do: {"app-22011@node#{i}.node.dc1.consul", {127, 0, 0, i + 1}}
    inetrc = Path.join(System.tmp_dir!(), "caravan-inetrc-#{System.unique_integer([:positive])}")

    hosts =
      for {name, ip} <- members, do: ~s({host, #{inspect(ip)}, ["#{Cluster.host_of(name)}"]}.\n)

    File.write!(inetrc, [hosts, "{lookup, [file]}.\n"])
    on_exit(fn -> File.rm(inetrc) end)

    dns = Dnsmasq.start!(Cluster.records(@query, members, :target))
    env = [{"ERL_INETRC", inetrc}]
    nodes = Cluster.start_members!(members, dns, [query: @query, poll_interval: 500], env: env)
    Cluster.await_mesh!(nodes, 5_000)
  end

  test "a node removed from DNS is disconnected after disconnect_after polls, not before" do
    [a, b, c] = members = members(22021, 3)
    dns = Dnsmasq.start!(Cluster.records(@query, members))

    nodes =
      Cluster.start_members!(members, dns,
        query: @query,
        poll_interval: 300,
        node_host: :address,
        disconnect_after: 3
      )

    [na, nb, nc] = nodes
    Cluster.await_mesh!(nodes)

    # c is leaving: its own strategy stops (as when Nomad stops it), then
    # Consul stops listing it.
    Nodes.eval!(nc, "Supervisor.stop(Caravan.Test.ClusterSup)")
    Dnsmasq.set_records(dns, Cluster.records(@query, [a, b]))
    changed = System.monotonic_time(:millisecond)

    # One poll later it is still there: one missing answer is not enough.
    Process.sleep(400)
    assert nc.name in Cluster.visible(na)

    Nodes.wait_until(
      fn -> nc.name not in Cluster.visible(na) and nc.name not in Cluster.visible(nb) end,
      10_000
    )

    elapsed = System.monotonic_time(:millisecond) - changed
    # Three missing answers at 300 ms intervals: no sooner than the third.
    assert elapsed >= 600, "disconnected after #{elapsed} ms"
    # OTP 25's global (prevent_overlapping_partitions) may briefly cut a-b as
    # c goes; the strategies reconnect them at their next poll.
    Nodes.wait_until(fn -> Cluster.visible(na) == [nb.name] end, 5_000)
    # Whichever strategy prunes first; global then drops c everywhere.
    assert Nodes.output(na) <> Nodes.output(nb) =~ "missing from 3 consecutive DNS answers"
    _ = c
  end

  test "DNS down for 10 polls disconnects nothing, and the cluster is intact when it returns" do
    members = members(22031, 3)
    dns = Dnsmasq.start!(Cluster.records(@query, members))

    nodes =
      Cluster.start_members!(members, dns,
        query: @query,
        poll_interval: 200,
        timeout: 150,
        node_host: :address,
        disconnect_after: 1
      )

    Cluster.await_mesh!(nodes)

    Dnsmasq.stop_server(dns)
    deadline = System.monotonic_time(:millisecond) + 10 * 200

    Stream.repeatedly(fn -> Cluster.meshed?(nodes) end)
    |> Stream.take_while(fn _ -> System.monotonic_time(:millisecond) < deadline end)
    |> Enum.each(fn meshed -> assert meshed, "a node was disconnected during the DNS outage" end)

    for node <- nodes do
      assert Nodes.output(node) =~ "keeping every connected node until DNS answers again"
    end

    Dnsmasq.start_server(dns)
    Process.sleep(3 * 200)
    assert Cluster.meshed?(nodes)
    [n | _] = nodes
    refute Nodes.output(n) =~ "disconnected from"
  end

  test "a stalled peer listed in DNS does not stop the others meshing within one poll" do
    stalled = {"app-22049@127.0.0.9", {127, 0, 0, 9}}
    Cluster.stalled_peer!({127, 0, 0, 9}, 22049)
    members = for i <- 2..4, do: {"app-#{22040 + i}@127.0.0.#{i}", {127, 0, 0, i}}
    dns = Dnsmasq.start!(Cluster.records(@query, [stalled | members]))

    # All members start first, so each one's first poll finds the stalled
    # peer and every other member: the mesh must not wait for the handshake
    # the stalled peer never completes (net_setuptime is 7 s).
    nodes =
      Cluster.start_members!(members, dns,
        query: @query,
        poll_interval: 1_000,
        node_host: :address
      )

    elapsed = Cluster.await_mesh!(nodes, 1_000)
    IO.puts("\n  mesh beside a stalled peer complete #{elapsed} ms after the last node was up")

    [n | _] = nodes
    Nodes.wait_for_output(n, "unable to connect to :\"app-22049@127.0.0.9\"", 10_000)
  end

  test "a killed node that restarts under the same name rejoins" do
    members = members(22051, 3)
    dns = Dnsmasq.start!(Cluster.records(@query, members))
    strategy = [query: @query, poll_interval: 300, node_host: :address]
    [na, nb, nc] = Cluster.start_members!(members, dns, strategy)
    Cluster.await_mesh!([na, nb, nc])
    creation = Nodes.eval!(nc, ":erlang.system_info(:creation)")

    Nodes.stop(nc)
    Nodes.wait_until(fn -> Cluster.visible(na) == [nb.name] end, 10_000)

    nc2 = Cluster.start_member!(List.last(members), dns, strategy)
    assert nc2.name == nc.name
    Cluster.await_mesh!([na, nb, nc2], 5_000)
    refute Nodes.eval!(nc2, ":erlang.system_info(:creation)") == creation
  end
end

defmodule Caravan.SystemResolverTest do
  # `nameservers: []` (the original 0.6 default) and `:system` ask the
  # nameservers of /etc/resolv.conf. The node runs in a network namespace
  # whose own resolv.conf (bind-mounted by `ip netns exec`) names a dnsmasq
  # on the namespace's private bridge, port 53: the namespace has no route
  # anywhere else, so no query leaves the machine.
  use ExUnit.Case, async: false

  alias Caravan.Test.{DnsServer, Dnsmasq, Netns, Nodes}

  @moduletag timeout: 120_000
  @query "likes-dist.service.consul"

  test "nameservers: [] and :system ask the nameserver /etc/resolv.conf names" do
    net = Netns.setup!(1)
    [host] = net.hosts

    dns =
      Dnsmasq.start!(DnsServer.addr_instance(@query, {10, 0, 1, 5}, 4711),
        address: net.bridge_ip,
        port: 53
      )

    Netns.resolv_conf!(host, net.bridge_ip)

    node = Nodes.start!(netns: host.netns)

    # The node sees its namespace's resolv.conf, not the machine's.
    assert Nodes.eval!(node, ~s|File.read!("/etc/resolv.conf")|) ==
             "nameserver #{:inet.ntoa(net.bridge_ip)}\n"

    target = %{port: 4711, host: "0a000105.addr.dc1.consul"}

    for client <- [Caravan.DnsClient, Caravan.DnsClient.InetRes], ns <- [[], :system] do
      assert {:ok, [found]} =
               Nodes.eval!(node, "client.lookup(query, nameservers: ns, timeout: 2_000)",
                 binding: [client: client, query: @query, ns: ns]
               ),
             "#{inspect(client)} with nameservers: #{inspect(ns)}"

      assert Map.take(found, [:port, :host]) == target
    end

    # The 0.6 call, and the strategy configured as 0.6 configured it.
    assert Nodes.eval!(node, "Caravan.DnsClient.get_nodes(query, [])", binding: [query: @query]) ==
             [{4711, "0a000105.addr.dc1.consul"}]

    code = """
    config = Caravan.Cluster.Config.new(query: query, node_sname: "likes", nameservers: [], node_host: :address)
    Caravan.Cluster.DnsStrategy.lookup_nodes(config)
    """

    assert Nodes.eval!(node, code, binding: [query: @query]) == {:ok, [:"likes-4711@10.0.1.5"]}

    # With the server gone the same lookups fail: the answers above came from it.
    DnsServer.stop_server(dns)

    assert {:error, {reason, _}} =
             Nodes.eval!(node, "Caravan.DnsClient.lookup(query, nameservers: [], timeout: 500)",
               binding: [query: @query]
             )

    assert reason in [:timeout, :unreachable]
  end
end

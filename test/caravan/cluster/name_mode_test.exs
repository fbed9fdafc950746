defmodule Caravan.Cluster.NameModeTest do
  # Short names (--sname) cannot reach a host with a dot, and long names
  # (--name) cannot reach one without (unless it is an IP): OTP refuses the
  # name (inet_tcp_dist:splitnode/3). Real nodes, a real dnsmasq; the
  # strategy names the mismatch once, with the fix, and leaves such peers
  # alone instead of failing them on every poll. Ports 27000-27099.
  use ExUnit.Case, async: false

  alias Caravan.Test.{Cluster, DnsServer, Dnsmasq, Nodes}

  @moduletag :cluster
  @moduletag timeout: 120_000
  @query "app-dist.service.consul"
  @poll 200

  setup do
    Nodes.refute_epmd!()
    :ok
  end

  defp start_node(name_opt, dns, strategy) do
    strategy =
      [
        query: @query,
        node_sname: "app",
        nameservers: [DnsServer.nameserver(dns)],
        poll_interval: @poll
      ] ++
        strategy

    Nodes.start!(
      [boot: quote(do: Caravan.Test.Cluster.boot_strategy(unquote(strategy)))] ++ name_opt
    )
  end

  # The node's log once it shows `polls` more polls (its debug lines).
  defp log_after_polls(node, polls) do
    Nodes.eval!(
      node,
      "Application.put_env(:caravan, :debug, true); Logger.configure(level: :debug)"
    )

    Nodes.wait_until(fn -> count(Nodes.output(node), "found nodes") >= polls end, 15_000, 50)
    Nodes.output(node)
  end

  defp count(text, pattern), do: length(String.split(text, pattern)) - 1

  test "a short-name node given IP hosts warns once, names the fix, and tries none of them" do
    dns =
      Dnsmasq.start!(
        DnsServer.addr_instance(@query, {127, 0, 0, 2}, 27002) ++
          DnsServer.addr_instance(@query, {127, 0, 0, 3}, 27003)
      )

    node = start_node([sname: "app-27001"], dns, node_host: :address)
    log = log_after_polls(node, 8)

    assert count(log, "cannot be reached: this node runs with short names (--sname)") == 1, log
    assert log =~ ~s|2 peer(s) from DNS, such as "app-27002@127.0.0.2"|
    assert log =~ "start the nodes with --name app-<port>@<host>"
    # OTP's own complaint, which came on every poll, never appears.
    refute log =~ "is illegal"
    refute log =~ "unable to connect"
    assert Cluster.visible(node) == []
  end

  test "a long-name node given hosts without a dot warns once and names the fix" do
    dns =
      Dnsmasq.start!(
        DnsServer.node_instance(@query, "worker-3", {127, 0, 0, 2}, 27012)
        |> plain_target()
      )

    node = start_node([name: "app-27011@127.0.0.1"], dns, node_host: :target)
    log = log_after_polls(node, 8)

    assert count(log, "cannot be reached: this node runs with long names (--name)") == 1, log
    assert log =~ ~s(such as "app-27012@worker-3")
    assert log =~ "use node_host: :address"
    refute log =~ "is illegal"
    refute log =~ "not reachable or refused"
  end

  test "matching modes connect as before, with no warning" do
    members = Cluster.loopback_members(27021, 2)
    dns = Dnsmasq.start!(Cluster.records(@query, members))

    nodes =
      Cluster.start_members!(members, dns,
        query: @query,
        poll_interval: @poll,
        node_host: :address
      )

    Cluster.await_mesh!(nodes, 5_000)

    for node <- nodes, do: refute(Nodes.output(node) =~ "cannot be reached")
  end

  # worker-3.node.dc1.consul -> worker-3: a bare host, as some DNS setups answer.
  defp plain_target(records) do
    Enum.map(records, fn
      {:srv, query, _host, port} -> {:srv, query, "worker-3", port}
      {type, _host, ip} -> {type, "worker-3", ip}
    end)
  end
end

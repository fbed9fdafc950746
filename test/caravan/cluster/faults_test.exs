defmodule Caravan.Cluster.FaultsTest do
  # Faults with real nodes (OS processes) and real or misbehaving DNS:
  # a network partition between namespaces, flapping answers, a crash loop,
  # slow answers. Ports 24000-24499. The figures printed here are the ones
  # in the README's "Reliability" section.
  use ExUnit.Case, async: false

  alias Caravan.Test.{Cluster, Dnsmasq, Netns, Nodes}

  @moduletag :faults
  @moduletag timeout: 180_000
  @query "app-dist.service.consul"

  setup do
    Nodes.refute_epmd!()
    :ok
  end

  defp attempts(node, peer) do
    ~r/unable to connect to #{Regex.escape(inspect(peer))}/
    |> Regex.scan(Nodes.output(node))
    |> length()
  end

  describe "network partition" do
    @poll 1_000
    @hold 8_000

    test "a host cut off is lost without a connect storm, and the mesh heals within 2 polls" do
      net = Netns.setup!(3)
      members = for h <- net.hosts, do: {"app-24001@#{:inet.ntoa(h.ip)}", h.ip}
      dns = Dnsmasq.start!(Cluster.records(@query, members), address: net.bridge_ip)

      strategy = [
        query: @query,
        poll_interval: @poll,
        node_host: :address,
        connect_timeout: @poll,
        timeout: 500
      ]

      # A short tick, so that a silent peer is noticed in about 2 s, not 60.
      nodes =
        Nodes.start_all!(
          for {member, host} <- Enum.zip(members, net.hosts) do
            Cluster.member_opts(member, dns, strategy,
              netns: host.netns,
              erl: ~w(-kernel net_ticktime 2)
            )
          end
        )

      [n1, n2, n3] = nodes
      Cluster.await_mesh!(nodes, 10_000)

      # Cut h3 off. h1 and h2 still reach each other and DNS, which still
      # lists h3; h3 reaches nothing.
      [_, _, h3] = net.hosts
      before = {attempts(n1, n3.name), attempts(n2, n3.name)}
      Netns.link_down(h3)
      cut = System.monotonic_time(:millisecond)

      Nodes.wait_until(
        fn -> Cluster.visible(n1) == [n2.name] and Cluster.visible(n2) == [n1.name] end,
        15_000,
        100
      )

      lost = System.monotonic_time(:millisecond) - cut
      Process.sleep(@hold)
      held = System.monotonic_time(:millisecond) - cut

      during = {attempts(n1, n3.name) - elem(before, 0), attempts(n2, n3.name) - elem(before, 1)}
      # Backoff (max_backoff = poll_interval): after its second failure an
      # unreachable peer is tried at most every other poll.
      bound = div(held, 2 * @poll) + 2

      for {count, node} <- [{elem(during, 0), n1}, {elem(during, 1), n2}] do
        assert count >= 1, "#{node.name} never tried h3 during the partition"

        assert count <= bound,
               "#{node.name} made #{count} connect attempts to h3 in #{held} ms " <>
                 "(#{div(held, @poll)} polls); at most #{bound} expected"
      end

      Netns.link_up(h3)
      healed_at = System.monotonic_time(:millisecond)
      elapsed = Cluster.await_mesh!(nodes, 2 * @poll + 500)

      IO.puts(
        "\n  partition: h3 lost after #{lost} ms; connect attempts to h3 over #{held} ms " <>
          "(#{div(held, @poll)} polls): h1 #{elem(during, 0)}, h2 #{elem(during, 1)} " <>
          "(bound #{bound}); mesh whole #{System.monotonic_time(:millisecond) - healed_at} ms " <>
          "after the link came up (#{elapsed} ms wait)"
      )
    end
  end
end

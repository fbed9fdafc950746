defmodule Caravan.Cluster.FaultsTest do
  # Faults with real nodes (OS processes) and real or misbehaving DNS:
  # a network partition between namespaces, flapping answers, a crash loop,
  # slow answers. Ports 24000-24499. The figures printed here are the ones
  # in guides/reliability.md.
  use ExUnit.Case, async: false

  alias Caravan.Test.{Cluster, Dnsmasq, DnsServer, Netns, Nodes, RawDnsServer}

  @moduletag :faults
  @moduletag timeout: 180_000
  @query "app-dist.service.consul"

  setup do
    Nodes.refute_epmd!()
    :ok
  end

  defp members(port, count, first_ip \\ 2), do: Cluster.loopback_members(port, count, first_ip)

  # A Consul-shaped answer to `query` (an SRV question) listing `members`,
  # with their A records as glue.
  defp srv_reply(query, members) do
    name = query_name(query)

    answers =
      for {node, ip} <- members do
        target = to_charlist(DnsServer.addr_host(ip, "dc1"))
        {name, :srv, {1, 1, Caravan.Epmd.dist_port(node), target}}
      end

    glue = for {_, ip} <- members, do: {DnsServer.addr_host(ip, "dc1"), :a, ip}
    RawDnsServer.response(query, answers, glue)
  end

  defp query_name(query) do
    {:ok, msg} = :inet_dns.decode(query)
    [question] = :inet_dns.msg(msg, :qdlist)
    question |> :inet_dns.dns_query(:domain) |> to_string()
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
      # unreachable peer waits a poll interval, and each attempt to the cut
      # host hangs for connect_timeout (one poll) first: about every other
      # poll.
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

  describe "flapping DNS" do
    test "answers alternating full and half for 20 polls disconnect nobody" do
      # Each node polls a name of its own, so that the server can alternate
      # per poll of each node: odd polls list all four, even polls only the
      # first two. disconnect_after: 2, and no node is ever missing twice
      # in a row, so no node may be disconnected.
      members = members(24101, 4)
      queries = for i <- 1..4, do: "app-dist-#{i}.service.consul"
      polls = :counters.new(4, [])
      half = Enum.take(members, 2)

      answer = fn query ->
        case Enum.find_index(queries, &(&1 == query_name(query))) do
          nil ->
            RawDnsServer.rcode_reply(query, :nxdomain)

          i ->
            :counters.add(polls, i + 1, 1)
            full? = rem(:counters.get(polls, i + 1), 2) == 1
            srv_reply(query, if(full?, do: members, else: half))
        end
      end

      dns = RawDnsServer.start!(answer: answer)
      poll = 200

      nodes =
        Nodes.start_all!(
          for {member, query} <- Enum.zip(members, queries) do
            Cluster.member_opts(member, dns,
              query: query,
              poll_interval: poll,
              node_host: :address,
              disconnect_after: 2
            )
          end
        )

      Cluster.await_mesh!(nodes, 10_000)
      start = for i <- 1..4, do: :counters.get(polls, i)
      polled = fn -> for i <- 1..4, do: :counters.get(polls, i) - Enum.at(start, i - 1) end

      # A liveness limit, three times what 20 polls take.
      deadline = System.monotonic_time(:millisecond) + 3 * 20 * poll

      Stream.repeatedly(fn -> Cluster.meshed?(nodes) end)
      |> Stream.take_while(fn _ -> Enum.min(polled.()) < 20 end)
      |> Enum.each(fn meshed ->
        assert meshed, "a node was disconnected while flapping (polls: #{inspect(polled.())})"

        assert System.monotonic_time(:millisecond) < deadline,
               "fewer than 20 polls per node in #{3 * 20 * poll} ms: #{inspect(polled.())}"
      end)

      for node <- nodes, do: refute(Nodes.output(node) =~ "disconnected from")
      IO.puts("\n  flapping: polls per node while checked #{inspect(polled.())}, no disconnect")
    end
  end

  describe "crash loop" do
    test "a node killed and restarted 10 times rejoins each time; no stale connection stays" do
      [_, _, c] = members = members(24201, 3)
      dns = Dnsmasq.start!(Cluster.records(@query, members))
      strategy = [query: @query, poll_interval: 300, node_host: :address]
      [na, nb, nc] = Cluster.start_members!(members, dns, strategy)
      Cluster.await_mesh!([na, nb, nc])

      started = System.monotonic_time(:millisecond)

      {creations, last} =
        Enum.map_reduce(1..10, nc, fn round, nc ->
          creation = Nodes.eval!(nc, ":erlang.system_info(:creation)")
          # A pid of this incarnation, as the other nodes know it.
          old_pid = Nodes.rpc!(na, :erpc, :call, [nc.name, Process, :whereis, [:init]])
          Nodes.stop(nc)

          nc = Cluster.start_member!(c, dns, strategy)
          Cluster.await_mesh!([na, nb, nc], 5_000)
          new_creation = Nodes.eval!(nc, ":erlang.system_info(:creation)")

          for peer <- [na, nb] do
            # Connected again under the same name, to the new incarnation:
            # the old one's pids read as dead, calls reach the new one.
            down =
              Nodes.eval!(
                peer,
                """
                ref = Process.monitor(pid)
                receive do
                  {:DOWN, ^ref, :process, _, reason} -> reason
                after
                  2_000 -> :still_alive
                end
                """,
                binding: [pid: old_pid]
              )

            assert down == :noproc,
                   "round #{round}: #{peer.name} sees the old pid: #{inspect(down)}"

            assert Nodes.rpc!(peer, :erpc, :call, [nc.name, :erlang, :system_info, [:creation]]) ==
                     new_creation
          end

          {creation, nc}
        end)

      creations = creations ++ [Nodes.eval!(last, ":erlang.system_info(:creation)")]
      assert length(Enum.uniq(creations)) == 11, "creations repeat: #{inspect(creations)}"

      IO.puts(
        "\n  crash loop: 10 kills and restarts, each rejoined, 11 distinct creations, " <>
          "#{System.monotonic_time(:millisecond) - started} ms in all"
      )
    end
  end

  describe "slow DNS" do
    test "answers near the timeout: polls never overlap, heap and queue stay flat over 200 polls" do
      # Every answer takes 80 ms of the 100 ms timeout; the strategy ticks
      # every 20 ms, so three or four ticks in five find a lookup still
      # running. attempts: 1, so each lookup is exactly one query.
      [a, b] = members(24301, 2)
      dns = RawDnsServer.start!(answer: &srv_reply(&1, [a, b]), delay: 80)

      nb =
        Nodes.start!(
          name: elem(b, 0),
          erl: ~w(-kernel inet_dist_use_interface {127,0,0,3})
        )

      na =
        Cluster.start_member!(
          a,
          dns,
          [query: @query, poll_interval: 20, timeout: 100, node_host: :address],
          app_env: [caravan: [dns: [attempts: 1]]]
        )

      Cluster.await_mesh!([na, nb], 5_000)

      sample = fn ->
        Nodes.eval!(na, """
        [{_, pid, _, _}] = Supervisor.which_children(Caravan.Test.ClusterSup)
        :erlang.garbage_collect(pid)
        Process.info(pid, [:total_heap_size, :memory, :message_queue_len])
        """)
      end

      first = RawDnsServer.queries(dns).udp
      started = System.monotonic_time(:millisecond)

      samples =
        Stream.repeatedly(fn ->
          Process.sleep(1_000)
          {RawDnsServer.queries(dns).udp - first, sample.()}
        end)
        |> Enum.reduce_while([], fn {polls, s}, acc ->
          if polls >= 200, do: {:halt, [{polls, s} | acc]}, else: {:cont, [{polls, s} | acc]}
        end)
        |> Enum.reverse()

      elapsed = System.monotonic_time(:millisecond) - started
      {polls, _} = List.last(samples)
      heaps = for {_, s} <- samples, do: s[:total_heap_size]
      memory = for {_, s} <- samples, do: s[:memory]
      queues = for {_, s} <- samples, do: s[:message_queue_len]

      # No overlap: a lookup lasts at least 80 ms (the reply's delay; a
      # timeout takes 100), so queries of lookups that never overlap arrive
      # at least 80 ms apart, and overlapping ones would come a tick (20 ms)
      # apart. 60 ms leaves 20 for the server's own scheduling.
      gaps =
        RawDnsServer.udp_arrivals(dns)
        |> Enum.drop_while(&(&1 < started))
        |> Enum.chunk_every(2, 1, :discard)
        |> Enum.map(fn [a, b] -> b - a end)

      # One exception: the deadline runs from the call, on the caller's
      # side, so when the machine starves the runtime's thread a query can
      # leave just before its lookup's deadline and the next one a few ms
      # later, with no overlap. Overlapping lookups would do that on nearly
      # every tick; allow it for at most 1 gap in 100.
      close = Enum.count(gaps, &(&1 < 60))

      assert close <= div(length(gaps), 100),
             "#{close} of #{length(gaps)} queries under 60 ms apart (min #{Enum.min(gaps)}): lookups overlapped"

      assert polls <= div(elapsed, 80) + 2
      assert Enum.max(queues) <= 2, "message queue grew: #{inspect(queues)}"

      # Flat: the largest heap of the second half is no larger than the
      # largest of the first half plus 1,000 words (8 KB).
      {early, late} = Enum.split(heaps, div(length(heaps), 2))

      assert Enum.max(late) <= Enum.max(early) + 1_000,
             "heap grew: #{inspect(heaps)} words over #{polls} polls"

      assert Cluster.visible(na) == [nb.name]

      IO.puts(
        "\n  slow DNS: #{polls} polls in #{elapsed} ms, queries >= #{Enum.min(gaps)} ms apart; strategy " <>
          "heap #{Enum.min(heaps)}..#{Enum.max(heaps)} words, memory " <>
          "#{Enum.min(memory)}..#{Enum.max(memory)} bytes, message queue <= #{Enum.max(queues)}"
      )
    end
  end
end

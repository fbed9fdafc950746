# What a fleet feels: convergence, join and leave latency, churn, the load on
# Consul and what each node pays, for Caravan and for a libcluster-style
# baseline (Caravan.Bench.LibclusterPoll) on the same nodes, in one run.
#
#   mix run bench/fleet.exs            # the full run (about 7 minutes on 2 cores)
#   mix run bench/fleet.exs --quick    # every figure, tiny (N = 4; the smoke test)
#
# Nodes are OS processes with Caravan's flags, one port (25500) and one
# address each (127.0.1.x, 127.0.3.x), as Nomad allocations are. DNS is the
# Consul fixture (Caravan.Test.ConsulDns). Writes bench/results.json (or
# --out) and, when gnuplot is installed, bench/mesh.svg. See
# guides/performance.md.

{opts, _, _} =
  OptionParser.parse(System.argv(), strict: [quick: :boolean, out: :string, svg: :string])

quick? = Keyword.get(opts, :quick, false)
bench_dir = Path.expand(".", __DIR__)
root = Path.dirname(bench_dir)
out_file = Keyword.get(opts, :out, Path.join(bench_dir, "results.json"))
svg_file = Keyword.get(opts, :svg, if(quick?, do: nil, else: Path.join(bench_dir, "mesh.svg")))

# Test support and bench/support, compiled to a directory the nodes also
# load (-pa). In MIX_ENV=test test/support is already in Caravan's ebin.
ebin = Path.join(System.tmp_dir!(), "bench-ebin-#{System.pid()}")
File.rm_rf!(ebin)
File.mkdir_p!(ebin)

support =
  if Code.ensure_loaded?(Caravan.Test.Nodes),
    do: [],
    else:
      for(
        f <- ~w(nodes dns_server raw_dns_server consul_dns cluster stalled_peer sample_app),
        do: Path.join(root, "test/support/#{f}.ex")
      )

{:ok, _, _} =
  Kernel.ParallelCompiler.compile_to_path(
    support ++ Path.wildcard(Path.join(bench_dir, "support/*.ex")),
    ebin
  )

Code.prepend_path(ebin)
Logger.configure(level: :error)

defmodule Caravan.Bench.Fleet do
  @moduledoc false
  # The measurements. Times are the machine's clock in microseconds
  # (System.os_time), shared by every node.

  alias Caravan.Test.{ConsulDns, Nodes}
  alias Caravan.Bench.FleetNode

  @port 25_500
  @service "fleet-dist"
  @query "fleet-dist.service.consul"

  def query, do: @query

  # Nodes fleet-25500@127.0.<net>.<i>, started in parallel, no strategy yet.
  def boot!(net, range, ebin) do
    Nodes.start_all!(
      for i <- range do
        [
          name: "fleet-#{@port}@127.0.#{net}.#{i}",
          erl: ["-kernel", "inet_dist_use_interface", "{127,0,#{net},#{i}}"],
          code_paths: [ebin],
          cleanup: false,
          timeout: 120_000,
          boot: quote(do: Logger.configure(level: :error))
        ]
      end
    )
  end

  def ip(node), do: node.name |> to_string() |> String.split("@") |> List.last() |> parse_ip()
  defp parse_ip(text), do: text |> String.to_charlist() |> :inet.parse_address() |> elem(1)

  def instances(nodes, extra \\ []), do: Enum.map(nodes, &{ip(&1), @port}) ++ extra

  def list!(consul, nodes, extra \\ []),
    do: ConsulDns.set(consul, @service, instances(nodes, extra))

  def strategy(:caravan, consul, poll, more \\ []) do
    [
      query: @query,
      node_sname: "fleet",
      node_host: :address,
      nameservers: [ConsulDns.nameserver(consul)],
      poll_interval: poll,
      timeout: 1_000
    ] ++ more
  end

  def baseline_strategy(consul, poll) do
    [host, port] = consul |> ConsulDns.nameserver() |> String.split(":")
    {:ok, ip} = :inet.parse_address(String.to_charlist(host))

    [
      query: @query,
      node_sname: "fleet",
      nameservers: [{ip, String.to_integer(port)}],
      poll_interval: poll
    ]
  end

  def opts_for(:caravan, consul, poll), do: strategy(:caravan, consul, poll)
  def opts_for(:baseline, consul, poll), do: baseline_strategy(consul, poll)

  def parallel(nodes, fun) do
    nodes
    |> Task.async_stream(fun, max_concurrency: 64, timeout: 60_000)
    |> Enum.map(fn {:ok, v} -> v end)
  end

  # Starts `kind` on every node at once; returns the time the last started.
  def start!(nodes, kind, opts) do
    parallel(nodes, &Nodes.rpc!(&1, FleetNode, :start, [kind, opts]))
    now()
  end

  # Every strategy first, then the connections (a strategy still running
  # elsewhere, or global, may connect again while others stop).
  def stop!(nodes) do
    parallel(nodes, &Nodes.rpc!(&1, FleetNode, :stop, []))

    Nodes.wait_until(
      fn ->
        parallel(nodes, &Nodes.rpc!(&1, FleetNode, :disconnect_all, []))
        Enum.all?(parallel(nodes, &Nodes.rpc!(&1, Node, :list, [])), &(&1 == []))
      end,
      30_000,
      200
    )
  end

  def events(node) do
    Nodes.rpc!(node, FleetNode, :events, [])
  rescue
    e ->
      reraise "#{Exception.message(e)}\n#{node.label} said:\n#{Nodes.output(node)}",
              __STACKTRACE__
  end

  # Milliseconds from `t0` until every node's Node.list() holds all the
  # others, polled every 50 ms (nil: not within `timeout` ms). Polled, not
  # replayed from nodeup/nodedown: OTP may report a nodedown for one of two
  # simultaneous connections while the other stays.
  def mesh_ms(nodes, t0, timeout) do
    names = Enum.map(nodes, & &1.name)
    deadline = System.monotonic_time(:millisecond) + timeout

    Stream.repeatedly(fn ->
      lists = parallel(nodes, &{&1.name, Nodes.rpc!(&1, Node, :list, [])})
      seen = now()

      short =
        for {name, list} <- lists,
            not MapSet.subset?(MapSet.new(List.delete(names, name)), MapSet.new(list)),
            do: {name, length(list)}

      cond do
        short == [] ->
          {:done, max(0, seen - t0) / 1000}

        System.monotonic_time(:millisecond) > deadline ->
          IO.puts(
            :stderr,
            "fleet: no full mesh within #{timeout} ms; nodes short of peers: #{inspect(short)}"
          )

          {:done, nil}

        true ->
          Process.sleep(50) && :wait
      end
    end)
    |> Enum.find_value(fn
      {:done, v} -> {:ok, v}
      :wait -> nil
    end)
    |> elem(1)
  end

  # Waits until every one of `nodes` is connected to `peer` now (an earlier
  # nodeup may have been undone by global while the mesh formed).
  def await_connected(nodes, peer, timeout) do
    Nodes.wait_until(
      fn -> Enum.all?(parallel(nodes, &(peer in Nodes.rpc!(&1, Node, :list, [])))) end,
      timeout,
      50
    )
  end

  # Milliseconds after `t0` until every one of `nodes` has an event `what`
  # about `peer` (nil: not within `timeout` ms).
  def all_saw_ms(nodes, what, peer, t0, timeout) do
    deadline = System.monotonic_time(:millisecond) + timeout

    Stream.repeatedly(fn ->
      times =
        parallel(nodes, fn node ->
          Enum.find_value(events(node), fn
            {t, ^what, ^peer} when t >= t0 -> t
            _ -> nil
          end)
        end)

      cond do
        Enum.all?(times) -> {:done, (Enum.max(times) - t0) / 1000}
        System.monotonic_time(:millisecond) > deadline -> {:done, nil}
        true -> Process.sleep(50) && :wait
      end
    end)
    |> Enum.find_value(fn
      {:done, v} -> {:ok, v}
      :wait -> nil
    end)
    |> elem(1)
  end

  def now, do: System.os_time(:microsecond)

  def percentile([], _), do: nil

  def percentile(values, p) do
    sorted = Enum.sort(values)
    Enum.at(sorted, min(length(sorted) - 1, round(p / 100 * (length(sorted) - 1))))
  end

  # The most arrivals (microseconds, sorted) in any window of `width` us.
  def peak(arrivals, width) do
    arrivals = List.to_tuple(arrivals)
    n = tuple_size(arrivals)

    {best, _} =
      Enum.reduce(0..(n - 1)//1, {0, 0}, fn i, {best, j} ->
        j = advance(arrivals, i, j, n, width)
        {max(best, j - i), j}
      end)

    best
  end

  defp advance(a, i, j, n, width) do
    if j < n and elem(a, j) < elem(a, i) + width, do: advance(a, i, j + 1, n, width), else: j
  end
end

alias Caravan.Bench.{Fleet, FleetNode, JSON}
alias Caravan.Test.{ConsulDns, Nodes, StalledPeer}

started_at = System.monotonic_time(:millisecond)

say = fn text ->
  secs = div(System.monotonic_time(:millisecond) - started_at, 1000)
  IO.puts(:stderr, "fleet: [#{secs} s] #{text}")
end

r1 = &if is_number(&1), do: Float.round(&1 / 1, 1), else: &1

row = fn name, unit, caravan, baseline, target, met, extra ->
  Map.merge(
    %{
      name: name,
      unit: unit,
      caravan: r1.(caravan),
      baseline: r1.(baseline),
      baseline_is: "libcluster 3.5's DNS poll loop (Caravan.Bench.LibclusterPoll)",
      target: target,
      target_met: met
    },
    extra
  )
end

consul = ConsulDns.start_unsupervised()
pool_size = if quick?, do: 8, else: 32
say.("booting #{pool_size} nodes")
pool = Fleet.boot!(1, 1..pool_size, ebin)
rows = []

try do
  # 1. Mesh formation: N nodes start their strategies at once.
  sizes = if quick?, do: [4], else: [8, 16, 32]
  runs = if quick?, do: 1, else: 3
  poll = 1_000
  stalled = for i <- 1..2, do: {{127, 0, 2, i}, 25_500}
  peers = for {ip, port} <- stalled, do: StalledPeer.start!(ip, port)

  formation =
    for n <- sizes,
        stalled_n <- [0, 2],
        kind <- [:caravan, :baseline, :floor],
        kind != :floor or stalled_n == 0 do
      nodes = Enum.take(pool, n)
      Fleet.list!(consul, nodes, Enum.take(stalled, stalled_n))
      tries = if kind == :caravan, do: runs, else: 1

      opts =
        if kind == :floor,
          do: Enum.map(nodes, & &1.name),
          else: Fleet.opts_for(kind, consul, poll)

      times =
        for _ <- 1..tries do
          t0 = Fleet.start!(nodes, kind, opts)
          ms = Fleet.mesh_ms(nodes, t0, 20_000)
          Fleet.stop!(nodes)
          ms
        end

      say.("mesh #{kind}, N=#{n}, #{stalled_n} stalled: #{inspect(times)} ms")
      %{n: n, stalled: stalled_n, kind: kind, times: times}
    end

  Enum.each(peers, &StalledPeer.stop/1)

  pick = fn n, s, kind ->
    Enum.find(formation, &(&1.n == n and &1.stalled == s and &1.kind == kind))
  end

  top = List.last(sizes)

  formation_rows =
    for s <- [0, 2] do
      c = pick.(top, s, :caravan).times
      b = pick.(top, s, :baseline).times
      worst = if Enum.all?(c), do: Enum.max(c), else: nil
      met = worst != nil and worst <= poll + 1_000

      row.(
        "mesh_formation_n#{top}_stalled#{s}",
        "ms",
        Fleet.percentile(Enum.reject(c, &is_nil/1), 50),
        List.first(b),
        "<= 1 poll + 1 s (#{poll + 1_000} ms) at N = #{top}, poll #{poll} ms",
        met,
        %{
          caravan_max: r1.(worst),
          why:
            if(not met,
              do:
                "#{top} VMs on #{:erlang.system_info(:logical_processors_available)} CPUs: " <>
                  "compare with the floor, every node connecting to every other at once"
            ),
          floor: r1.(List.first(pick.(top, 0, :floor).times)),
          runs: length(c),
          poll_interval: poll,
          all: Enum.map(formation, &Map.update!(&1, :times, fn t -> Enum.map(t, r1) end)),
          note:
            "baseline: one run; nil means no full mesh within 20 s. floor: every node " <>
              "connecting to every other at the same moment, no DNS (on OTP 25 global's " <>
              "overlapping-partition checks can make it slower than staggered polls)"
        }
      )
    end

  rows = rows ++ formation_rows

  # 2. Fleet load on Consul: N nodes polling every 500 ms, started at once.
  load_n = if quick?, do: 4, else: 32
  load_poll = 500
  window_ms = if quick?, do: 2_000, else: 10_000
  nodes = Enum.take(pool, load_n)
  Fleet.list!(consul, nodes)

  load =
    for kind <- [:caravan, :baseline], into: %{} do
      Fleet.start!(nodes, kind, Fleet.opts_for(kind, consul, load_poll))
      Process.sleep(3 * load_poll + 1_000)
      from = System.monotonic_time(:microsecond)
      Process.sleep(window_ms)
      to = System.monotonic_time(:microsecond)
      Fleet.stop!(nodes)
      traffic = for {t, tr, b} <- ConsulDns.traffic(consul), t >= from and t < to, do: {t, tr, b}
      polls = load_n * window_ms / load_poll
      arrivals = traffic |> Enum.map(&elem(&1, 0)) |> Enum.sort()
      width = div(load_poll * 1_000, 10)
      mean = length(arrivals) * width / (window_ms * 1_000)

      {kind,
       %{
         queries_per_node_poll: length(traffic) / polls,
         bytes_per_node_poll: (traffic |> Enum.map(&elem(&1, 2)) |> Enum.sum()) / polls,
         tcp_share: Enum.count(traffic, &(elem(&1, 1) == :tcp)) / max(length(traffic), 1),
         peak_over_mean: if(mean > 0, do: Fleet.peak(arrivals, width) / mean, else: nil)
       }}
    end

  say.("load: #{inspect(load)}")
  c = load.caravan
  b = load.baseline

  rows =
    rows ++
      [
        row.(
          "consul_queries_per_node_poll",
          "queries",
          c.queries_per_node_poll,
          b.queries_per_node_poll,
          "<= 1 per node per poll (N = #{load_n}, poll #{load_poll} ms)",
          c.queries_per_node_poll <= 1.05,
          %{
            caravan_bytes: r1.(c.bytes_per_node_poll),
            baseline_bytes: r1.(b.bytes_per_node_poll),
            caravan_tcp_share: r1.(c.tcp_share),
            baseline_tcp_share: r1.(b.tcp_share),
            note: "baseline asks UDP without EDNS: Consul answers it 3 of the #{load_n} instances"
          }
        ),
        row.(
          "consul_peak_over_mean",
          "ratio",
          c.peak_over_mean,
          b.peak_over_mean,
          "<= 2 (peak in any 10% of the poll interval over the mean; strategies started at once)",
          c.peak_over_mean != nil and c.peak_over_mean <= 2,
          %{
            note:
              "each node polls at its own slot (Caravan.Cluster.Schedule); when not met, a burst " <>
                "reached the fixture together: its arrival times are taken in the benchmark's VM, " <>
                "which shares the CPUs with the nodes"
          }
        )
      ]

  # 3. Join and leave: N = 16 peers; one more node appears in DNS.
  join_n = if quick?, do: 4, else: 16
  joins = if quick?, do: 3, else: 20
  join_poll = 1_000
  [joiner | _] = Enum.drop(pool, join_n)
  peers16 = Enum.take(pool, join_n)

  join =
    for kind <- [:caravan, :baseline], into: %{} do
      Fleet.list!(consul, peers16)
      Fleet.start!(peers16, kind, Fleet.opts_for(kind, consul, join_poll))
      Nodes.rpc!(joiner, FleetNode, :watch, [])
      Fleet.mesh_ms(peers16, Fleet.now() - 60_000_000, 30_000)

      times =
        for _ <- 1..if(kind == :caravan, do: joins, else: max(div(joins, 2), 3)) do
          Process.sleep(:rand.uniform(join_poll))
          t0 = Fleet.now()
          Fleet.list!(consul, [joiner | peers16])
          ms = Fleet.all_saw_ms(peers16, :up, joiner.name, t0, 10_000)
          Fleet.list!(consul, peers16)
          Nodes.rpc!(joiner, FleetNode, :watch, [])

          Nodes.wait_until(
            fn ->
              Nodes.rpc!(joiner, FleetNode, :disconnect_all, [])
              Nodes.rpc!(joiner, Node, :list, []) == []
            end,
            20_000,
            100
          )

          ms
        end

      say.("join #{kind}: #{inspect(times)}")

      # Leave, removed from DNS while running (the joiner runs no strategy,
      # so it does not call back).
      Fleet.list!(consul, [joiner | peers16])
      Fleet.await_connected(peers16, joiner.name, 10_000)
      Process.sleep(2 * join_poll)
      t0 = Fleet.now()
      Fleet.list!(consul, peers16)
      removed = Fleet.all_saw_ms(peers16, :down, joiner.name, t0, 15_000)
      Fleet.stop!(peers16 ++ [joiner])
      {kind, %{joins: times, removed: removed}}
    end

  # Leave, stopped while listed: its connections close.
  Fleet.list!(consul, [joiner | peers16])
  Fleet.start!(peers16, :caravan, Fleet.opts_for(:caravan, consul, join_poll))
  Nodes.rpc!(joiner, FleetNode, :watch, [])
  Fleet.await_connected(peers16, joiner.name, 10_000)
  t0 = Fleet.now()
  Nodes.stop(joiner)
  stopped = Fleet.all_saw_ms(peers16, :down, joiner.name, t0, 10_000)
  if stopped == nil, do: say.("stopped: #{inspect(Fleet.events(hd(peers16)))}")
  Fleet.stop!(peers16)
  pool = List.delete(pool, joiner)

  cj = Enum.reject(join.caravan.joins, &is_nil/1)
  bj = Enum.reject(join.baseline.joins, &is_nil/1)
  cj99 = Fleet.percentile(cj, 99)

  rows =
    rows ++
      [
        row.(
          "join_latency_p99",
          "ms",
          cj99,
          Fleet.percentile(bj, 99),
          "<= poll_interval + 200 ms (#{join_poll + 200} ms), N = #{join_n}",
          length(cj) == length(join.caravan.joins) and cj99 <= join_poll + 200,
          %{
            caravan_p50: r1.(Fleet.percentile(cj, 50)),
            baseline_p50: r1.(Fleet.percentile(bj, 50)),
            joins: length(join.caravan.joins),
            baseline_joins: length(join.baseline.joins),
            missed: Enum.count(join.caravan.joins, &is_nil/1)
          }
        ),
        row.(
          "leave_removed_from_dns",
          "ms",
          join.caravan.removed,
          join.baseline.removed,
          "pruned within disconnect_after (3) polls + 1: <= #{4 * join_poll} ms",
          join.caravan.removed != nil and join.caravan.removed <= 4 * join_poll,
          %{poll_interval: join_poll}
        ),
        row.(
          "leave_stopped_while_listed",
          "ms",
          stopped,
          nil,
          "dropped by TCP close within 1 s",
          stopped != nil and stopped <= 1_000,
          %{note: "OTP's own nodedown; the same for any strategy"}
        )
      ]

  # 4. Churn: every node replaced, one at a time (new name, new address; the
  # old one removed from DNS, then stopped), poll 500 ms.
  churn_n = if quick?, do: 3, else: 16
  churn_poll = 500

  churn = fn kind, old ->
    say.("churn #{kind}: booting #{churn_n} replacements")
    net = if kind == :caravan, do: 3, else: 4
    new = Fleet.boot!(net, 1..churn_n, ebin)
    opts = Fleet.opts_for(kind, consul, churn_poll)
    Fleet.list!(consul, old)
    Fleet.start!(old, kind, opts)
    Fleet.mesh_ms(old, Fleet.now() - 60_000_000, 30_000)
    t_start = Fleet.now()

    {events, removed_at, _} =
      Enum.reduce(Enum.zip(old, new), {[], %{}, old}, fn {o, n}, {events, removed_at, live} ->
        Nodes.rpc!(n, FleetNode, :start, [kind, opts])
        live = List.delete(live, o) ++ [n]
        Fleet.list!(consul, [o | live])
        # Wait (bounded) for the newcomer to be meshed.
        Fleet.all_saw_ms(List.delete(live, n), :up, n.name, t_start, 10_000)
        Fleet.list!(consul, live)
        removed_at = Map.put(removed_at, o.name, Fleet.now())
        # Then stopped: Nomad deregisters a task and signals it at once
        # (shutdown_delay defaults to 0).
        Process.sleep(div(churn_poll, 5))
        # Read the leaving node's events before it goes.
        events = events ++ [{o.name, Fleet.events(o)}]
        Nodes.stop(o)
        {events, removed_at, live}
      end)

    t_last = Fleet.now()
    whole = Fleet.mesh_ms(new, t_last - 60_000_000, 30_000)

    whole_after =
      if whole,
        do: max(0, Fleet.mesh_ms(new, t_start, 30_000) - (t_last - t_start) / 1000),
        else: nil

    events = events ++ for(n <- new, do: {n.name, Fleet.events(n)})
    gone = fn name, t -> t >= Map.get(removed_at, name, :infinity) end

    wrongful =
      for {x, evs} <- events,
          {t, :down, y} <- evs,
          t >= t_start,
          not gone.(x, t) and not gone.(y, t),
          do: {x, y, div(t - t_start, 1000)}

    if wrongful != [],
      do: say.("churn #{kind}: disconnects between staying nodes: #{inspect(wrongful)}")

    Fleet.stop!(new)
    {new, %{wrongful: length(wrongful), whole_after_ms: whole_after}}
  end

  old = Enum.take(pool, churn_n)
  {survivors, c_churn} = churn.(:caravan, old)
  {survivors2, b_churn} = churn.(:baseline, survivors)
  say.("churn: caravan #{inspect(c_churn)}, baseline #{inspect(b_churn)}")
  pool = (pool -- old) -- survivors
  Enum.each(survivors -- survivors2, &Nodes.stop/1)
  pool = pool ++ survivors2

  rows =
    rows ++
      [
        row.(
          "churn_disconnects_between_staying_nodes",
          "disconnects",
          c_churn.wrongful,
          b_churn.wrongful,
          "0 (N = #{churn_n}, every node replaced one at a time, poll #{churn_poll} ms)",
          c_churn.wrongful == 0,
          %{}
        ),
        row.(
          "churn_mesh_whole_after_last",
          "ms",
          c_churn.whole_after_ms,
          b_churn.whole_after_ms,
          "whole within 2 polls (#{2 * churn_poll} ms) of the last replacement",
          c_churn.whole_after_ms != nil and c_churn.whole_after_ms <= 2 * churn_poll,
          %{note: "0: the mesh was already whole when the last old node stopped"}
        )
      ]

  # 5. Per-node cost: a 5 s poll, a 100-instance answer, every peer taken as
  # connected (so each poll is a lookup and nothing to connect), against a
  # node without a strategy, over the same minute.
  cost_s = if quick?, do: 5, else: 60
  # Two fresh nodes without distribution: the plain one never loads Caravan.
  [with, without] =
    Nodes.start_all!(for _ <- 1..2, do: [caravan: false, code_paths: [ebin], cleanup: false])

  pool = pool ++ [with, without]
  hundred = for i <- 1..100, do: {{10, 9, div(i, 256), rem(i, 256)}, 25_500}
  ConsulDns.set(consul, "fleet-dist", hundred)

  pretend = [
    connect: {FleetNode, :pretend_connect, []},
    list_nodes: {FleetNode, :pretend_list, []},
    disconnect: {FleetNode, :pretend_disconnect, []}
  ]

  # A steady mesh: every peer already connected.
  Nodes.rpc!(with, FleetNode, :pretend_peers, [
    for({ip, port} <- hundred, do: :"fleet-#{port}@#{:inet.ntoa(ip)}")
  ])

  Nodes.rpc!(with, FleetNode, :start, [:caravan, Fleet.strategy(:caravan, consul, 5_000, pretend)])

  Process.sleep(6_000)
  cpu0 = {Nodes.rpc!(with, FleetNode, :cpu_ms, []), Nodes.rpc!(without, FleetNode, :cpu_ms, [])}
  Process.sleep(cost_s * 1_000)
  cpu1 = {Nodes.rpc!(with, FleetNode, :cpu_ms, []), Nodes.rpc!(without, FleetNode, :cpu_ms, [])}
  per_min = fn a, b -> (b - a) * 60 / cost_s end
  c_cpu = per_min.(elem(cpu0, 0), elem(cpu1, 0))
  b_cpu = per_min.(elem(cpu0, 1), elem(cpu1, 1))
  c_cost = Nodes.rpc!(with, Caravan.Bench.NodeBoot, :cost, [])
  b_cost = Nodes.rpc!(without, Caravan.Bench.NodeBoot, :cost, [])
  Nodes.rpc!(with, FleetNode, :stop, [])
  added_mib = (c_cost.rss_kib - b_cost.rss_kib) / 1024

  rows =
    rows ++
      [
        row.(
          "node_cpu_per_minute",
          "ms",
          c_cpu - b_cpu,
          b_cpu,
          "<= 50 ms a minute added (5 s poll, 100 instances)",
          c_cpu - b_cpu <= 50,
          %{
            caravan_total: r1.(c_cpu),
            note: "caravan: CPU added over the plain node (baseline: the plain node's own)"
          }
        ),
        row.(
          "node_rss_added",
          "MiB",
          added_mib,
          b_cost.rss_kib / 1024,
          "<= 8 MiB added",
          added_mib <= 8,
          %{note: "baseline: the plain node's RSS"}
        ),
        row.(
          "node_threads_added",
          "threads",
          c_cost.threads - b_cost.threads,
          b_cost.threads,
          "1 thread added",
          c_cost.threads - b_cost.threads <= 1,
          %{note: "baseline: the plain node's threads"}
        )
      ]

  # 6. Build cost: the first `mix compile` of an app depending on Caravan,
  # cargo's release build of the NIF included, from an empty target dir and
  # the crates already fetched (no network).
  build_row =
    if quick? do
      row.("build_first_compile", "s", nil, nil, "report; aim <= 60 s", nil, %{
        note: "skipped with --quick"
      })
    else
      say.("build cost (a cold cargo build)")
      dir = Path.join(System.tmp_dir!(), "fleet-build-#{System.pid()}")
      File.rm_rf!(dir)

      try do
        caravan = Caravan.Test.SampleApp.copy_caravan!(Path.join(dir, "caravan"))

        Caravan.Test.SampleApp.write!(Path.join(dir, "app"), %{
          "mix.exs" => """
          defmodule BuildCost.MixProject do
            use Mix.Project
            def project, do: [app: :build_cost, version: "0.1.0", deps: [{:caravan, path: #{inspect(caravan)}}]]
          end
          """
        })

        target = Path.join(dir, "target")
        t = System.monotonic_time(:millisecond)

        {out, status} =
          System.cmd("mix", ["compile"],
            cd: Path.join(dir, "app"),
            stderr_to_stdout: true,
            env: [{"MIX_ENV", "dev"}, {"CARGO_TARGET_DIR", target}, {"CARGO_NET_OFFLINE", "true"}]
          )

        secs = (System.monotonic_time(:millisecond) - t) / 1000
        if status != 0, do: raise("the build failed:\n" <> out)
        {du, 0} = System.cmd("du", ["-sb", target])
        target_mb = (du |> String.split() |> hd() |> String.to_integer()) / 1_000_000
        so_mb = File.stat!(Path.join(caravan, "priv/native/libcaravan_nif.so")).size / 1_000_000

        row.(
          "build_first_compile",
          "s",
          secs,
          nil,
          "report; aim <= 60 s and a .so <= 2.5 MB",
          secs <= 60 and so_mb <= 2.5,
          %{
            target_dir_mb: r1.(target_mb),
            so_mb: Float.round(so_mb, 2),
            note:
              "mix compile of a fresh app, cargo's cold release build of the NIF included " <>
                "(most of it); crates from cargo's cache, as after cargo fetch"
          }
        )
      after
        File.rm_rf!(dir)
      end
    end

  rows = rows ++ [build_row]

  env = %{
    otp: System.otp_release(),
    elixir: System.version(),
    cpus: :erlang.system_info(:logical_processors_available),
    quick: quick?,
    seconds: div(System.monotonic_time(:millisecond) - started_at, 1000)
  }

  File.write!(out_file, JSON.encode(Enum.map(rows, &Map.put(&1, :environment, env))) <> "\n")

  # The picture: mesh time against N, p50 of the runs.
  gnuplot = System.find_executable("gnuplot")

  if svg_file && gnuplot do
    data = Path.join(System.tmp_dir!(), "fleet-mesh-#{System.pid()}.dat")

    lines =
      for n <- sizes do
        cols =
          for s <- [0, 2], kind <- [:caravan, :baseline] do
            times = Enum.reject(pick.(n, s, kind).times, &is_nil/1)
            if times == [], do: "NaN", else: to_string(Fleet.percentile(times, 50))
          end

        floor =
          pick.(n, 0, :floor).times
          |> List.first()
          |> then(&if(&1, do: to_string(&1), else: "NaN"))

        Enum.join([n | cols] ++ [floor], " ")
      end

    File.write!(data, Enum.join(lines, "\n") <> "\n")

    script = """
    set terminal svg size 640,400 dynamic font "sans,12"
    set output '#{svg_file}'
    set title 'Time to a full mesh, nodes started together (poll #{poll} ms)'
    set xlabel 'nodes'
    set ylabel 'ms (p50)'
    set key top left
    set xtics (#{Enum.join(sizes, ", ")})
    set logscale y
    plot '#{data}' using 1:2 with linespoints title 'Caravan', \\
         '' using 1:4 with linespoints title 'Caravan, 2 stalled peers', \\
         '' using 1:3 with linespoints title 'libcluster-style', \\
         '' using 1:5 with linespoints title 'libcluster-style, 2 stalled peers', \\
         '' using 1:6 with lines dashtype 2 title 'all connect at once, no DNS'
    """

    plot = data <> ".gp"
    File.write!(plot, script)
    {_, 0} = System.cmd(gnuplot, [plot], stderr_to_stdout: true)
    File.rm(data)
    File.rm(plot)
  end

  fmt = fn
    nil -> "-"
    x when is_float(x) -> :erlang.float_to_binary(x, decimals: 1)
    x -> to_string(x)
  end

  IO.puts("| figure | unit | Caravan | baseline | target | met |\n|---|---|---|---|---|---|")

  for r <- rows do
    met = %{true => "yes", false => "NO", nil => "-"}[r.target_met]

    IO.puts(
      "| #{r.name} | #{r.unit} | #{fmt.(r.caravan)} | #{fmt.(r.baseline)} | #{r.target} | #{met} |"
    )
  end

  IO.puts("\nwrote #{Path.relative_to_cwd(out_file)} in #{env.seconds} s")
after
  Enum.each(pool, &Nodes.stop/1)
  ConsulDns.stop(consul)
  File.rm_rf(ebin)
end

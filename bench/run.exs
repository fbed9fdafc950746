# The micro benchmarks: paths that run once per connect or per lookup, each
# against its baseline in one run. What users feel (convergence, join and
# leave, churn, load on Consul, per-node cost) is bench/fleet.exs.
#
#   mix run bench/run.exs            # the full run (about 2 minutes on 2 cores)
#   mix run bench/run.exs --quick    # every measurement, tiny (the smoke test's run)
#
# Prints a table and writes bench/micro.json. Fixtures (dnsmasq, BIND, a
# silent nameserver) are started here and stopped before it exits. See
# guides/performance.md.

{opts, _, _} = OptionParser.parse(System.argv(), strict: [quick: :boolean, out: :string])
quick? = Keyword.get(opts, :quick, false)
bench_dir = Path.expand(".", __DIR__)
root = Path.dirname(bench_dir)
out_file = Keyword.get(opts, :out, Path.join(bench_dir, "micro.json"))

# Test support (nodes, DNS fixtures) and bench/support, compiled to a
# directory the nodes also load (-pa). In MIX_ENV=test test/support is
# already compiled into Caravan's ebin.
# (Not named caravan-*: code:priv_dir(:caravan) would take it for Caravan's own.)
ebin = Path.join(System.tmp_dir!(), "bench-ebin-#{System.pid()}")
File.rm_rf!(ebin)
File.mkdir_p!(ebin)

support =
  if Code.ensure_loaded?(Caravan.Test.Nodes),
    do: [],
    else:
      for(
        f <- ~w(nodes dns_server dnsmasq bind raw_dns_server cluster stalled_peer),
        do: Path.join(root, "test/support/#{f}.ex")
      )

{:ok, _, _} =
  Kernel.ParallelCompiler.compile_to_path(
    support ++ Path.wildcard(Path.join(bench_dir, "support/*.ex")),
    ebin
  )

Code.prepend_path(ebin)
Logger.configure(level: :error)

alias Caravan.Bench.{Harness, RegexPort, Dns, JSON}

defmodule Caravan.Bench.Run do
  @moduledoc false
  alias Caravan.Bench.Harness

  def row(name, unit, caravan, baseline, better, target, met?, extra \\ %{}) do
    Map.merge(
      %{
        name: name,
        unit: unit,
        caravan: round3(caravan),
        baseline: round3(baseline),
        ratio: round3(caravan / baseline),
        better: better,
        target: target,
        target_met: met?
      },
      extra
    )
  end

  def round3(x) when is_float(x), do: Float.round(x, 3)
  def round3(x), do: x

  # Per-call latencies of each of `funs`, called in turn (one call of each,
  # `n` rounds after `warm` rounds), so that noise falls on all alike.
  def latencies(funs, n, warm) do
    for _ <- 1..warm, f <- funs, do: f.()

    rounds =
      for _ <- 1..n do
        for f <- funs do
          t = System.monotonic_time(:nanosecond)
          f.()
          System.monotonic_time(:nanosecond) - t
        end
      end

    rounds |> Enum.zip() |> Enum.map(&(&1 |> Tuple.to_list() |> Harness.summarize()))
  end

  # Calls per second with `callers` processes calling `fun` for `ms`.
  def throughput(fun, callers, ms), do: throughput(List.duplicate(fun, callers), ms)

  # Calls per second with one process per fun in `funs`, each calling its
  # own fun for `ms`.
  def throughput(funs, ms) do
    parent = self()
    deadline = System.monotonic_time(:millisecond) + ms

    pids =
      for fun <- funs do
        spawn_link(fn -> send(parent, {:count, self(), loop(fun, deadline, 0)}) end)
      end

    started = System.monotonic_time(:millisecond)
    total = Enum.sum(for pid <- pids, do: receive(do: ({:count, ^pid, n} -> n)))
    total * 1000 / (System.monotonic_time(:millisecond) - started)
  end

  defp loop(fun, deadline, n) do
    if System.monotonic_time(:millisecond) >= deadline do
      n
    else
      fun.()
      loop(fun, deadline, n + 1)
    end
  end

  # Round trips between two processes: per-round-trip latencies in ns.
  def ping_pong(n) do
    echo =
      spawn_link(fn ->
        Stream.repeatedly(fn -> receive(do: ({:ping, from} -> send(from, :pong))) end)
        |> Stream.run()
      end)

    times =
      for _ <- 1..n do
        t = System.monotonic_time(:nanosecond)
        send(echo, {:ping, self()})
        receive(do: (:pong -> :ok))
        System.monotonic_time(:nanosecond) - t
      end

    Process.unlink(echo)
    Process.exit(echo, :kill)
    times
  end

  def mib(kib), do: kib / 1024
end

alias Caravan.Bench.Run
started_at = System.monotonic_time(:millisecond)
say = fn text -> IO.puts(:stderr, "bench: #{text}") end
rows = []

try do
  # 1. dist_port through the NIF against the regex baseline.
  say.("dist_port")
  name = "likes-service-24567@10.0.1.5"
  forms = [atom: String.to_atom(name), charlist: String.to_charlist(name), binary: name]

  hopts =
    if quick?,
      do: [batch: 200, samples: 20, warmup: 5],
      else: [batch: 1000, samples: 300, warmup: 50]

  dist_rows =
    for {form, input} <- forms do
      # Batches alternate, so both see the same load.
      {caravan, baseline} =
        Harness.compare(
          fn -> Caravan.Epmd.dist_port(input) end,
          fn -> RegexPort.dist_port(input) end,
          hopts
        )

      ratio = caravan.per_sec / baseline.per_sec

      Run.row(
        "dist_port_#{form}",
        "calls/s",
        caravan.per_sec,
        baseline.per_sec,
        "higher",
        # Once per connect: not slower than the original's regex is enough.
        ">= 1x regex",
        ratio >= 1,
        %{
          caravan_median_ns: Run.round3(caravan.median_ns),
          baseline_median_ns: Run.round3(baseline.median_ns)
        }
      )
    end

  rows = rows ++ dist_rows

  # 2. SRV lookups: Caravan.DnsClient vs InetRes vs the floor, same server.
  query = "bench.service.consul"
  sizes = [{3, Caravan.Test.Dnsmasq}, {100, Caravan.Test.Dnsmasq}, {500, Caravan.Test.Bind}]
  {lat_n, tput_ms} = if quick?, do: {30, 300}, else: {1_000, 3_000}

  dns_rows =
    for {n, backend} <- sizes do
      say.("SRV lookups, #{n} records (#{inspect(backend)})")
      server = Dns.start_server!(backend, Dns.records(query, n))

      try do
        addr = Caravan.Test.DnsServer.address(server)
        # 500 records never fit UDP: both clients ask over TCP from the
        # start, as a user would for an answer that large.
        transport = if n >= 500, do: :tcp, else: :udp

        lookup_opts = [
          nameservers: [Caravan.Test.DnsServer.nameserver(server)],
          timeout: 5_000,
          transport: transport
        ]

        {:ok, targets} = Caravan.DnsClient.lookup(query, lookup_opts)
        {:ok, ^targets} = Caravan.DnsClient.InetRes.lookup(query, lookup_opts)
        ^n = length(targets)

        caravan = fn -> {:ok, _} = Caravan.DnsClient.lookup(query, lookup_opts) end
        inet_res = fn -> {:ok, _} = Caravan.DnsClient.InetRes.lookup(query, lookup_opts) end
        encoded = Dns.encoded_query(query)
        socket = Dns.floor_socket(addr)
        floor = fn -> Dns.floor(socket, addr, encoded) end
        reply_bytes = floor.()

        [c, i, f] = Run.latencies([caravan, inet_res, floor], lat_n, div(lat_n, 10))
        ct = Run.throughput(caravan, 32, tput_ms)
        it = Run.throughput(inet_res, 32, tput_ms)
        :gen_udp.close(socket)

        extra = %{records: n, server: inspect(backend), reply_bytes: reply_bytes}
        us = &(&1 / 1000)

        [
          Run.row(
            "srv_p50_#{n}",
            "us",
            us.(c.median_ns),
            us.(i.median_ns),
            "lower",
            "below :inet_res",
            c.median_ns < i.median_ns,
            Map.put(extra, :floor, Run.round3(us.(f.median_ns)))
          ),
          Run.row(
            "srv_p99_#{n}",
            "us",
            us.(c.p99_ns),
            us.(i.p99_ns),
            "lower",
            "below :inet_res",
            c.p99_ns < i.p99_ns,
            Map.put(extra, :floor, Run.round3(us.(f.p99_ns)))
          ),
          Run.row(
            "srv_floor_p50_#{n}",
            "us",
            us.(c.median_ns),
            us.(f.median_ns),
            "lower",
            "none (reported)",
            nil,
            extra
          ),
          Run.row(
            "srv_throughput_#{n}",
            "lookups/s",
            ct,
            it,
            "higher",
            "above :inet_res",
            ct > it,
            Map.put(extra, :callers, 32)
          )
        ]
      after
        Dns.stop(server)
      end
    end

  rows = rows ++ List.flatten(dns_rows)

  # 2b. Throughput at 500 records, each caller asking its own name. The rows
  # above have 32 callers asking one name.
  {distinct, distinct_ms} = if quick?, do: {4, 300}, else: {32, 3_000}
  say.("SRV lookups, 500 records, #{distinct} callers with a name each (Caravan.Test.Bind)")
  names = for i <- 1..distinct, do: "bench#{i}.service.consul"
  server = Dns.start_server!(Caravan.Test.Bind, Enum.flat_map(names, &Dns.records(&1, 500)))

  distinct_row =
    try do
      lookup_opts = [
        nameservers: [Caravan.Test.DnsServer.nameserver(server)],
        timeout: 5_000,
        transport: :tcp
      ]

      for name <- names do
        {:ok, targets} = Caravan.DnsClient.lookup(name, lookup_opts)
        500 = length(targets)
      end

      # One caller per name, each asking its own name over and over.
      callers = fn client ->
        for name <- names, do: fn -> {:ok, _} = client.lookup(name, lookup_opts) end
      end

      ct = Run.throughput(callers.(Caravan.DnsClient), distinct_ms)
      it = Run.throughput(callers.(Caravan.DnsClient.InetRes), distinct_ms)

      Run.row(
        "srv_throughput_500_distinct",
        "lookups/s",
        ct,
        it,
        "higher",
        "none (each caller its own name)",
        nil,
        %{records: 500, server: inspect(Caravan.Test.Bind), callers: distinct, names: distinct}
      )
    after
      Dns.stop(server)
    end

  rows = rows ++ [distinct_row]

  # 3. Scheduler freedom: ping-pong p99 while 1,000 lookups hang, vs idle.
  say.("scheduler freedom")
  silent = Dns.start_silent!()
  pp_n = if quick?, do: 2_000, else: 50_000

  sched_row =
    try do
      Run.ping_pong(2_000)
      # Idle and hung blocks in turn, so that drift on the machine falls on
      # both: each cycle pings idle, starts 1,000 lookups with a name each
      # that hang for their whole
      # 1 s timeout, pings again while they wait, then kills the callers
      # (which cancels their lookups) before the next idle block.
      cycles = if quick?, do: 2, else: 5
      hung_opts = [nameservers: [Caravan.Test.RawDnsServer.nameserver(silent)], timeout: 1_000]

      blocks =
        for c <- 1..cycles do
          idle = Run.ping_pong(div(pp_n, cycles))

          waiters =
            for i <- 1..1_000 do
              spawn(fn -> Caravan.DnsClient.lookup("hung#{c}-#{i}.service.consul", hung_opts) end)
            end

          Process.sleep(200)
          hung = Run.ping_pong(div(pp_n, cycles))
          still = Enum.count(waiters, &Process.alive?/1)
          Enum.each(waiters, &Process.exit(&1, :kill))
          Process.sleep(1_300)
          {idle, hung, still}
        end

      idle = blocks |> Enum.flat_map(&elem(&1, 0)) |> Harness.summarize()
      hung = blocks |> Enum.flat_map(&elem(&1, 1)) |> Harness.summarize()
      still = blocks |> Enum.map(&elem(&1, 2)) |> Enum.min()

      Run.row(
        "scheduler_pingpong_p99",
        "us",
        hung.p99_ns / 1000,
        idle.p99_ns / 1000,
        "lower",
        "< 2x idle",
        hung.p99_ns < 2 * idle.p99_ns,
        %{
          hung_lookups: still,
          caravan_p50: Run.round3(hung.median_ns / 1000),
          baseline_p50: Run.round3(idle.median_ns / 1000)
        }
      )
    after
      Dns.stop(silent)
    end

  rows = rows ++ [sched_row]

  {otp, cpus} = {System.otp_release(), System.schedulers_online()}

  cpu_model =
    case File.read("/proc/cpuinfo") do
      {:ok, text} ->
        text
        |> String.split("\n")
        |> Enum.find_value(
          "unknown",
          &(&1 =~ ~r/^model name/ &&
              &1 |> String.split(":", parts: 2) |> List.last() |> String.trim())
        )

      _ ->
        "unknown"
    end

  env = %{
    otp: otp,
    elixir: System.version(),
    cpus: :erlang.system_info(:logical_processors_available),
    schedulers: cpus,
    cpu_model: cpu_model,
    quick: quick?
  }

  results = Enum.map(rows, &Map.put(&1, :environment, env))
  File.write!(out_file, JSON.encode(results) <> "\n")

  # The table.
  fmt = fn
    nil -> "-"
    x when is_float(x) -> :erlang.float_to_binary(x, decimals: if(abs(x) >= 100, do: 0, else: 2))
    x -> to_string(x)
  end

  header = ["measurement", "unit", "caravan", "baseline", "ratio", "target", "met"]

  lines =
    for r <- rows do
      [
        r.name,
        r.unit,
        fmt.(r.caravan),
        fmt.(r.baseline),
        fmt.(r.ratio) <> "x",
        r.target,
        case r.target_met do
          true -> "yes"
          false -> "NO"
          nil -> "-"
        end
      ]
    end

  widths =
    for i <- 0..6, do: Enum.max(for l <- [header | lines], do: String.length(Enum.at(l, i)))

  print = fn l ->
    IO.puts("| " <> Enum.join(Enum.zip_with(l, widths, &String.pad_trailing/2), " | ") <> " |")
  end

  print.(header)
  print.(Enum.map(widths, &String.duplicate("-", &1)))
  Enum.each(lines, print)

  IO.puts(
    "\nOTP #{otp}, #{env.cpus} CPUs (#{cpu_model}); wrote #{Path.relative_to_cwd(out_file)} in #{div(System.monotonic_time(:millisecond) - started_at, 1000)} s"
  )
after
  File.rm_rf(ebin)
end

defmodule Mix.Tasks.Demo do
  @shortdoc "Forms a real epmd-less cluster from Consul-shaped DNS on loopback, and breaks it"

  @moduledoc """
  Caravan's demo: real nodes, real DNS, no epmd, on this machine's loopback.

      mix demo [--nodes N] [--port PORT] [--keep]

  It starts a dnsmasq on `127.0.0.1` and a free port, serving the service
  `app-dist.service.consul` the way Consul does (`.addr.` SRV targets with
  A glue, NXDOMAIN for other `.consul` names), then N nodes named
  `app-PORT@127.0.0.I` (one port, one loopback address each: the shape of
  Nomad allocations), each started with Caravan's flags and no epmd and
  running `Caravan.Cluster.DnsStrategy` (`node_host: :address`, a 500 ms
  poll). Then it changes the world and shows what the nodes see each time:

    1. the nodes find each other through DNS;
    2. the last node leaves DNS and stops, and the others drop it;
    3. DNS goes down for four polls, and nothing is disconnected;
    4. DNS comes back listing a new node, which joins.

  Each step shows a table of who sees whom and the elapsed time, redrawn in
  place on a terminal and printed once otherwise. The demo ends with one
  verdict line, `PASS: ...` (exit status 0) or `FAIL: <reason>` (exit
  status 1), and stops every process it started, also when it fails or is
  interrupted: a SIGTERM (`scripts/demo` sends one on Ctrl-C) stops them all
  and exits with status 130, and if this VM dies any other way, every node
  and the dnsmasq stop by themselves when their pipe from it closes.

  Options:

    * `--nodes N` - nodes at the start, 2 to 16 (default 4).
    * `--port PORT` - the distribution port every node's name carries,
      1024 to 65535 (default 23001). It must be free on 127.0.0.1 to
      127.0.0.(N+1).
    * `--keep` - on success, leave the cluster and the DNS server running
      and print how to attach a remote shell and how to stop everything.
  """

  use Mix.Task

  alias Caravan.Test.{DnsServer, Dnsmasq}

  @switches [nodes: :integer, port: :integer, keep: :boolean]
  @max_nodes 16
  @app "app"
  @query "app-dist.service.consul"
  @poll_ms 500
  @outage_polls 4
  @step_timeout 20_000
  @registry :caravan_demo_started

  @impl Mix.Task
  def run(args) do
    opts = parse!(args)
    Mix.Task.run("compile")
    Mix.Task.run("app.start")
    # Each node loads Caravan and this demo's CaravanDemo.Member.
    ebin = [
      Caravan.Epmd |> :code.which() |> to_string() |> Path.dirname(),
      Mix.Project.compile_path()
    ]

    check_environment!(ebin)
    check_ports!(opts)
    if :ets.whereis(@registry) == :undefined, do: :ets.new(@registry, [:named_table, :public])
    __MODULE__.Interrupt.install()

    started = now()
    demo = setup(opts, ebin)

    result =
      try do
        {:ok, steps(demo)}
      rescue
        e in __MODULE__.Failure -> {:error, Exception.message(e)}
        e -> {:error, Exception.format(:error, e, __STACKTRACE__)}
      catch
        kind, reason -> {:error, Exception.format(kind, reason, __STACKTRACE__)}
      end

    case result do
      {:ok, {demo, facts}} ->
        total = seconds(now() - started)

        say(
          "PASS: #{opts[:nodes]} epmd-less nodes meshed through DNS in #{facts.mesh} s, " <>
            "dropped a removed node in #{facts.drop} s, kept every connection through " <>
            "#{facts.outage} s of DNS outage, and took in a new node in #{facts.join} s " <>
            "(#{total} s in all)"
        )

        if opts[:keep], do: keep(demo), else: teardown()

      {:error, reason} ->
        say(failure_context(demo))
        teardown()
        say("FAIL: " <> reason)
        exit({:shutdown, 1})
    end
  end

  defmodule Failure do
    @moduledoc false
    defexception [:message]
  end

  defmodule Interrupt do
    # SIGTERM (what scripts/demo sends on Ctrl-C; `kill`; `timeout`) stops
    # every process the demo started before the VM halts. It replaces OTP's
    # handler, which would stop the VM without running the demo's teardown.
    @moduledoc false
    @behaviour :gen_event

    def install do
      if __MODULE__ in :gen_event.which_handlers(:erl_signal_server) do
        :ok
      else
        :ok =
          :gen_event.swap_handler(
            :erl_signal_server,
            {:erl_signal_handler, :swap},
            {__MODULE__, []}
          )
      end
    end

    @impl true
    def init(_), do: {:ok, nil}

    @impl true
    def handle_event(:sigterm, state) do
      Mix.Tasks.Demo.teardown()

      IO.puts(
        "\nFAIL: interrupted (Ctrl-C in scripts/demo, or SIGTERM); every process the demo started is stopped"
      )

      System.halt(130)
      {:ok, state}
    end

    def handle_event(_signal, state), do: {:ok, state}

    @impl true
    def handle_call(_request, state), do: {:ok, :ok, state}
  end

  ## Options

  defp parse!(args) do
    case OptionParser.parse(args, strict: @switches) do
      {opts, [], []} ->
        opts = Keyword.merge([nodes: 4, port: 23001, keep: false], opts)

        unless opts[:nodes] in 2..@max_nodes do
          Mix.raise(
            "--nodes must be a whole number from 2 to #{@max_nodes} (one node leaves the " <>
              "cluster, and every node takes a loopback address), got: #{opts[:nodes]}\n\n" <>
              usage()
          )
        end

        unless opts[:port] in 1024..65535 do
          Mix.raise(
            "--port must be a TCP port from 1024 to 65535 (every node's name ends in it), " <>
              "got: #{opts[:port]}\n\n" <> usage()
          )
        end

        opts

      {_opts, _rest, [{switch, nil} | _]} ->
        Mix.raise("unknown option #{switch}\n\n" <> usage())

      {_opts, _rest, [{switch, value} | _]} ->
        Mix.raise(
          "invalid value for #{switch}: #{inspect(value)}, expected a whole number\n\n" <>
            usage()
        )

      {_opts, rest, []} ->
        Mix.raise("unexpected argument(s) #{Enum.join(rest, " ")}\n\n" <> usage())
    end
  end

  defp usage, do: "usage: scripts/demo [--nodes N] [--port PORT] [--keep]"

  defp check_environment!(ebin) do
    for exe <- ["elixir", "dnsmasq"], find(exe) == nil do
      Mix.raise("#{exe} is not installed; run scripts/setup (it installs what the demo needs)")
    end

    if Enum.any?(ebin, &(&1 =~ ~r/\s/)) do
      Mix.raise(
        "the demo passes Caravan's ebin to each node inside `elixir --erl`, which splits on " <>
          "whitespace, and #{Enum.join(ebin, " or ")} has some: run it from a directory without spaces in its path"
      )
    end
  end

  # Before anything starts: a node that cannot listen would only show up as
  # a node that never joins.
  defp check_ports!(opts) do
    for i <- 1..(opts[:nodes] + 1) do
      ip = {127, 0, 0, i}

      case :gen_tcp.listen(opts[:port], ip: ip, reuseaddr: true) do
        {:ok, socket} ->
          :gen_tcp.close(socket)

        {:error, reason} ->
          Mix.raise(
            "the demo's nodes listen on port #{opts[:port]} of 127.0.0.1 to " <>
              "127.0.0.#{opts[:nodes] + 1}, but 127.0.0.#{i}:#{opts[:port]} is not free " <>
              "(#{:inet.format_error(reason)}); see `ss -ltnp 'sport = :#{opts[:port]}'`, " <>
              "or pick another port with --port"
          )
      end
    end
  end

  ## The world: dnsmasq and nodes, each an OS process tied to this VM

  defp setup(opts, ebin) do
    remove_stale_dirs()
    dir = Path.join(System.tmp_dir!(), "caravan-demo-#{System.pid()}-#{rand_hex(4)}")
    File.mkdir_p!(dir)
    :ets.insert(@registry, {:dir, dir})

    demo = %{
      opts: opts,
      ebin: ebin,
      dir: dir,
      cookie: "caravan-demo-" <> rand_hex(8),
      dns_port: DnsServer.free_port({127, 0, 0, 1}),
      dns: nil,
      listed: [],
      outage: %{},
      nodes: %{},
      tty: IO.ANSI.enabled?()
    }

    say(
      "Caravan demo: #{opts[:nodes]} nodes named #{@app}-#{opts[:port]}@127.0.0.<i>, " <>
        "no epmd, found through DNS (#{dir})"
    )

    demo
  end

  defp instance(demo, i),
    do: %{index: i, name: "#{@app}-#{demo.opts[:port]}@127.0.0.#{i}", ip: {127, 0, 0, i}}

  # dnsmasq configured by the test suite's fixture (test/support/dnsmasq.ex),
  # in the shape of examples/dnsmasq/consul.conf. It runs under a small shell
  # that kills it when its stdin (the pipe from this VM) closes, unless told
  # `keep` first.
  defp start_dns(demo, members) do
    records = Enum.flat_map(members, &DnsServer.addr_instance(@query, &1.ip, demo.opts[:port]))

    for {path, text} <- Dnsmasq.files(demo.dir, {127, 0, 0, 1}, demo.dns_port, records),
        do: File.write!(path, text)

    {exe, args} = Dnsmasq.command(demo.dir)
    proc = spawn_tied(find(exe), args, Path.join(demo.dir, "dnsmasq.out"), demo.dir, :watched)

    demo = %{demo | dns: proc, listed: Enum.map(members, & &1.index)}
    wait!(fn -> match?({:ok, _}, lookup(demo)) end, 5_000, "dnsmasq did not answer", demo)
    demo
  end

  defp stop_dns(%{dns: nil} = demo), do: demo

  defp stop_dns(demo) do
    stop_group(demo.dns)
    %{demo | dns: nil}
  end

  defp lookup(demo) do
    Caravan.DnsClient.lookup(@query,
      nameservers: [{{127, 0, 0, 1}, demo.dns_port}],
      timeout: 300,
      attempts: 1
    )
  end

  defp start_nodes(demo, indices) do
    Enum.reduce(indices, demo, fn i, demo ->
      m = instance(demo, i)

      erl =
        Enum.join(
          [
            "-proto_dist Elixir.Caravan.Epmd.Dist -start_epmd false",
            "-epmd_module Elixir.Caravan.Epmd.Client",
            "-pa #{Enum.join(demo.ebin, " ")}",
            "-kernel inet_dist_use_interface {127,0,0,#{i}}"
          ],
          " "
        )

      strategy = [
        query: @query,
        node_sname: @app,
        node_host: :address,
        poll_interval: @poll_ms,
        nameservers: ["127.0.0.1:#{demo.dns_port}"],
        timeout: 300
      ]

      code = "CaravanDemo.Member.run(#{inspect(strategy)}, #{inspect(view_file(demo, i))})"

      args = ["--erl", erl, "--name", m.name, "--cookie", demo.cookie, "-e", code]
      proc = spawn_tied(find("elixir"), args, log_file(demo, i), demo.dir, :reads_stdin)
      put_in(demo.nodes[i], Map.put(m, :proc, proc))
    end)
  end

  defp stop_node(demo, i) do
    # Closing its stdin is all it takes: the node halts by itself.
    node = demo.nodes[i]
    Port.close(node.proc.port)
    unless gone?(node.proc.os_pid, 5_000), do: stop_group(node.proc)
    :ets.delete(@registry, {:group, node.proc.os_pid})
    %{demo | nodes: Map.delete(demo.nodes, i)}
  end

  defp view_file(demo, i), do: Path.join(demo.dir, "view-#{i}")
  defp log_file(demo, i), do: Path.join(demo.dir, "node-#{i}.log")

  # Runs `exe args` as the leader of a process group of its own (ports'
  # children are), output appended to `log`, tied to this VM by a pipe:
  #
  #   * `:reads_stdin` - the program reads the pipe itself and stops at its
  #     end (the nodes: see `member/2`);
  #   * `:watched` - a shell keeps the pipe and kills the program when it
  #     closes (this VM stopped or crashed), or stops watching when it reads
  #     a `keep` line (dnsmasq).
  defp spawn_tied(exe, args, log, dir, mode) do
    script =
      case mode do
        :reads_stdin ->
          ~S"""
          log=$1; shift
          exec "$@" >>"$log" 2>&1
          """

        :watched ->
          ~S"""
          log=$1; shift
          "$@" </dev/null >>"$log" 2>&1 & child=$!
          while read -r line; do [ "$line" = keep ] && { wait "$child"; exit; }; done
          kill "$child" 2>/dev/null
          wait "$child"
          """
      end

    port =
      Port.open({:spawn_executable, "/bin/sh"}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        cd: dir,
        args: ["-c", script, "sh", log, exe | args]
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)
    :ets.insert(@registry, {{:group, os_pid}})
    %{port: port, os_pid: os_pid}
  end

  # Kills the process group, then waits for its leader to go.
  defp stop_group(%{port: port, os_pid: os_pid}) do
    kill("-TERM", os_pid)
    unless gone?(os_pid, 3_000), do: kill("-KILL", os_pid)
    gone?(os_pid, 3_000)
    :ets.delete(@registry, {:group, os_pid})

    try do
      Port.close(port)
    rescue
      ArgumentError -> :ok
    end

    :ok
  end

  defp kill(signal, os_pid),
    do: System.cmd("kill", [signal, "--", "-#{os_pid}"], stderr_to_stdout: true)

  defp gone?(os_pid, timeout) do
    deadline = now() + timeout

    Stream.repeatedly(fn ->
      case File.read("/proc/#{os_pid}/stat") do
        {:ok, stat} -> stat =~ ~r/\) Z /
        {:error, _} -> true
      end
    end)
    |> Enum.find(fn gone? -> gone? or now() > deadline or (Process.sleep(50) && false) end)
  end

  # Everything this VM started, from the registry: what a failed step had
  # started is not in the `demo` map the failure left behind.
  @doc false
  @spec teardown() :: :ok
  def teardown do
    groups = for {{:group, os_pid}} <- :ets.tab2list(@registry), do: os_pid
    for os_pid <- groups, do: kill("-KILL", os_pid)
    for os_pid <- groups, do: gone?(os_pid, 3_000)
    for {:dir, dir} <- :ets.lookup(@registry, :dir), do: File.rm_rf(dir)
    :ets.delete_all_objects(@registry)
    :ok
  end

  # A demo VM that was aborted (a second Ctrl-C at the BREAK menu of a bare
  # `mix demo`) had no time to remove its directory; its processes
  # stopped by themselves. Directories of --keep runs stay.
  defp remove_stale_dirs do
    for dir <- Path.wildcard(Path.join(System.tmp_dir!(), "caravan-demo-*")),
        [_, pid] <- [Regex.run(~r/caravan-demo-(\d+)-[0-9a-f]+$/, dir)],
        not File.exists?("/proc/" <> pid),
        not File.exists?(Path.join(dir, "kept")),
        do: File.rm_rf(dir)

    :ok
  end

  ## The steps

  defp steps(demo) do
    n = demo.opts[:nodes]
    all = Enum.to_list(1..n)

    demo = start_dns(demo, Enum.map(all, &instance(demo, &1)))
    say("DNS: dnsmasq on 127.0.0.1:#{demo.dns_port} lists #{n} instances of #{@query}")

    t = now()
    demo = start_nodes(demo, all)
    mesh = await_mesh!(demo, "1/4 #{n} nodes start and find each other through DNS", t)

    t = now()
    leaving = n
    demo = start_dns(stop_dns(demo), Enum.map(all -- [leaving], &instance(demo, &1)))
    demo = stop_node(demo, leaving)
    drop = await_mesh!(demo, "2/4 #{name(demo, leaving)} leaves DNS and stops", t)

    t = now()
    demo = stop_dns(demo)
    outage = hold_mesh!(demo, "3/4 DNS is down for #{@outage_polls} polls", t)

    t = now()
    joining = n + 1
    remaining = Map.keys(demo.nodes)
    demo = start_dns(demo, Enum.map(remaining ++ [joining], &instance(demo, &1)))
    demo = start_nodes(demo, [joining])
    join = await_mesh!(demo, "4/4 DNS is back and lists a new node, #{name(demo, joining)}", t)

    {demo, %{mesh: mesh, drop: drop, outage: outage, join: join}}
  end

  defp name(demo, i), do: instance(demo, i).name

  defp await_mesh!(demo, title, started) do
    run_step!(demo, title, started, fn views ->
      if meshed?(demo, views), do: :done, else: {:wait, "no full mesh"}
    end)
  end

  # Holds DNS down until every node has seen `@outage_polls` failed
  # lookups (read from its log), checking all along that nobody drops.
  defp hold_mesh!(demo, title, started) do
    demo = %{demo | outage: Map.new(demo.nodes, fn {i, _} -> {i, failed_lookups(demo, i)} end)}

    run_step!(demo, title, started, fn views ->
      failed = outage_polls(demo)

      cond do
        not meshed?(demo, views) ->
          {:fail, "a node was disconnected while DNS was down"}

        not Enum.all?(failed, fn {_, n} -> n >= @outage_polls end) ->
          {:wait,
           "the nodes did not all report #{@outage_polls} failed polls (#{inspect(failed)})"}

        match?({:ok, _}, lookup(demo)) ->
          {:fail, "DNS still answered after it was stopped"}

        true ->
          :done
      end
    end)
  end

  # Redraws the step's table until `check` (given what each node sees)
  # returns `:done`; returns the elapsed seconds. `{:fail, why}`, or
  # `{:wait, why}` past the step's timeout, fails the demo with `why` and
  # what each node sees.
  defp run_step!(demo, title, started, check) do
    loop = fn loop, drawn ->
      views = views(demo)
      elapsed = now() - started

      case check.(views) do
        :done ->
          finish(demo, title, views, elapsed, "done", drawn)
          seconds(elapsed)

        {:wait, _why} when elapsed < @step_timeout ->
          drawn = draw(demo, title, views, elapsed, "...", drawn)
          Process.sleep(100)
          loop.(loop, drawn)

        {verdict, why} ->
          finish(demo, title, views, elapsed, "FAILED", drawn)
          within = if verdict == :wait, do: " within #{div(@step_timeout, 1000)} s", else: ""
          raise Failure, "step #{title}: #{why}#{within}; " <> describe_views(demo, views)
      end
    end

    loop.(loop, 0)
  end

  # Failed polls per node since DNS went down.
  defp outage_polls(demo) do
    Map.new(demo.outage, fn {i, before} -> {i, failed_lookups(demo, i) - before} end)
  end

  # The strategy logs this line once per failed poll.
  defp failed_lookups(demo, i) do
    case File.read(log_file(demo, i)) do
      {:ok, text} ->
        length(String.split(text, "keeping every connected node until DNS answers again")) - 1

      {:error, _} ->
        0
    end
  end

  defp views(demo) do
    Map.new(demo.nodes, fn {i, _} ->
      case File.read(view_file(demo, i)) do
        {:ok, text} -> {i, text |> String.split("\n", trim: true) |> Enum.sort()}
        {:error, _} -> {i, :starting}
      end
    end)
  end

  defp meshed?(demo, views) do
    names = for {_, m} <- demo.nodes, do: m.name

    Enum.all?(demo.nodes, fn {i, m} ->
      views[i] == Enum.sort(List.delete(names, m.name))
    end)
  end

  defp describe_views(demo, views) do
    Enum.map_join(demo.nodes, "; ", fn {i, m} ->
      case views[i] do
        :starting -> "#{m.name} not up"
        [] -> "#{m.name} sees nobody"
        seen -> "#{m.name} sees #{Enum.join(seen, ", ")}"
      end
    end)
  end

  ## Drawing

  # The table: one row per running node, one column per address; `x` where
  # the row's node is connected to the column's.
  defp table(demo, title, views, elapsed, status) do
    indices = Map.keys(demo.nodes) |> Enum.sort()
    cols = Enum.map(indices, &".#{&1}")
    width = demo.nodes |> Map.values() |> Enum.map(&String.length(&1.name)) |> Enum.max()

    dns =
      if demo.dns do
        "up, lists #{Enum.map_join(demo.listed, " ", &".#{&1}")}"
      else
        failed =
          outage_polls(demo) |> Enum.sort() |> Enum.map_join(" ", fn {i, n} -> ".#{i}: #{n}" end)

        "DOWN; failed polls #{failed}"
      end

    header =
      String.duplicate(" ", width + 2) <> Enum.map_join(cols, "", &String.pad_leading(&1, 4))

    rows =
      for i <- indices do
        cells =
          for j <- indices do
            mark =
              cond do
                i == j -> "-"
                views[i] == :starting -> "?"
                name(demo, j) in views[i] -> "x"
                true -> "."
              end

            String.pad_leading(mark, 4)
          end

        String.pad_trailing(name(demo, i), width + 2) <> Enum.join(cells)
      end

    [
      "step #{title}  [#{seconds(elapsed)} s, #{status}]",
      header | rows
    ] ++ ["  DNS: #{dns}   (x: connected, .: not, ?: starting)", ""]
  end

  defp draw(%{tty: false}, _title, _views, _elapsed, _status, drawn), do: drawn

  defp draw(demo, title, views, elapsed, status, drawn) do
    lines = table(demo, title, views, elapsed, status)
    IO.write([up(drawn), Enum.map(lines, &[IO.ANSI.clear_line(), &1, ?\n])])
    length(lines)
  end

  defp finish(%{tty: true} = demo, title, views, elapsed, status, drawn),
    do: draw(demo, title, views, elapsed, status, drawn)

  defp finish(demo, title, views, elapsed, status, _drawn) do
    IO.write(Enum.map(table(demo, title, views, elapsed, status), &[&1, ?\n]))
  end

  defp up(0), do: []
  defp up(n), do: ["\e[#{n}A", "\r"]

  defp failure_context(demo) do
    for log <- Path.wildcard(Path.join(demo.dir, "*.log")) |> Enum.sort(),
        {:ok, text} <- [File.read(log)],
        text != "",
        into: "" do
      tail = text |> String.split("\n", trim: true) |> Enum.take(-5) |> Enum.join("\n    ")
      "  last lines of #{Path.basename(log)}:\n    #{tail}\n"
    end
  end

  ## --keep

  defp keep(demo) do
    File.write!(Path.join(demo.dir, "kept"), "")
    for {_, node} <- demo.nodes, do: Port.command(node.proc.port, "keep\n")
    Port.command(demo.dns.port, "keep\n")

    [first | _] = demo.nodes |> Map.keys() |> Enum.sort()
    target = name(demo, first)
    pids = [demo.dns | Enum.map(demo.nodes, fn {_, n} -> n.proc end)] |> Enum.map(& &1.os_pid)

    erl =
      "-proto_dist Elixir.Caravan.Epmd.Dist -start_epmd false " <>
        "-epmd_module Elixir.Caravan.Epmd.Client -pa #{hd(demo.ebin)}"

    say("""

    The cluster and its DNS keep running (--keep). Attach a remote shell to #{target}:

      iex --erl "#{erl}" --name rem-#{rand_hex(2)}-#{target} --cookie #{demo.cookie} --hidden --remsh #{target}

    then try Node.list() or :net_adm.names(). Look the service up:

      mix caravan.lookup #{@query} --nameserver 127.0.0.1:#{demo.dns_port} --node-sname #{@app} --node-host address

    Stop everything (the nodes and dnsmasq, each a process group) and remove its files:

      kill -- #{Enum.map_join(pids, " ", &"-#{&1}")}; rm -rf #{demo.dir}
    """)

    # The processes must outlive this VM: let go of their pipes only now.
    Process.sleep(200)
  end

  ## Helpers

  defp wait!(fun, timeout, message, demo) do
    deadline = now() + timeout

    Stream.repeatedly(fun)
    |> Enum.find(fn ok -> ok or now() > deadline or (Process.sleep(50) && false) end)
    |> case do
      true ->
        :ok

      _ ->
        out = File.read(Path.join(demo.dir, "dnsmasq.out")) |> elem(1) |> to_string()
        raise Failure, "#{message} within #{timeout} ms; its output: #{inspect(out)}"
    end
  end

  defp find(exe),
    do:
      System.find_executable(exe) ||
        if(File.exists?("/usr/sbin/" <> exe), do: "/usr/sbin/" <> exe)

  defp rand_hex(bytes), do: bytes |> :rand.bytes() |> Base.encode16(case: :lower)
  defp now, do: System.monotonic_time(:millisecond)
  defp seconds(ms), do: :erlang.float_to_binary(ms / 1000, decimals: 1)
  defp say(text), do: IO.puts(text)
end

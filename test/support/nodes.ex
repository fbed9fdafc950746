defmodule Caravan.Test.Nodes do
  @moduledoc """
  Real BEAM nodes as OS processes, for tests, started with OTP's `:peer`
  over `connection: :standard_io`: the test VM controls each node through
  its stdin and stdout, not through Erlang distribution, so the test VM
  stays an ordinary VM (OTP 25 reads `-epmd_module` only from the command
  line), the nodes' `Node.list()` holds only the nodes a test started, and
  control works whatever the nodes' transport or cookie, even when their
  distribution is broken.

      node = Nodes.start!(sname: "a-21001")
      Nodes.eval!(node, "Node.ping(peer)", binding: [peer: other.name])
      #=> :pong

  ## Starting

  `start/1`, `start!/1` and `start_all!/1` (in parallel) wait until a node
  is up: booted (distribution started, or the VM halts), Elixir and Logger
  started, `:app_env` set and the `:boot` code run. Options:

    * `:name` / `:sname` - the node name; neither: no distribution.
    * `:caravan` - add `seed_flags/0`, default `true`; `-start_epmd false`
      is always added, so no test ever starts epmd.
    * `:erl` - more emulator flags, a list of strings, default `[]`.
    * `:cookie` - default `"caravan-test"`.
    * `:code_paths` - more `-pa` directories, after Caravan's ebin.
    * `:env` - `[{"NAME", "value" | nil}]`; `nil` unsets. `ERL_FLAGS`,
      `ERL_AFLAGS`, `ERL_ZFLAGS` are unset and crash dumps off unless given.
    * `:app_env` - `[app: [key: value]]`, set before `:boot` runs.
    * `:boot` - an Elixir string or quoted expression run in a process that
      lives as long as the node (what it links to stays up); a raise fails
      the start with `{:boot_failed, message, output}`.
    * `:netns` - run the node in this network namespace (`ip netns exec`).
    * `:timeout` - for being up, default 30_000 ms.
    * `:cleanup` - stop the node when the test ends (`on_exit`), default `true`.

  Everything the node writes (its logs through `:peer`'s I/O relay, and raw
  stdout and stderr of the VM) is kept: `output/1`, and in start errors.

  ## Running code

  `eval/3` and `eval!/3` evaluate an Elixir string or quoted expression
  (with a `:binding`); `rpc!/5` applies a function; each runs in a fresh
  process on the node (`:peer.call/5`). Closures cannot be sent.

  ## Stopping and other OS processes

  `stop/1` kills the node's process group and every descendant (port
  programs start sessions of their own), so nothing outlives a test; so do
  the exit of the process that started the node and the `on_exit`
  callback. A node whose stdin closes halts by itself (`:peer` does that).
  `spawn!/3` runs any command (`bin/app start`, `iex --remsh`) under the
  same cleanup, with `send_input/2`, `wait_for_output/3`, `wait_for_exit/2`.
  """

  alias Caravan.Test.Nodes.Server

  @enforce_keys [:server, :os_pid, :label]
  defstruct [:server, :peer, :os_pid, :label, :name]

  @start_keys [:name, :sname, caravan: true, erl: [], cookie: "caravan-test", env: []] ++
                [
                  code_paths: [],
                  app_env: [],
                  boot: nil,
                  netns: nil,
                  timeout: 30_000,
                  cleanup: true
                ]

  @doc "Caravan's three flags from the README, as a list."
  def seed_flags do
    ~w(-proto_dist Elixir.Caravan.Epmd.Dist -start_epmd false -epmd_module Elixir.Caravan.Epmd.Client)
  end

  @doc "The ebin directory the test VM loaded Caravan from (it also holds this module)."
  def caravan_ebin, do: Caravan.Epmd |> :code.which() |> to_string() |> Path.dirname()

  @doc "Starts a node and waits until it is up: `{:ok, node}` or `{:error, reason}`."
  def start(opts), do: opts |> launch() |> await()

  @doc "Like `start/1`, but raises with the node's output when it does not come up."
  def start!(opts), do: opts |> launch() |> await!()

  @doc "Starts several nodes in parallel and waits for all; raises if any fails."
  def start_all!(opts_list), do: opts_list |> Enum.map(&launch/1) |> Enum.map(&await!/1)

  @doc """
  Evaluates `code` on `node`: `{:ok, value}`, `{:error, {kind, reason,
  formatted}}` when it raised, threw or exited there, `{:error, {:exited,
  status, output}}` when the node is gone, `{:error, :timeout}`.
  Options: `:binding` (default `[]`), `:timeout` (default 15_000 ms).
  """
  def eval(%__MODULE__{} = node, code, opts \\ []) do
    opts = Keyword.validate!(opts, binding: [], timeout: 15_000)
    remote(node, {:eval, payload(code), opts[:binding]}, opts[:timeout])
  end

  @doc "Like `eval/3`, but returns the value or raises with the node's error."
  def eval!(node, code, opts \\ []), do: unwrap!(node, code, eval(node, code, opts))

  @doc "Applies `module.fun(args)` on `node`; returns the value or raises."
  def rpc!(%__MODULE__{} = node, module, fun, args, timeout \\ 15_000),
    do: unwrap!(node, {module, fun, args}, remote(node, {:apply, module, fun, args}, timeout))

  @doc "Everything the node or process wrote so far."
  def output(%__MODULE__{server: server}), do: Server.call(server, :output) || ""

  @doc """
  Kills the node or process (its process group and all descendants) and
  waits for it to exit. Returns its exit status; for a node that was still
  running, `:killed` (its status dies with its `:peer` control process);
  `nil` if it was stopped before.
  """
  def stop(%__MODULE__{server: server} = node) do
    if killed = Server.call(server, :kill) do
      status = if killed == :killed and node.peer, do: :killed, else: exit_status(node)
      Server.call(server, :stop)
      status
    end
  end

  @doc """
  Runs any command under the same cleanup (`:peer` starts only Erlang
  nodes). Options: `:env`, `:cd` (default `System.tmp_dir!/0`), `:cleanup`,
  `:label`. Returns at once.
  """
  def spawn!(executable, args, opts \\ []) do
    opts =
      Keyword.validate!(opts, env: [], cd: nil, cleanup: true, label: Path.basename(executable))

    exe = System.find_executable(executable) || raise ArgumentError, "no #{executable}"
    env = env(opts[:env])
    {:ok, server} = Server.start_link({:raw, exe, args, env, opts[:cd] || System.tmp_dir!()})
    {nil, os_pid} = Server.call(server, :info)
    node = %__MODULE__{server: server, os_pid: os_pid, label: opts[:label]}
    if opts[:cleanup], do: ExUnit.Callbacks.on_exit({__MODULE__, server}, fn -> stop(node) end)
    node
  end

  @doc "Writes `data` to a process's stdin."
  def send_input(%__MODULE__{server: server}, data), do: Server.call(server, {:input, data})

  @doc "Waits until the output matches `pattern` (regex or substring); returns it, or raises."
  def wait_for_output(%__MODULE__{} = node, pattern, timeout \\ 15_000) do
    found? = &if(is_binary(pattern), do: &1 =~ pattern, else: Regex.match?(pattern, &1))
    # Whether it exited is read first, so its last output counts.
    poll(
      fn -> (exit_status(node, 0) != nil or found?.(output(node))) && output(node) end,
      timeout
    )

    text = output(node)

    if found?.(text),
      do: text,
      else: raise("#{node.label}: no #{inspect(pattern)}; output:\n" <> text)
  end

  @doc "Waits for a process to exit on its own: `{status, output}`, or raises."
  def wait_for_exit(%__MODULE__{} = node, timeout \\ 15_000) do
    case exit_status(node, timeout) do
      nil -> raise "#{node.label} did not exit within #{timeout} ms; output:\n" <> output(node)
      status -> {status, output(node)}
    end
  end

  @doc "Calls `fun` every `interval` ms until truthy (returned); raises after `timeout` ms."
  def wait_until(fun, timeout \\ 15_000, interval \\ 50),
    do: poll(fun, timeout, interval) || raise("condition still false after #{timeout} ms")

  @doc "The TCP sockets the OS process of `node` listens on, `{ip, port}`, from `/proc`."
  def listening(%__MODULE__{os_pid: os_pid}) do
    inodes =
      for fd <- ls("/proc/#{os_pid}/fd"),
          {:ok, "socket:[" <> rest} <- [File.read_link("/proc/#{os_pid}/fd/#{fd}")],
          into: MapSet.new(),
          do: String.trim_trailing(rest, "]")

    for {ip, port, inode} <- tcp_listeners(), inode in inodes, do: {ip, port}
  end

  @doc "Raises unless no process named `epmd` runs and nothing listens on port 4369."
  def refute_epmd! do
    epmds = for pid <- ls("/proc"), File.read("/proc/#{pid}/comm") == {:ok, "epmd\n"}, do: pid
    on_4369 = for {ip, 4369, _inode} <- tcp_listeners(), do: :inet.ntoa(ip)

    if epmds != [] or on_4369 != [] do
      raise "expected no epmd, found epmd processes #{inspect(epmds)} and listeners on " <>
              "port 4369 at #{inspect(on_4369)}; stop epmd (epmd -kill) and run again"
    end

    :ok
  end

  # -- starting ----------------------------------------------------------------

  defp launch(opts) do
    opts = Keyword.validate!(opts, @start_keys)
    label = opts[:name] || opts[:sname] || "node"

    name =
      cond do
        opts[:name] && opts[:sname] -> raise ArgumentError, "give :name or :sname, not both"
        opts[:name] -> %{name: String.to_charlist(opts[:name]), longnames: true}
        opts[:sname] -> %{name: String.to_charlist(opts[:sname]), longnames: false}
        true -> %{}
      end

    elixir = Path.wildcard(Path.join(:code.lib_dir(:elixir), "../*/ebin"))

    args =
      if(opts[:caravan], do: seed_flags(), else: ~w(-start_epmd false)) ++
        opts[:erl] ++
        ["-setcookie", opts[:cookie], "-pa", caravan_ebin() | opts[:code_paths] ++ elixir]

    # `sh` for what :peer has no option for: stderr into stdout (OTP 25's
    # peer leaves it on the test VM's stderr), a working directory, netns.
    netns = if opts[:netns], do: ["ip", "netns", "exec", opts[:netns]], else: []
    erl = System.find_executable("erl")
    wrapper = ["-c", ~s(cd "$0" && exec "$@" 2>&1), System.tmp_dir!() | netns ++ [erl]]

    peer_opts =
      Map.merge(name, %{
        connection: :standard_io,
        exec: {~c"/bin/sh", Enum.map(wrapper, &String.to_charlist/1)},
        args: Enum.map(args, &String.to_charlist/1),
        env: for({k, v} <- env(opts[:env]), do: {~c"#{k}", (v && ~c"#{v}") || false}),
        peer_down: :continue,
        shutdown: :close
      })

    ref = make_ref()
    {:ok, server} = Server.start_link({:node, Map.put(peer_opts, :wait_boot, {self(), ref})})
    {peer, os_pid} = Server.call(server, :info)
    node = %__MODULE__{server: server, peer: peer, os_pid: os_pid, label: label}
    if opts[:cleanup], do: ExUnit.Callbacks.on_exit({__MODULE__, server}, fn -> stop(node) end)
    {node, ref, opts}
  end

  # :peer tells the process that started it (wait_boot) once the node is up.
  defp await({node, ref, opts}) do
    result =
      receive do
        {^ref, {:started, name, _}} -> {:ok, name}
        {^ref, {:boot_failed, {:exit_status, status}, _}} -> {:exited, status, output(node)}
        {^ref, {:boot_failed, reason, _}} -> {:exited, -1, output(node) <> inspect(reason)}
      after
        opts[:timeout] -> {:timeout, output(node)}
      end

    with {:ok, name} <- result,
         node = %{node | name: if(name != :nonode@nohost, do: name)},
         {:ok, :ok} <- remote(node, {:boot, opts[:app_env], payload(opts[:boot])}, opts[:timeout]) do
      {:ok, node}
    else
      {:ok, {:error, message}} -> {:error, {:boot_failed, message, output(node)}}
      {:error, reason} -> {:error, {reason, output(node)}}
      error -> {:error, error}
    end
  end

  defp await!(launched) do
    case await(launched) do
      {:ok, node} -> node
      {:error, reason} -> raise start_failure(elem(launched, 0).label, reason)
    end
  end

  defp env(env) do
    for(k <- ~w(ERL_FLAGS ERL_AFLAGS ERL_ZFLAGS ELIXIR_ERL_OPTIONS), do: {k, nil}) ++
      [{"ERL_CRASH_DUMP_SECONDS", "0"} | Enum.map(env, fn {k, v} -> {"#{k}", v} end)]
  end

  defp payload(nil), do: nil
  defp payload(code) when is_binary(code), do: {:string, code}
  defp payload(quoted), do: {:quoted, quoted}

  # -- remote calls: :peer.call/5 to `__run__/1`, which runs on the node ----------

  defp remote(node, request, timeout) do
    case exit_status(node, 0) do
      nil -> :peer.call(node.peer, __MODULE__, :__run__, [request], timeout)
      status -> {:error, {:exited, status, output(node)}}
    end
  catch
    :exit, {:timeout, _} -> {:error, :timeout}
    kind, reason -> {:error, {kind, reason, Exception.format(kind, reason, __STACKTRACE__)}}
  end

  @doc false
  def __run__({:boot, app_env, code}) do
    {:ok, _} = :application.ensure_all_started(:elixir)
    {:ok, _} = :application.ensure_all_started(:logger)
    parent = self()

    # A process of its own, which lives on: what the code links to stays up.
    spawn(fn ->
      for {app, kv} <- app_env, {k, v} <- kv, do: Application.put_env(app, k, v, persistent: true)

      case attempt(fn -> run(code, []) end) do
        {:ok, _} -> send(parent, :ok)
        {:error, {_kind, _reason, formatted}} -> send(parent, {:error, formatted})
      end

      Process.sleep(:infinity)
    end)

    receive do
      result -> {:ok, result}
    end
  end

  def __run__({:eval, code, binding}), do: attempt(fn -> run(code, binding) end)
  def __run__({:apply, m, f, a}), do: attempt(fn -> apply(m, f, a) end)

  defp attempt(fun) do
    {:ok, fun.()}
  catch
    kind, reason -> {:error, {kind, reason, Exception.format(kind, reason, __STACKTRACE__)}}
  end

  defp run(nil, _binding), do: nil
  defp run({:string, code}, binding), do: code |> Code.eval_string(binding) |> elem(0)
  defp run({:quoted, quoted}, binding), do: quoted |> Code.eval_quoted(binding) |> elem(0)

  # -- status, errors, polling ---------------------------------------------------

  # The exit status once the process is gone, or nil after `timeout` ms.
  defp exit_status(node, timeout \\ 10_000) do
    poll(fn -> Server.call(node.server, :exit) end, timeout)
    |> case do
      :down -> poll(fn -> peer_status(node.peer) end, 5_000) || -1
      status -> status
    end
  end

  defp peer_status(peer) do
    case :peer.get_state(peer) do
      {:down, {:exit_status, status}} -> status
      {:down, _other} -> -1
      _booting_or_running -> nil
    end
  catch
    :exit, _ -> -1
  end

  defp unwrap!(_node, _code, {:ok, value}), do: value

  defp unwrap!(node, code, {:error, {kind, _reason, formatted}})
       when kind in [:error, :throw, :exit],
       do: raise("#{kind} on #{node.name || node.label} running #{describe(code)}:\n#{formatted}")

  defp unwrap!(node, code, {:error, other}),
    do:
      raise(
        "could not run #{describe(code)} on #{node.label}: #{inspect(other)}\n" <> output(node)
      )

  defp describe(code) when is_binary(code), do: inspect(code)
  defp describe({m, f, a}) when is_atom(m), do: Exception.format_mfa(m, f, length(a))
  defp describe(quoted), do: Macro.to_string(quoted)

  defp start_failure(label, {:exited, status, output}),
    do: "node #{label} exited with status #{status} before it was up; output:\n#{output}"

  defp start_failure(label, {:boot_failed, message, output}),
    do: "node #{label}: the :boot code failed:\n#{message}\noutput:\n#{output}"

  defp start_failure(label, {reason, output}),
    do: "node #{label} was not up (#{inspect(reason)}); output:\n#{output}"

  # fun's first truthy value, or nil after `timeout` ms (0: one try).
  defp poll(fun, timeout, interval \\ 50),
    do: poll_until(fun, System.monotonic_time(:millisecond) + timeout, interval)

  defp poll_until(fun, deadline, interval) do
    cond do
      value = fun.() ->
        value

      System.monotonic_time(:millisecond) >= deadline ->
        nil

      true ->
        Process.sleep(interval)
        poll_until(fun, deadline, interval)
    end
  end

  defp ls(dir) do
    case File.ls(dir) do
      {:ok, entries} -> Enum.filter(entries, &String.match?(&1, ~r/^\d+$/))
      {:error, _} -> []
    end
  end

  # Listening TCP sockets from /proc/net/tcp{,6}: {ip, port, inode}.
  defp tcp_listeners do
    for file <- ["/proc/net/tcp", "/proc/net/tcp6"],
        {:ok, text} <- [File.read(file)],
        line <- text |> String.split("\n", trim: true) |> Enum.drop(1),
        [_sl, local, _remote, "0A" | rest] <- [String.split(line)],
        [ip_hex, port_hex] = String.split(local, ":"),
        do: {decode_ip(ip_hex), String.to_integer(port_hex, 16), Enum.at(rest, 5)}
  end

  # /proc/net shows addresses as 32-bit words in host (little-endian) order.
  defp decode_ip(hex) do
    bytes =
      for <<word::binary-8 <- hex>>, into: <<>>, do: <<String.to_integer(word, 16)::little-32>>

    case bytes do
      <<a, b, c, d>> -> {a, b, c, d}
      <<_::128>> -> List.to_tuple(for <<s::16 <- bytes>>, do: s)
    end
  end
end

defmodule Caravan.Test.Nodes.Server do
  # Owns one OS process: a node through :peer (it is the peer's group leader,
  # so it gets the node's output), or any command through a port. Kills the
  # process group and all descendants on stop or when its owner exits. It
  # never calls the peer: the peer waits on it for every write.
  @moduledoc false
  use GenServer

  def start_link(spec), do: GenServer.start_link(__MODULE__, spec)

  def call(server, request, timeout \\ 30_000) do
    GenServer.call(server, request, timeout)
  catch
    :exit, _ -> nil
  end

  @impl true
  def init(spec) do
    Process.flag(:trap_exit, true)
    {peer, port} = open(spec)
    # A VM that refuses its flags may be gone already (and its port with it).
    os_pid = port && with({:os_pid, os_pid} <- Port.info(port, :os_pid), do: os_pid)
    if os_pid, do: :erlang.monitor(:port, port)
    {:ok, %{peer: peer, port: port, os_pid: os_pid, out: [], exit: nil, down: os_pid == nil}}
  end

  defp open({:node, peer_opts}) do
    # The peer inherits its group leader from here: its I/O comes to us.
    Process.group_leader(self(), self())
    {:ok, peer} = :peer.start_link(peer_opts)
    {peer, Enum.find(Port.list(), &(Port.info(&1, :connected) == {:connected, peer}))}
  end

  defp open({:raw, exe, args, env, cd}) do
    env = for {k, v} <- env, do: {~c"#{k}", (v && ~c"#{v}") || false}
    opts = [:binary, :exit_status, :stderr_to_stdout, args: args, env: env, cd: cd]
    {nil, Port.open({:spawn_executable, exe}, opts)}
  end

  @impl true
  def handle_call(:info, _from, state), do: {:reply, {state.peer, state.os_pid}, state}
  def handle_call(:kill, _from, state), do: {:reply, kill(state), state}
  def handle_call(:stop, _from, state), do: {:stop, :normal, :ok, state}

  def handle_call(:output, _from, state),
    do: {:reply, state.out |> IO.iodata_to_binary() |> String.replace("\r\n", "\n"), state}

  # nil while running; a node's status is the peer's to tell.
  def handle_call(:exit, _from, state),
    do: {:reply, state.down && if(state.peer, do: :down, else: state.exit), state}

  def handle_call({:input, data}, _from, state),
    do: {:reply, state.down || Port.command(state.port, data), state}

  @impl true
  def handle_info({:io_request, from, reply_as, request}, state) do
    {reply, out} = io(request, state.out)
    send(from, {:io_reply, reply_as, reply})
    {:noreply, %{state | out: out}}
  end

  def handle_info({port, {:data, data}}, %{port: port} = state),
    do: {:noreply, %{state | out: [state.out | data]}}

  def handle_info({port, {:exit_status, status}}, %{port: port} = state),
    do: {:noreply, %{state | exit: status}}

  def handle_info({:DOWN, _, :port, port, _}, %{port: port} = state),
    do: {:noreply, %{state | down: true}}

  # The peer's and the port's EXIT; the owner's EXIT becomes terminate/2.
  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state), do: kill(state)

  # The I/O protocol, output only: the nodes read nothing.
  defp io({:put_chars, enc, chars}, out),
    do: {:ok, [out | :unicode.characters_to_binary(chars, enc)]}

  defp io({:put_chars, enc, m, f, a}, out), do: io({:put_chars, enc, apply(m, f, a)}, out)
  defp io({:requests, reqs}, out), do: Enum.reduce(reqs, {:ok, out}, fn r, {_, o} -> io(r, o) end)
  defp io({:setopts, _opts}, out), do: {:ok, out}
  defp io(:getopts, out), do: {[binary: true, encoding: :unicode], out}
  defp io(_other, out), do: {{:error, :enotsup}, out}

  # Port programs run in a session (and process group) of their own: kill the
  # group, and every descendant, found before the parent dies, since some
  # (port programs of the node, a shell under `script`'s pty) start their own.
  # A node's peer goes first, brutally: left alive, it would answer writes
  # still queued from the node on a closed port, crash and log it.
  defp kill(%{down: true}), do: :exited

  defp kill(%{os_pid: os_pid, peer: peer}) do
    pids = Enum.map([os_pid | descendants([os_pid], children())], &to_string/1)
    if peer, do: Process.exit(peer, :kill)
    System.cmd("kill", ["-KILL", "--", "-#{os_pid}" | pids], stderr_to_stdout: true)
    # Its exit status went with the peer; wait for the process to be reaped.
    if peer, do: await_gone(os_pid, 500)
    :killed
  end

  defp await_gone(os_pid, tries) do
    if tries > 0 and File.exists?("/proc/#{os_pid}") do
      Process.sleep(20)
      await_gone(os_pid, tries - 1)
    end
  end

  defp children do
    for entry <- File.ls!("/proc"),
        {:ok, stat} <- [File.read("/proc/#{entry}/stat")],
        [_, after_comm] <- [String.split(stat, ") ", parts: 2)],
        [_state, ppid | _] <- [String.split(after_comm, " ")],
        reduce: %{},
        do: (acc -> Map.update(acc, String.to_integer(ppid), [entry], &[entry | &1]))
  end

  defp descendants([], _children), do: []

  defp descendants([pid | rest], children) do
    kids = Enum.map(Map.get(children, pid, []), &String.to_integer/1)
    kids ++ descendants(kids ++ rest, children)
  end
end

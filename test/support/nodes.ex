defmodule Caravan.Test.Nodes do
  @moduledoc """
  Real BEAM nodes as OS processes, for tests: start them with Caravan's
  flags (or any others), run code on them, and always stop them.

      node = Nodes.start!(sname: "a-21001")
      Nodes.eval!(node, "Node.ping(peer)", binding: [peer: other.name])
      #=> :pong

  ## How the test VM talks to its nodes

  Through each node's stdin and stdout, not through Erlang distribution.
  Every node runs `elixir ... -e "Caravan.Test.Nodes.Control.serve()"`,
  which reads requests from stdin and writes replies to stdout as framed
  lines (a marker, then the Base64 of `:erlang.term_to_binary/1`); every
  other line of output (logs, crash reports) is kept and can be read with
  `output/1`, and is shown when a start fails. The reasons:

    * The test VM stays an ordinary VM, so `mix test` needs no flags. Making
      it a Caravan node would need `-epmd_module` on its command line: OTP 25
      reads it only from there (`net_kernel:epmd_module/0` uses
      `init:get_argument/1`; the kernel parameter `epmd_module` exists only
      from OTP 27), so it cannot be switched on at run time.
    * The nodes' `Node.list()` holds only the nodes a test started, never a
      test VM, hidden or not: what a test sees is what production sees.
    * It works whatever the nodes' transport or cookie (TLS, IPv6, a wrong
      cookie) and even when a node's distribution is broken, which is what
      many tests are about.

  ## Starting

  `start/1` and `start!/1` start one node and wait until it is up: booted,
  distribution started (the VM halts otherwise), the `:boot` code run.
  `start_all!/1` starts several in parallel. Options (`t:start_option/0`):

    * `:name` or `:sname` - the node name (`--name`/`--sname`); neither
      starts a node without distribution.
    * `:caravan` - add Caravan's flags (`seed_flags/0`), default `true`.
      `-start_epmd false` is always added, so no test ever starts epmd.
    * `:erl` - more emulator flags, a list of strings, default `[]`
      (`["-kernel", "inet_dist_use_interface", "{127,0,0,2}"]`). They are
      passed through `elixir --erl`, so none may contain whitespace.
    * `:cookie` - default `"caravan-test"`.
    * `:hidden` - `--hidden`, default `false`.
    * `:code_paths` - more `-pa` directories, default `[]`; Caravan's own
      ebin (`caravan_ebin/0`, which also holds this module) always comes
      first, given to the emulator so the VM finds Caravan while booting.
    * `:env` - environment variables, `[{"NAME", "value" | nil}]`, default
      `[]`; `nil` unsets. `ELIXIR_ERL_OPTIONS`, `ERL_FLAGS`, `ERL_AFLAGS`,
      `ERL_ZFLAGS` are unset and crash dumps are off unless given here.
    * `:app_env` - application environment set before `:boot` runs, as
      `[app: [key: value]]`, default `[]`.
    * `:boot` - code run on the node before it counts as up: an Elixir
      string or quoted expression, default none. It runs in the node's
      control process, which lives as long as the node, so processes it
      links to (a supervision tree) stay up. A raise fails the start.
    * `:cd` - working directory, default `System.tmp_dir!/0`.
    * `:netns` - the name of a network namespace (`ip netns add`) to run
      the node in, through `ip netns exec` (which keeps the process, so
      cleanup is unchanged); default `nil`, the test VM's namespace.
    * `:timeout` - how long to wait for the node to be up, default 30_000 ms.
    * `:cleanup` - stop the node when the test ends (`ExUnit.Callbacks.on_exit/2`),
      default `true`; call from the test process or a setup block, or pass
      `false` and call `stop/1` yourself.

  A cluster with config, as the libcluster strategy tests need:

      nodes =
        Nodes.start_all!(
          for port <- 22001..22005 do
            [
              name: "app-\#{port}@127.0.0.1",
              app_env: [caravan: [query: "app.service.consul"]],
              # The strategy's supervision tree would go here.
              boot:
                quote do
                  children = [{Agent, fn -> Application.get_env(:caravan, :query) end}]
                  {:ok, _} = Supervisor.start_link(children, strategy: :one_for_one)
                end
            ]
          end
        )

      Nodes.wait_until(fn ->
        Enum.all?(nodes, &(length(Nodes.eval!(&1, "Node.list()")) == 4))
      end)

  ## Running code

  `eval/3` and `eval!/3` evaluate an Elixir string or quoted expression
  (with a `:binding`); `rpc!/5` applies a function. Each request runs in a
  fresh process on the node, so several may run at once. Closures cannot be
  sent: the test's modules are not loaded on the nodes.

  ## Stopping and cleanup

  `stop/1` kills the node's whole process group (`kill -KILL -<pgid>`: the
  BEAM and anything it spawned) and every descendant process (some start
  sessions of their own), then waits for it to exit. Only daemons that
  detach from their parent escape; no test here starts one. The same happens
  when the process that started the node exits (the node's server traps
  exits) and in the `on_exit` callback, so a failing assertion never leaves
  a node behind; and a node whose stdin closes (the test VM died) halts by
  itself.

  ## Other OS processes

  `spawn!/3` runs any command (a release's `bin/app start`, `iex --remsh`)
  under the same cleanup, with `send_input/2`, `wait_for_output/3` and
  `wait_for_exit/2` to drive it.
  """

  alias Caravan.Test.Nodes.Server

  @enforce_keys [:server, :os_pid, :label]
  defstruct [:server, :os_pid, :label, :name]

  @typedoc "A started node (or process): `name` is its node name once up (`nil` without distribution)."
  @type t :: %__MODULE__{
          server: pid(),
          os_pid: pos_integer(),
          label: String.t(),
          name: node() | nil
        }

  @typedoc "See the module doc."
  @type start_option ::
          {:name, String.t()}
          | {:sname, String.t()}
          | {:caravan, boolean()}
          | {:erl, [String.t()]}
          | {:cookie, String.t()}
          | {:hidden, boolean()}
          | {:code_paths, [Path.t()]}
          | {:env, [{String.t(), String.t() | nil}]}
          | {:app_env, keyword(keyword())}
          | {:boot, String.t() | Macro.t()}
          | {:cd, Path.t()}
          | {:netns, String.t() | nil}
          | {:timeout, timeout()}
          | {:cleanup, boolean()}

  @typedoc "Why a node did not come up; each carries the node's output so far."
  @type start_error ::
          {:exited, non_neg_integer(), String.t()}
          | {:timeout, String.t()}
          | {:boot_failed, String.t(), String.t()}

  @start_keys [
    :name,
    :sname,
    caravan: true,
    erl: [],
    cookie: "caravan-test",
    hidden: false,
    code_paths: [],
    env: [],
    app_env: [],
    boot: nil,
    cd: nil,
    netns: nil,
    timeout: 30_000,
    cleanup: true
  ]

  @doc "Caravan's three flags from the README, as a list."
  @spec seed_flags() :: [String.t()]
  def seed_flags do
    ~w(-proto_dist Elixir.Caravan.Epmd.Dist -start_epmd false -epmd_module Elixir.Caravan.Epmd.Client)
  end

  @doc "The ebin directory the test VM loaded Caravan from (it also holds this module)."
  @spec caravan_ebin() :: Path.t()
  def caravan_ebin, do: Caravan.Epmd |> :code.which() |> to_string() |> Path.dirname()

  @doc "Starts a node and waits until it is up. See the module doc for options."
  @spec start(keyword()) :: {:ok, t()} | {:error, start_error()}
  def start(opts) do
    opts = validate!(opts)
    node = launch(opts)
    await(node, opts[:timeout])
  end

  @doc "Like `start/1`, but raises with the node's output when it does not come up."
  @spec start!(keyword()) :: t()
  def start!(opts) do
    case start(opts) do
      {:ok, node} -> node
      {:error, reason} -> raise start_failure(opts[:name] || opts[:sname], reason)
    end
  end

  @doc "Starts several nodes in parallel and waits for all; raises if any fails."
  @spec start_all!([keyword()]) :: [t()]
  def start_all!(opts_list) do
    launched =
      Enum.map(opts_list, fn opts ->
        opts = validate!(opts)
        {launch(opts), opts}
      end)

    for {node, opts} <- launched do
      case await(node, opts[:timeout]) do
        {:ok, node} -> node
        {:error, reason} -> raise start_failure(node.label, reason)
      end
    end
  end

  @doc """
  Evaluates `code` (an Elixir string or quoted expression) on `node`.

  Options: `:binding` (variables, default `[]`), `:timeout` (default
  15_000 ms). Returns `{:ok, value}`, or `{:error, {kind, reason, formatted}}`
  when it raised, threw or exited on the node, or `{:error, {:exited, status,
  output}}` when the node is gone.
  """
  @spec eval(t(), String.t() | Macro.t(), keyword()) :: {:ok, term()} | {:error, term()}
  def eval(%__MODULE__{} = node, code, opts \\ []) do
    opts = Keyword.validate!(opts, binding: [], timeout: 15_000)
    request(node, {:eval, code_payload(code), opts[:binding]}, opts[:timeout])
  end

  @doc "Like `eval/3`, but returns the value or raises with the node's error."
  @spec eval!(t(), String.t() | Macro.t(), keyword()) :: term()
  def eval!(node, code, opts \\ []) do
    case eval(node, code, opts) do
      {:ok, value} -> value
      {:error, error} -> raise remote_failure(node, code, error)
    end
  end

  @doc "Applies `module.fun(args)` on `node`; returns the value or raises."
  @spec rpc!(t(), module(), atom(), [term()], timeout()) :: term()
  def rpc!(%__MODULE__{} = node, module, fun, args, timeout \\ 15_000) do
    case request(node, {:apply, module, fun, args}, timeout) do
      {:ok, value} -> value
      {:error, error} -> raise remote_failure(node, {module, fun, args}, error)
    end
  end

  @doc "Everything the node or process wrote so far (stdout and stderr, frames removed)."
  @spec output(t()) :: String.t()
  def output(%__MODULE__{server: server}) do
    Server.output(server)
  catch
    :exit, _ -> ""
  end

  @doc """
  Stops the node or process: kills its process group and waits for it to
  exit. Returns its exit status, or `nil` if it was already stopped.
  Options: `:graceful` - ask a node to halt first and give it up to 5 s
  (default `false`).
  """
  @spec stop(t(), keyword()) :: non_neg_integer() | nil
  def stop(%__MODULE__{server: server}, opts \\ []) do
    opts = Keyword.validate!(opts, graceful: false)
    Server.stop(server, opts[:graceful])
  catch
    :exit, _ -> nil
  end

  @doc """
  Runs any command as a cleaned-up OS process, for what is not a node
  started by this module (a release's `bin/app start`, `iex --remsh`).

  Options: `:env`, `:cd`, `:cleanup` as for `start/1`, and `:label`.
  Returns at once; drive it with `send_input/2`, `wait_for_output/3`,
  `wait_for_exit/2`.
  """
  @spec spawn!(Path.t(), [String.t()], keyword()) :: t()
  def spawn!(executable, args, opts \\ []) do
    opts =
      Keyword.validate!(opts, env: [], cd: nil, cleanup: true, label: Path.basename(executable))

    exe =
      System.find_executable(executable) ||
        raise ArgumentError, "no executable #{inspect(executable)}"

    {:ok, server} =
      Server.start_link(
        mode: :raw,
        executable: exe,
        args: args,
        env: base_env() ++ normalize_env(opts[:env]),
        cd: opts[:cd] || System.tmp_dir!()
      )

    node = %__MODULE__{server: server, os_pid: Server.os_pid(server), label: opts[:label]}
    if opts[:cleanup], do: register_cleanup(node)
    node
  end

  @doc "Writes `data` to the process's stdin."
  @spec send_input(t(), iodata()) :: :ok
  def send_input(%__MODULE__{server: server}, data), do: Server.send_input(server, data)

  @doc """
  Waits until the output matches `pattern` (a regex or substring); returns
  the output. Raises with the output after `timeout` ms or if the process
  exits first without a match.
  """
  @spec wait_for_output(t(), Regex.t() | String.t(), timeout()) :: String.t()
  def wait_for_output(%__MODULE__{} = node, pattern, timeout \\ 15_000) do
    deadline = System.monotonic_time(:millisecond) + timeout
    poll_output(node, pattern, deadline)
  end

  @doc """
  Waits for the process to exit on its own: `{status, output}`. Raises with
  the output after `timeout` ms (the process is then killed by cleanup).
  """
  @spec wait_for_exit(t(), timeout()) :: {non_neg_integer(), String.t()}
  def wait_for_exit(%__MODULE__{server: server} = node, timeout \\ 15_000) do
    case Server.await_exit(server, timeout) do
      {:ok, status} ->
        {status, output(node)}

      :timeout ->
        raise "#{node.label} did not exit within #{timeout} ms; output:\n" <> output(node)
    end
  end

  @doc """
  Calls `fun` (of no arguments) every `interval` ms until it returns a truthy value, which is
  returned; raises after `timeout` ms with the last value. For liveness
  (a cluster converging), not for timing.
  """
  @spec wait_until(function(), timeout(), pos_integer()) :: term()
  def wait_until(fun, timeout \\ 15_000, interval \\ 50) do
    deadline = System.monotonic_time(:millisecond) + timeout
    poll(fun, deadline, interval)
  end

  @doc """
  The TCP sockets the OS process of `node` listens on, as `{ip, port}`,
  read from `/proc` (Linux): which process holds a port, not just whether
  something does.
  """
  @spec listening(t()) :: [{:inet.ip_address(), :inet.port_number()}]
  def listening(%__MODULE__{os_pid: os_pid}) do
    inodes =
      case File.ls("/proc/#{os_pid}/fd") do
        {:ok, fds} ->
          for fd <- fds,
              {:ok, "socket:[" <> rest} <- [File.read_link("/proc/#{os_pid}/fd/#{fd}")],
              into: MapSet.new(),
              do: String.trim_trailing(rest, "]")

        {:error, _} ->
          MapSet.new()
      end

    for {ip, port, inode} <- tcp_listeners(), inode in inodes, do: {ip, port}
  end

  @doc """
  Raises unless the machine is free of epmd: no process named `epmd` and
  no socket listening on port 4369. Call it before each scenario.
  """
  @spec refute_epmd!() :: :ok
  def refute_epmd! do
    epmds =
      for pid <- File.ls!("/proc"),
          String.match?(pid, ~r/^\d+$/),
          File.read("/proc/#{pid}/comm") == {:ok, "epmd\n"},
          do: pid

    on_4369 = for {ip, 4369, _inode} <- tcp_listeners(), do: :inet.ntoa(ip)

    if epmds != [] or on_4369 != [] do
      raise "expected no epmd, found epmd processes #{inspect(epmds)} and listeners on " <>
              "port 4369 at #{inspect(on_4369)}; stop epmd (epmd -kill) and run again"
    end

    :ok
  end

  # -- internals ---------------------------------------------------------------

  defp validate!(opts) do
    opts = Keyword.validate!(opts, @start_keys)

    if opts[:name] && opts[:sname] do
      raise ArgumentError,
            "give :name or :sname, not both; got name: #{opts[:name]}, sname: #{opts[:sname]}"
    end

    for flag <- opts[:erl] ++ opts[:code_paths], String.match?(flag, ~r/\s/) do
      raise ArgumentError,
            "expected emulator flags and code paths without whitespace (they go through " <>
              "elixir --erl), got: #{inspect(flag)}"
    end

    opts
  end

  defp launch(opts) do
    distribution =
      cond do
        opts[:name] -> ["--name", opts[:name]]
        opts[:sname] -> ["--sname", opts[:sname]]
        true -> []
      end

    erl =
      if(opts[:caravan], do: seed_flags(), else: ~w(-start_epmd false)) ++
        opts[:erl] ++ ["-pa", caravan_ebin() | opts[:code_paths]]

    args =
      ["--erl", Enum.join(erl, " "), "--cookie", opts[:cookie]] ++
        distribution ++
        if(opts[:hidden], do: ["--hidden"], else: []) ++
        ["-e", "Caravan.Test.Nodes.Control.serve()"]

    label = opts[:name] || opts[:sname] || "node"
    elixir = System.find_executable("elixir")

    {executable, args} =
      case opts[:netns] do
        nil -> {elixir, args}
        netns -> {System.find_executable("ip"), ["netns", "exec", netns, elixir | args]}
      end

    {:ok, server} =
      Server.start_link(
        mode: :node,
        executable: executable,
        args: args,
        env: base_env() ++ normalize_env(opts[:env]),
        cd: opts[:cd] || System.tmp_dir!(),
        boot: {opts[:app_env], code_payload(opts[:boot])}
      )

    node = %__MODULE__{server: server, os_pid: Server.os_pid(server), label: label}
    if opts[:cleanup], do: register_cleanup(node)
    node
  end

  defp await(node, timeout) do
    case Server.await_ready(node.server, timeout) do
      {:ok, name} -> {:ok, %{node | name: name}}
      {:error, _} = error -> error
    end
  end

  defp register_cleanup(node) do
    ExUnit.Callbacks.on_exit({__MODULE__, node.server}, fn -> stop(node) end)
  end

  defp base_env do
    [
      {"ELIXIR_ERL_OPTIONS", nil},
      {"ERL_FLAGS", nil},
      {"ERL_AFLAGS", nil},
      {"ERL_ZFLAGS", nil},
      {"ERL_CRASH_DUMP_SECONDS", "0"}
    ]
  end

  defp normalize_env(env), do: Enum.map(env, fn {k, v} -> {to_string(k), v && to_string(v)} end)

  defp code_payload(nil), do: nil
  defp code_payload(code) when is_binary(code), do: {:string, code}
  defp code_payload(quoted), do: {:quoted, quoted}

  defp request(node, request, timeout) do
    Server.request(node.server, request, timeout)
  catch
    :exit, {:noproc, _} -> {:error, :stopped}
    :exit, reason -> {:error, {:server_down, reason}}
  end

  defp start_failure(label, {:exited, status, output}),
    do: "node #{label} exited with status #{status} before it was up; output:\n#{output}"

  defp start_failure(label, {:timeout, output}),
    do: "node #{label} was not up in time; output:\n#{output}"

  defp start_failure(label, {:boot_failed, message, output}),
    do: "node #{label}: the :boot code failed:\n#{message}\noutput:\n#{output}"

  defp remote_failure(node, code, {kind, _reason, formatted})
       when kind in [:error, :throw, :exit],
       do: "#{kind} on #{node.name || node.label} running #{describe(code)}:\n#{formatted}"

  defp remote_failure(node, code, other),
    do:
      "could not run #{describe(code)} on #{node.label}: #{inspect(other)}\noutput:\n#{output(node)}"

  defp describe(code) when is_binary(code), do: inspect(code)
  defp describe({m, f, a}) when is_atom(m), do: Exception.format_mfa(m, f, length(a))
  defp describe(quoted), do: Macro.to_string(quoted)

  defp poll_output(node, pattern, deadline) do
    text = output(node)

    cond do
      if(is_binary(pattern), do: String.contains?(text, pattern), else: text =~ pattern) ->
        text

      System.monotonic_time(:millisecond) > deadline or not Server.running?(node.server) ->
        raise "#{node.label}: no output matching #{inspect(pattern)}; output:\n#{output(node)}"

      true ->
        Process.sleep(50)
        poll_output(node, pattern, deadline)
    end
  end

  defp poll(fun, deadline, interval) do
    case fun.() do
      falsy when falsy in [nil, false] ->
        if System.monotonic_time(:millisecond) > deadline do
          raise "condition still false after waiting; last value: #{inspect(falsy)}"
        else
          Process.sleep(interval)
          poll(fun, deadline, interval)
        end

      value ->
        value
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
    words = for <<word::binary-8 <- hex>>, do: <<String.to_integer(word, 16)::little-32>>
    bytes = IO.iodata_to_binary(words)

    case bytes do
      <<a, b, c, d>> -> {a, b, c, d}
      <<_::128>> -> List.to_tuple(for <<s::16 <- bytes>>, do: s)
    end
  end
end

defmodule Caravan.Test.Nodes.Server do
  # Owns one OS process (a node or any command) through a port: collects its
  # output, speaks the control protocol with nodes, kills its process group
  # on stop or when its owner exits.
  @moduledoc false
  use GenServer

  @marker "\u0001CARAVAN-NODE:"
  @max_lines 5_000

  def start_link(opts), do: GenServer.start_link(__MODULE__, opts)
  def os_pid(server), do: GenServer.call(server, :os_pid)
  def output(server), do: GenServer.call(server, :output)
  def running?(server), do: Process.alive?(server) and GenServer.call(server, :running?)
  def send_input(server, data), do: GenServer.call(server, {:send_input, data})

  def await_ready(server, timeout), do: GenServer.call(server, {:await_ready, timeout}, :infinity)

  def await_exit(server, timeout), do: GenServer.call(server, {:await_exit, timeout}, :infinity)

  def request(server, request, timeout),
    do: GenServer.call(server, {:request, request, timeout}, :infinity)

  def stop(server, graceful?), do: GenServer.call(server, {:stop, graceful?}, 30_000)

  @doc false
  def marker, do: @marker

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)

    port =
      Port.open({:spawn_executable, opts[:executable]}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        {:args, opts[:args]},
        {:env,
         Enum.map(opts[:env], fn {k, v} -> {to_charlist(k), (v && to_charlist(v)) || false} end)},
        {:cd, opts[:cd]}
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)

    state = %{
      mode: opts[:mode],
      port: port,
      os_pid: os_pid,
      lines: [],
      line_count: 0,
      partial: "",
      status: if(opts[:mode] == :raw, do: :running, else: :booting),
      name: nil,
      exit_status: nil,
      ready_waiters: [],
      exit_waiters: [],
      pending: %{},
      next_id: 1
    }

    if opts[:mode] == :node, do: send_frame(port, {:boot, opts[:boot]})
    {:ok, state}
  end

  @impl true
  def handle_call(:os_pid, _from, state), do: {:reply, state.os_pid, state}
  def handle_call(:output, _from, state), do: {:reply, output_text(state), state}
  def handle_call(:running?, _from, state), do: {:reply, state.exit_status == nil, state}

  def handle_call({:send_input, data}, _from, state) do
    if state.exit_status == nil, do: Port.command(state.port, data)
    {:reply, :ok, state}
  end

  def handle_call({:await_ready, timeout}, from, state) do
    case state.status do
      :ready ->
        {:reply, {:ok, state.name}, state}

      {:failed, error} ->
        {:reply, {:error, error}, state}

      _booting ->
        Process.send_after(self(), {:ready_timeout, from}, timeout)
        {:noreply, %{state | ready_waiters: [from | state.ready_waiters]}}
    end
  end

  def handle_call({:await_exit, timeout}, from, state) do
    if state.exit_status != nil do
      {:reply, {:ok, state.exit_status}, state}
    else
      Process.send_after(self(), {:exit_timeout, from}, timeout)
      {:noreply, %{state | exit_waiters: [from | state.exit_waiters]}}
    end
  end

  def handle_call({:request, request, timeout}, from, state) do
    if state.exit_status != nil do
      {:reply, {:error, {:exited, state.exit_status, output_text(state)}}, state}
    else
      id = state.next_id
      send_frame(state.port, {:request, id, request})
      Process.send_after(self(), {:request_timeout, id}, timeout)
      {:noreply, %{state | pending: Map.put(state.pending, id, from), next_id: id + 1}}
    end
  end

  def handle_call({:stop, graceful?}, _from, state) do
    state =
      if graceful? and state.exit_status == nil and state.mode == :node do
        send_frame(state.port, :halt)
        wait_exit(state, 5_000)
      else
        state
      end

    state = kill(state)
    {:stop, :normal, state.exit_status, state}
  end

  @impl true
  # Raw bytes, split into lines here: line mode would hold back a prompt
  # that has no newline yet.
  def handle_info({port, {:data, data}}, %{port: port} = state) do
    [partial | lines] =
      IO.iodata_to_binary([state.partial, data]) |> String.split("\n") |> Enum.reverse()

    state = lines |> Enum.reverse() |> Enum.reduce(%{state | partial: partial}, &handle_line/2)
    {:noreply, state}
  end

  def handle_info({port, {:exit_status, status}}, %{port: port} = state),
    do: {:noreply, exited(state, status)}

  def handle_info({:ready_timeout, from}, state) do
    if from in state.ready_waiters do
      GenServer.reply(from, {:error, {:timeout, output_text(state)}})
      {:noreply, %{state | ready_waiters: List.delete(state.ready_waiters, from)}}
    else
      {:noreply, state}
    end
  end

  def handle_info({:exit_timeout, from}, state) do
    if from in state.exit_waiters do
      GenServer.reply(from, :timeout)
      {:noreply, %{state | exit_waiters: List.delete(state.exit_waiters, from)}}
    else
      {:noreply, state}
    end
  end

  def handle_info({:request_timeout, id}, state) do
    case Map.pop(state.pending, id) do
      {nil, _} ->
        {:noreply, state}

      {from, pending} ->
        GenServer.reply(from, {:error, :timeout})
        {:noreply, %{state | pending: pending}}
    end
  end

  # The port's own EXIT (after exit_status) and strays. The owner's EXIT
  # never gets here: gen_server turns an EXIT from its parent into
  # terminate/2, which kills the OS process.
  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state) do
    kill(state)
    :ok
  end

  # -- lines and frames --------------------------------------------------------

  defp handle_line(line, state) do
    case String.trim_trailing(line, "\r") do
      @marker <> frame -> handle_frame(decode(frame), state)
      # Frames start with a newline of their own, in case a log line was cut.
      "" -> state
      line -> add_line(state, line)
    end
  end

  defp handle_frame({:ready, name}, state) do
    for from <- state.ready_waiters, do: GenServer.reply(from, {:ok, name})
    %{state | status: :ready, name: name, ready_waiters: []}
  end

  defp handle_frame({:boot_failed, message}, state) do
    error = {:boot_failed, message, output_text(state)}
    for from <- state.ready_waiters, do: GenServer.reply(from, {:error, error})
    %{state | status: {:failed, error}, ready_waiters: []}
  end

  defp handle_frame({:reply, id, result}, state) do
    case Map.pop(state.pending, id) do
      {nil, _} ->
        state

      {from, pending} ->
        GenServer.reply(from, result)
        %{state | pending: pending}
    end
  end

  defp send_frame(port, term) do
    Port.command(port, [Base.encode64(:erlang.term_to_binary(term)), "\n"])
  end

  defp decode(frame), do: frame |> Base.decode64!() |> :erlang.binary_to_term()

  # -- exit and kill -----------------------------------------------------------

  defp exited(state, status) do
    output = output_text(state)

    for from <- state.ready_waiters,
        do: GenServer.reply(from, {:error, {:exited, status, output}})

    for {_, from} <- state.pending, do: GenServer.reply(from, {:error, {:exited, status, output}})
    for from <- state.exit_waiters, do: GenServer.reply(from, {:ok, status})

    status_after =
      case state.status do
        :ready -> :exited
        :running -> :exited
        {:failed, _} = failed -> failed
        :booting -> {:failed, {:exited, status, output}}
        other -> other
      end

    %{
      state
      | exit_status: status,
        status: status_after,
        ready_waiters: [],
        pending: %{},
        exit_waiters: []
    }
  end

  defp kill(%{exit_status: status} = state) when status != nil, do: state

  defp kill(state) do
    # Port children run in a session (and process group) of their own: kill
    # the whole group when the process leads one, else just it; and every
    # descendant, found before the parent dies, since some (the shell under
    # `script`'s pty) start sessions of their own.
    descendants = descendants(state.os_pid)

    group =
      case process_group(state.os_pid) do
        pgid when pgid == state.os_pid -> ["-#{pgid}"]
        _other -> ["#{state.os_pid}"]
      end

    System.cmd("kill", ["-KILL", "--" | group ++ Enum.map(descendants, &to_string/1)],
      stderr_to_stdout: true
    )

    wait_exit(state, 10_000)
  end

  defp descendants(os_pid) do
    children =
      for entry <- File.ls!("/proc"),
          String.match?(entry, ~r/^\d+$/),
          {:ok, stat} <- [File.read("/proc/#{entry}/stat")],
          [_, after_comm] <- [String.split(stat, ") ", parts: 2)],
          [_state, ppid | _] <- [String.split(after_comm, " ")],
          reduce: %{} do
        acc ->
          Map.update(
            acc,
            String.to_integer(ppid),
            [String.to_integer(entry)],
            &[String.to_integer(entry) | &1]
          )
      end

    collect_descendants([os_pid], children, [])
  end

  defp collect_descendants([], _children, acc), do: acc

  defp collect_descendants([pid | rest], children, acc) do
    kids = Map.get(children, pid, [])
    collect_descendants(kids ++ rest, children, kids ++ acc)
  end

  defp wait_exit(%{port: port} = state, timeout) do
    receive do
      {^port, {:exit_status, status}} -> exited(state, status)
    after
      timeout -> state
    end
  end

  defp process_group(os_pid) do
    with {:ok, stat} <- File.read("/proc/#{os_pid}/stat"),
         [_, after_comm] <- String.split(stat, ") ", parts: 2),
         [_state, _ppid, pgid | _] <- String.split(after_comm, " ") do
      String.to_integer(pgid)
    else
      _ -> nil
    end
  end

  # -- output ------------------------------------------------------------------

  defp add_line(%{line_count: count} = state, line) when count >= @max_lines,
    do: %{state | lines: [line | Enum.take(state.lines, @max_lines - 1)]}

  defp add_line(state, line),
    do: %{state | lines: [line | state.lines], line_count: state.line_count + 1}

  defp output_text(state) do
    partial = IO.iodata_to_binary(state.partial)
    lines = Enum.reverse(state.lines)
    Enum.join(if(partial == "", do: lines, else: lines ++ [partial]), "\n")
  end
end

defmodule Caravan.Test.Nodes.Control do
  # Runs on every node started by Caravan.Test.Nodes: reads requests from
  # stdin, answers on stdout. See Caravan.Test.Nodes' moduledoc.
  @moduledoc false

  @doc false
  def serve do
    marker = Caravan.Test.Nodes.Server.marker()

    case read() do
      {:boot, {app_env, code}} ->
        case boot(app_env, code) do
          :ok -> write(marker, {:ready, if(Node.alive?(), do: node())})
          {:error, message} -> write(marker, {:boot_failed, message})
        end

        loop(marker)

      :eof ->
        System.halt(0)
    end
  end

  defp boot(app_env, code) do
    for {app, pairs} <- app_env, {key, value} <- pairs do
      Application.put_env(app, key, value, persistent: true)
    end

    run(code, [])
    :ok
  rescue
    e -> {:error, Exception.format(:error, e, __STACKTRACE__)}
  catch
    kind, reason -> {:error, Exception.format(kind, reason, __STACKTRACE__)}
  end

  defp loop(marker) do
    case read() do
      {:request, id, request} ->
        spawn(fn -> write(marker, {:reply, id, handle(request)}) end)
        loop(marker)

      :halt ->
        System.halt(0)

      :eof ->
        # The test VM is gone: do not outlive it.
        System.halt(0)
    end
  end

  defp handle({:eval, code, binding}), do: attempt(fn -> run(code, binding) end)
  defp handle({:apply, m, f, a}), do: attempt(fn -> apply(m, f, a) end)

  defp attempt(fun) do
    {:ok, fun.()}
  catch
    kind, reason -> {:error, {kind, reason, Exception.format(kind, reason, __STACKTRACE__)}}
  end

  defp run(nil, _binding), do: nil

  defp run({:string, code}, binding) do
    {value, _} = Code.eval_string(code, binding)
    value
  end

  defp run({:quoted, quoted}, binding) do
    {value, _} = Code.eval_quoted(quoted, binding)
    value
  end

  defp read do
    case IO.binread(:stdio, :line) do
      data when is_binary(data) ->
        data |> String.trim() |> Base.decode64!() |> :erlang.binary_to_term()

      _eof_or_error ->
        :eof
    end
  end

  defp write(marker, term) do
    IO.binwrite(:stdio, ["\n", marker, Base.encode64(:erlang.term_to_binary(term)), "\n"])
  end
end

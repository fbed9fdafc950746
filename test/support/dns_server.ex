defmodule Caravan.Test.DnsServer do
  @moduledoc """
  Runs a real DNS server (dnsmasq or BIND) as an OS process on a loopback
  address and a free port, serving Consul-shaped records, for as long as
  the test that started it.

  Use it through `Caravan.Test.Dnsmasq` (small answers) or
  `Caravan.Test.Bind` (large answers: dnsmasq 2.90 corrupts answers beyond
  about 16 KiB). Both take the same records and return a server pid for the
  functions of this module:

      dns = Caravan.Test.Dnsmasq.start!(Caravan.Test.DnsServer.addr_instance(
              "likes-dist.service.consul", {127, 0, 0, 2}, 4001))
      Caravan.DnsClient.lookup("likes-dist.service.consul",
        nameservers: [Caravan.Test.DnsServer.nameserver(dns)])

  ## Records

    * `{:srv, name, target, port}` or `{:srv, name, target, port, priority, weight}`
      (priority and weight default to 1, as Consul answers);
    * `{:a, name, ip}` and `{:aaaa, name, ip}`, with `ip` a tuple or a string.

  Names are written without a trailing dot. `addr_instance/4` and
  `node_instance/5` build the two shapes Consul answers with. Unknown names
  under `consul` answer NXDOMAIN, as Consul does.

  ## Lifecycle

    * `start!/3` starts the server under the test's supervisor
      (`ExUnit.Callbacks.start_supervised!/2`), so it is stopped, and its OS
      process killed, when the test ends, pass or fail;
    * `set_records/2` restarts it on the same port with new records (the
      servers read their configuration only at start);
    * `stop_server/1` kills the OS process but keeps the port (an outage);
      `start_server/1` brings it back;
    * if the BEAM itself dies, the server dies with it: it runs under a
      small shell that kills it when its stdin (the port to the BEAM) closes.

  The address is 127.0.0.1 unless the `:address` option of `start!/3`
  names another local IPv4 address (a bridge's, for nodes in network
  namespaces); the port is free for both UDP and TCP when
  chosen (picked by binding port 0); a server that still loses the race for
  it is started again on another port.
  """

  use GenServer

  @typedoc "A record the server serves."
  @type dns_record ::
          {:srv, String.t(), String.t(), :inet.port_number()}
          | {:srv, String.t(), String.t(), :inet.port_number(), non_neg_integer(),
             non_neg_integer()}
          | {:a | :aaaa, String.t(), :inet.ip_address() | String.t()}

  @doc """
  What a server backend provides: its configuration files for `records` on
  `port`, the command that runs it in the foreground, and how long it may
  take to answer its first query.
  """
  @callback files(
              dir :: Path.t(),
              address :: :inet.ip4_address(),
              port :: :inet.port_number(),
              records :: [dns_record()]
            ) :: [{Path.t(), iodata()}]
  @callback command(dir :: Path.t()) :: {executable :: String.t(), args :: [String.t()]}
  @callback startup_ms() :: pos_integer()

  @address {127, 0, 0, 1}
  @port_attempts 5

  ## Records

  @doc """
  One Consul instance registered with its own address: an SRV record whose
  target is `<hex-ip>.addr.<dc>.consul`, with the A (or AAAA) record as glue.
  """
  @spec addr_instance(String.t(), :inet.ip_address(), :inet.port_number(), String.t()) ::
          [dns_record()]
  def addr_instance(query, ip, port, dc \\ "dc1") do
    host = addr_host(ip, dc)
    [{:srv, query, host, port}, {address_type(ip), host, ip}]
  end

  @doc "Consul's `<hex-ip>.addr.<dc>.consul` name for `ip`."
  @spec addr_host(:inet.ip_address(), String.t()) :: String.t()
  def addr_host({_, _, _, _} = ip, dc), do: hex(Tuple.to_list(ip), 2) <> ".addr.#{dc}.consul"
  def addr_host(ip, dc), do: hex(Tuple.to_list(ip), 4) <> ".addr.#{dc}.consul"

  defp hex(parts, width) do
    Enum.map_join(parts, &String.pad_leading(Integer.to_string(&1, 16), width, "0"))
    |> String.downcase()
  end

  @doc """
  One Consul instance registered without an address: an SRV record whose
  target is `<node>.node.<dc>.consul`, with the node's A/AAAA record.
  """
  @spec node_instance(
          String.t(),
          String.t(),
          :inet.ip_address(),
          :inet.port_number(),
          String.t()
        ) :: [dns_record()]
  def node_instance(query, node, ip, port, dc \\ "dc1") do
    host = "#{node}.node.#{dc}.consul"
    [{:srv, query, host, port}, {address_type(ip), host, ip}]
  end

  defp address_type({_, _, _, _}), do: :a
  defp address_type(_), do: :aaaa

  ## Lifecycle

  @doc """
  Starts `backend` serving `records` under the current test's supervisor
  and returns its pid. Options: `:address` - the IPv4 address to listen on,
  default `{127, 0, 0, 1}`; `:port` - the port, default a free one (53 for a
  server that `/etc/resolv.conf` names, on an address of a test's own).
  """
  @spec start!(module(), [dns_record()], keyword()) :: pid()
  def start!(backend, records, opts \\ []) do
    ExUnit.Callbacks.start_supervised!(
      %{
        id: {__MODULE__, make_ref()},
        start: {GenServer, :start_link, [__MODULE__, {backend, records, opts}]},
        restart: :temporary,
        shutdown: 10_000
      },
      []
    )
  end

  @doc "The server as a nameserver option: `\"127.0.0.1:PORT\"`."
  @spec nameserver(pid()) :: String.t()
  def nameserver(server) do
    {ip, port} = address(server)
    "#{:inet.ntoa(ip)}:#{port}"
  end

  @doc "The server's `{ip, port}`."
  @spec address(pid()) :: {:inet.ip_address(), :inet.port_number()}
  def address(server), do: GenServer.call(server, :address)

  @doc "Restarts the server on the same port, serving `records` instead."
  @spec set_records(pid(), [dns_record()]) :: :ok
  def set_records(server, records), do: GenServer.call(server, {:set_records, records}, 30_000)

  @doc "Kills the server's OS process, keeping its port: a DNS outage."
  @spec stop_server(pid()) :: :ok
  def stop_server(server), do: GenServer.call(server, :stop_server, 30_000)

  @doc "Starts the server again on its port after `stop_server/1`."
  @spec start_server(pid()) :: :ok
  def start_server(server), do: GenServer.call(server, :start_server, 30_000)

  @doc "The OS pid of the running server, or nil while it is stopped."
  @spec os_pid(pid()) :: non_neg_integer() | nil
  def os_pid(server), do: GenServer.call(server, :os_pid)

  ## GenServer

  @impl GenServer
  def init({backend, records, opts}) do
    Process.flag(:trap_exit, true)
    opts = Keyword.validate!(opts, address: @address, port: nil)

    dir =
      Path.join(
        System.tmp_dir!(),
        "caravan-dns-#{System.pid()}-#{System.unique_integer([:positive])}"
      )

    File.mkdir_p!(dir)

    state = %{
      backend: backend,
      records: records,
      dir: dir,
      address: opts[:address],
      port: nil,
      os: nil,
      out: []
    }

    try do
      if opts[:port],
        do: start(%{state | port: opts[:port]}),
        else: start_on_free_port(state, @port_attempts)
    rescue
      e -> {:error, {e, __STACKTRACE__}}
    end
    |> case do
      {:ok, state} ->
        {:ok, state}

      {:error, why} ->
        File.rm_rf(dir)
        {:stop, why}
    end
  end

  @impl GenServer
  def handle_call(:address, _from, state), do: {:reply, {state.address, state.port}, state}
  def handle_call(:os_pid, _from, state), do: {:reply, state.os && state.os.pid, state}

  def handle_call({:set_records, records}, _from, state) do
    state = %{kill(state) | records: records}
    reply_started(start(state), state)
  end

  def handle_call(:stop_server, _from, state), do: {:reply, :ok, kill(state)}

  def handle_call(:start_server, _from, %{os: nil} = state),
    do: reply_started(start(state), state)

  def handle_call(:start_server, _from, state), do: {:reply, :ok, state}

  defp reply_started({:ok, state}, _old), do: {:reply, :ok, state}
  defp reply_started({:error, why}, old), do: {:stop, why, {:error, why}, %{old | os: nil}}

  @impl GenServer
  def handle_info({port, {:data, data}}, %{os: %{port: port}} = state) do
    {:noreply, %{state | out: Enum.take([data | state.out], 50)}}
  end

  def handle_info({port, {:exit_status, status}}, %{os: %{port: port}} = state) do
    {:stop, {:dns_server_exited, status, output(state)}, %{state | os: nil}}
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl GenServer
  def terminate(_reason, state) do
    if Map.has_key?(state, :dir) do
      kill(state)
      File.rm_rf(state.dir)
    end

    :ok
  end

  ## Running the OS process

  # A server that exits at once most likely lost the port to another
  # process: try another port, and report the last failure.
  defp start_on_free_port(state, attempts) do
    case start(%{state | port: free_port(state.address)}) do
      {:error, {:exited, _status, _out}} when attempts > 1 ->
        start_on_free_port(state, attempts - 1)

      result ->
        result
    end
  end

  defp start(state) do
    %{backend: backend, dir: dir, port: port} = state

    for {path, content} <- backend.files(dir, state.address, port, state.records) do
      File.write!(path, content)
    end

    {exe, args} = backend.command(dir)

    executable = System.find_executable(exe) || existing!(Path.join("/usr/sbin", exe), exe)

    # The shell reports the server's pid, kills the server when stdin closes
    # (the BEAM or this process died), and exits with the server's status.
    # (A background job's stdin is /dev/null, hence the copy on fd 3.)
    script = ~S"""
    exec 3<&0
    "$@" 3<&- </dev/null & child=$!
    echo "caravan-dns-pid $child"
    { while read -r _; do :; done; kill "$child" 2>/dev/null; } <&3 &
    reader=$!
    exec 3<&-
    wait "$child"; status=$?
    kill "$reader" 2>/dev/null
    exit "$status"
    """

    port_ref =
      Port.open({:spawn_executable, "/bin/sh"}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        args: ["-c", script, "sh", executable | args]
      ])

    os = %{port: port_ref, pid: nil}
    state = %{state | os: os, out: []}
    await_ready(state, backend.startup_ms())
  end

  defp existing!(path, exe) do
    if File.exists?(path) do
      path
    else
      raise "#{exe} is not installed; run scripts/setup (it installs dnsmasq-base and bind9)"
    end
  end

  defp await_ready(state, budget_ms) do
    deadline = System.monotonic_time(:millisecond) + budget_ms
    poll(state, deadline)
  end

  defp poll(%{os: %{port: port}} = state, deadline) do
    receive do
      {^port, {:data, data}} ->
        state = %{state | out: [data | state.out]}

        case Regex.run(~r/caravan-dns-pid (\d+)/, data) do
          [_, pid] -> poll(put_in(state.os.pid, String.to_integer(pid)), deadline)
          nil -> poll(state, deadline)
        end

      {^port, {:exit_status, status}} ->
        {:error, {:exited, status, output(state)}}
    after
      0 ->
        cond do
          state.os.pid && answers?(state.address, state.port) ->
            {:ok, state}

          System.monotonic_time(:millisecond) > deadline ->
            state = kill(state)
            {:error, {:not_ready, output(state)}}

          true ->
            Process.sleep(20)
            poll(state, deadline)
        end
    end
  end

  # Ready once it answers a query for a name it does not hold (NXDOMAIN).
  defp answers?(address, port) do
    opts = [nameservers: [{address, port}], retry: 1, timeout: 200]

    case :inet_res.resolve(~c"caravan-ready.consul", :in, :a, opts, 300) do
      {:error, :nxdomain} -> true
      {:ok, _} -> true
      _ -> false
    end
  end

  defp kill(%{os: nil} = state), do: state

  defp kill(%{os: %{port: port, pid: nil}} = state) do
    # Not started far enough to know its pid: closing stdin makes the
    # shell's reader kill it.
    Port.close(port)
    flush(port)
    %{state | os: nil}
  end

  defp kill(%{os: %{port: port, pid: pid}} = state) do
    System.cmd("kill", ["-TERM", Integer.to_string(pid)], stderr_to_stdout: true)

    receive do
      {^port, {:exit_status, _}} -> :ok
    after
      5_000 ->
        System.cmd("kill", ["-KILL", Integer.to_string(pid)], stderr_to_stdout: true)
        Port.close(port)
    end

    flush(port)
    %{state | os: nil}
  end

  defp flush(port) do
    receive do
      {^port, _} -> flush(port)
    after
      0 -> :ok
    end
  end

  defp output(state), do: state.out |> Enum.reverse() |> IO.iodata_to_binary()

  @doc """
  A port free for both UDP and TCP on `address` when chosen, found by
  binding port 0.
  """
  @spec free_port(:inet.ip_address()) :: :inet.port_number()
  def free_port(address) do
    {:ok, udp} = :gen_udp.open(0, ip: address)
    {:ok, port} = :inet.port(udp)

    case :gen_tcp.listen(port, ip: address, reuseaddr: false) do
      {:ok, tcp} ->
        :gen_tcp.close(tcp)
        :gen_udp.close(udp)
        port

      {:error, _} ->
        :gen_udp.close(udp)
        free_port(address)
    end
  end
end

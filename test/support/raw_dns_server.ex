defmodule Caravan.Test.RawDnsServer do
  @moduledoc """
  A DNS server that misbehaves on purpose, for failure and hostile-input
  tests. It listens on 127.0.0.1, UDP and TCP on one free port, for the
  test that started it, and answers every query as told:

    * `:never` - reads queries and never answers (TCP connections stay open);
    * a binary - sends these bytes, whatever the query;
    * a function `(query :: binary -> binary | :no_reply)` - computes the
      reply from the query's bytes (for example to echo its ID);
    * a function `(query :: binary, transport :: :udp | :tcp -> binary | :no_reply)`
      - the same, told which transport the query came on (for example to
      send a truncated reply over UDP and the full one over TCP).

  Options:

    * `:answer` - one of the above (default `:never`);
    * `:tcp_framing` - prefix TCP replies with their 2-byte length, as DNS
      over TCP requires (default `true`; `false` sends the bytes as they are,
      to test broken framing);
    * `:delay` - milliseconds to wait before each UDP reply (default `0`): a
      slow server. Delayed replies are sent from processes of their own, so
      queries arriving meanwhile are read (and counted) at once.

  Helpers build replies from a query: `rcode_reply/2` (a well-formed
  response with an error code and no records), `garbage_after_id/2` (the
  query's ID, so the client reads it, then arbitrary bytes) and
  `response/3` (a response with the given answer and additional records,
  built with OTP's `:inet_dns`).

      server = Caravan.Test.RawDnsServer.start!(answer: &Caravan.Test.RawDnsServer.rcode_reply(&1, :servfail))
      Caravan.DnsClient.lookup("likes.service.consul",
        nameservers: [Caravan.Test.RawDnsServer.nameserver(server)])

  `queries/1` counts the queries received per transport; `udp_arrivals/1`
  tells when each UDP query arrived.
  """

  use GenServer

  @address {127, 0, 0, 1}
  @rcodes %{noerror: 0, formerr: 1, servfail: 2, nxdomain: 3, notimp: 4, refused: 5}

  @typedoc "How the server answers."
  @type answer ::
          :never
          | binary()
          | (binary() -> binary() | :no_reply)
          | (binary(), :udp | :tcp -> binary() | :no_reply)

  @doc """
  Starts a server under the current test's supervisor (stopped, sockets
  closed, when the test ends) and returns its pid.
  """
  @spec start!(keyword()) :: pid()
  def start!(opts \\ []) do
    opts = Keyword.validate!(opts, answer: :never, tcp_framing: true, delay: 0)

    ExUnit.Callbacks.start_supervised!(
      %{
        id: {__MODULE__, make_ref()},
        start: {GenServer, :start_link, [__MODULE__, opts]},
        restart: :temporary
      },
      []
    )
  end

  # Both answer `:address` the same way as Caravan.Test.DnsServer's servers.
  defdelegate nameserver(server), to: Caravan.Test.DnsServer
  defdelegate address(server), to: Caravan.Test.DnsServer

  @doc "How many queries arrived, per transport: `%{udp: n, tcp: m}`."
  @spec queries(pid()) :: %{udp: non_neg_integer(), tcp: non_neg_integer()}
  def queries(server), do: GenServer.call(server, :queries)

  @doc """
  When each UDP query arrived, oldest first, in `System.monotonic_time/1`
  milliseconds of the test VM (the last 10,000).
  """
  @spec udp_arrivals(pid()) :: [integer()]
  def udp_arrivals(server), do: server |> GenServer.call(:udp_arrivals) |> Enum.reverse()

  @doc """
  Every query answered, oldest first: `{arrived_us, transport, reply_bytes}`,
  arrival in `System.monotonic_time(:microsecond)` of this VM (the last
  100,000). For measuring what clients cost a server.
  """
  @spec traffic(pid()) :: [{integer(), :udp | :tcp, non_neg_integer()}]
  def traffic(server), do: server |> GenServer.call(:traffic) |> Enum.reverse()

  @doc """
  A well-formed response to `query` with response code `rcode` (`:servfail`,
  `:refused`, `:nxdomain`, `:formerr`, `:notimp` or `:noerror`) and no records.
  """
  @spec rcode_reply(binary(), atom()) :: binary()
  def rcode_reply(query, rcode), do: response(query, [], [], rcode)

  @doc """
  A response to `query` holding `answers` and `additionals`, each a list of
  `{name, type, data}` in `:inet_dns` form, for example
  `{"likes.service.consul", :srv, {1, 1, 4001, ~c"n1.node.dc1.consul"}}` or
  `{"n1.node.dc1.consul", :a, {127, 0, 0, 2}}`.
  """
  @spec response(binary(), list(), list(), atom()) :: binary()
  def response(query, answers, additionals, rcode \\ :noerror) do
    {:ok, msg} = :inet_dns.decode(query)
    header = :inet_dns.msg(msg, :header)
    header = :inet_dns.make_header(header, qr: true, aa: true, rcode: Map.fetch!(@rcodes, rcode))

    :inet_dns.encode(
      :inet_dns.make_msg(msg,
        header: header,
        anlist: Enum.map(answers, &rr/1),
        arlist: Enum.map(additionals, &rr/1)
      )
    )
  end

  defp rr({name, type, data}) do
    :inet_dns.make_rr(domain: to_charlist(name), type: type, class: :in, ttl: 0, data: data)
  end

  @doc "The first two bytes of `query` (its ID), then `bytes`."
  @spec garbage_after_id(binary(), binary()) :: binary()
  def garbage_after_id(<<id::binary-size(2), _::binary>>, bytes), do: id <> bytes

  ## GenServer

  @impl GenServer
  def init(opts) do
    # Arrival times are taken here: run ahead of a busy VM's other work.
    Process.flag(:priority, :high)
    {udp, tcp, port} = open_pair()
    server = self()
    acceptor = spawn_link(fn -> accept(tcp, server, opts) end)
    :ok = :gen_tcp.controlling_process(tcp, acceptor)

    {:ok,
     %{
       udp: udp,
       port: port,
       answer: opts[:answer],
       delay: opts[:delay],
       counts: %{udp: 0, tcp: 0},
       arrivals: [],
       traffic: [],
       acceptor: acceptor
     }}
  end

  @impl GenServer
  def handle_call(:address, _from, state), do: {:reply, {@address, state.port}, state}
  def handle_call(:queries, _from, state), do: {:reply, state.counts, state}
  def handle_call(:udp_arrivals, _from, state), do: {:reply, state.arrivals, state}
  def handle_call(:traffic, _from, state), do: {:reply, state.traffic, state}

  @impl GenServer
  def handle_cast({:query, transport}, state) do
    {:noreply, update_in(state.counts[transport], &(&1 + 1))}
  end

  def handle_cast({:answered, entry}, state), do: {:noreply, log(state, entry)}

  defp log(state, entry), do: %{state | traffic: Enum.take([entry | state.traffic], 100_000)}

  @impl GenServer
  def handle_info({:udp, socket, ip, port, query}, %{udp: socket} = state) do
    state = %{
      state
      | counts: %{state.counts | udp: state.counts.udp + 1},
        arrivals: Enum.take([System.monotonic_time(:millisecond) | state.arrivals], 10_000)
    }

    arrived = System.monotonic_time(:microsecond)
    reply = reply(state.answer, query, :udp)
    state = if is_binary(reply), do: log(state, {arrived, :udp, byte_size(reply)}), else: state

    case {reply, state.delay} do
      {:no_reply, _} ->
        :ok

      {bytes, 0} ->
        :gen_udp.send(socket, ip, port, bytes)

      {bytes, delay} ->
        spawn_link(fn ->
          Process.sleep(delay)
          :gen_udp.send(socket, ip, port, bytes)
        end)
    end

    {:noreply, state}
  end

  def handle_info(_other, state), do: {:noreply, state}

  defp reply(:never, _query, _transport), do: :no_reply
  defp reply(bytes, _query, _transport) when is_binary(bytes), do: bytes
  defp reply(fun, query, _transport) when is_function(fun, 1), do: fun.(query)
  defp reply(fun, query, transport) when is_function(fun, 2), do: fun.(query, transport)

  defp open_pair do
    # A large receive buffer: a burst of queries (tens of lookups started at
    # once) must all arrive, not overflow the default few kilobytes.
    {:ok, udp} = :gen_udp.open(0, [:binary, ip: @address, active: true, recbuf: 1_048_576])
    {:ok, port} = :inet.port(udp)

    case :gen_tcp.listen(port, [:binary, ip: @address, active: false, packet: :raw]) do
      {:ok, tcp} ->
        {udp, tcp, port}

      {:error, _} ->
        :gen_udp.close(udp)
        open_pair()
    end
  end

  defp accept(listener, server, opts) do
    case :gen_tcp.accept(listener) do
      {:ok, socket} ->
        handler = spawn_link(fn -> serve_tcp(socket, server, opts) end)
        :gen_tcp.controlling_process(socket, handler)
        send(handler, :go)
        accept(listener, server, opts)

      {:error, _} ->
        :ok
    end
  end

  defp serve_tcp(socket, server, opts) do
    # A client may keep its TCP connection open between queries (Caravan's
    # resolvers are reused), so this process may outlive a query: mark it,
    # so leak checks can tell the server's side from the client's.
    Process.put(:caravan_test_role, :raw_dns_tcp_connection)

    receive do
      :go -> tcp_loop(socket, server, opts)
    end
  end

  defp tcp_loop(socket, server, opts) do
    with {:ok, <<len::16>>} <- :gen_tcp.recv(socket, 2),
         {:ok, query} <- :gen_tcp.recv(socket, len) do
      arrived = System.monotonic_time(:microsecond)
      GenServer.cast(server, {:query, :tcp})

      framing = opts[:tcp_framing]
      reply = reply(opts[:answer], query, :tcp)

      if is_binary(reply),
        do: GenServer.cast(server, {:answered, {arrived, :tcp, byte_size(reply)}})

      case reply do
        :no_reply -> :ok
        bytes when framing -> :gen_tcp.send(socket, <<byte_size(bytes)::16, bytes::binary>>)
        bytes -> :gen_tcp.send(socket, bytes)
      end

      tcp_loop(socket, server, opts)
    else
      _closed -> :gen_tcp.close(socket)
    end
  end
end

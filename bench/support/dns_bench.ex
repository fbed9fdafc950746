defmodule Caravan.Bench.Dns do
  @moduledoc """
  DNS pieces of the benchmark: fixtures started outside ExUnit, records for
  N instances, and the floor (a pre-encoded query over `:gen_udp`, its reply
  read raw; over TCP too when the reply comes back truncated, as the clients
  must do).
  """

  alias Caravan.Test.DnsServer

  @doc "Consul-shaped records for `n` instances of `query` (`.addr.` targets with A glue)."
  def records(query, n) do
    Enum.flat_map(1..n, fn i ->
      DnsServer.addr_instance(query, {10, 0, div(i, 256), rem(i, 256)}, 20_000 + i)
    end)
  end

  @doc "Starts `backend` (`Caravan.Test.Dnsmasq` or `Caravan.Test.Bind`) serving `records`; stop with `stop/1`."
  def start_server!(backend, records) do
    {:ok, pid} = GenServer.start(DnsServer, {backend, records, []})
    pid
  end

  @doc "Starts a `Caravan.Test.RawDnsServer` that never answers."
  def start_silent! do
    {:ok, pid} = GenServer.start(Caravan.Test.RawDnsServer, answer: :never, tcp_framing: true)
    pid
  end

  @doc "Stops a server started here (its OS process is killed)."
  def stop(pid) do
    if Process.alive?(pid), do: GenServer.stop(pid, :normal, 30_000)
    :ok
  catch
    :exit, _ -> :ok
  end

  @doc "The query bytes the floor sends: SRV, IN, recursion desired, EDNS payload 4096."
  def encoded_query(name) do
    qname =
      for label <- String.split(name, "."), into: <<>>, do: <<byte_size(label), label::binary>>

    header = <<4242::16, 0x0100::16, 1::16, 0::16, 0::16, 1::16>>
    question = <<qname::binary, 0, 33::16, 1::16>>
    # OPT pseudo-record: root name, type 41, class = UDP payload size, no options.
    opt = <<0, 41::16, 4096::16, 0::32, 0::16>>
    header <> question <> opt
  end

  @doc """
  One floor exchange on a connected UDP socket: send the bytes, read the
  reply; if its TC bit is set, the same query over a fresh TCP connection.
  Returns the reply's size in bytes.
  """
  def floor(socket, {ip, port}, query) do
    :ok = :gen_udp.send(socket, query)
    {:ok, {_ip, _port, reply}} = :gen_udp.recv(socket, 0, 5_000)

    case reply do
      <<_id::16, _qr::1, _op::4, _aa::1, 1::1, _::bitstring>> -> tcp(ip, port, query)
      _ -> byte_size(reply)
    end
  end

  defp tcp(ip, port, query) do
    {:ok, s} = :gen_tcp.connect(ip, port, [:binary, active: false, packet: 2], 5_000)
    :ok = :gen_tcp.send(s, query)
    {:ok, reply} = :gen_tcp.recv(s, 0, 5_000)
    :gen_tcp.close(s)
    byte_size(reply)
  end

  @doc "A UDP socket connected to the server, for `floor/3`."
  def floor_socket({ip, port}) do
    {:ok, socket} = :gen_udp.open(0, [:binary, active: false, recbuf: 65_536])
    :ok = :gen_udp.connect(socket, ip, port)
    socket
  end
end

defmodule Caravan.ConsulDnsTest do
  # The Consul fixture answers as Consul's agent does (see its moduledoc):
  # shuffled, trimmed silently over UDP, whole over TCP.
  use ExUnit.Case, async: true

  alias Caravan.Test.ConsulDns

  @service "likes-dist"
  @query "likes-dist.service.consul"

  defp fleet(n), do: for(i <- 1..n, do: {{127, 1, div(i, 250), rem(i, 250) + 1}, 4001})

  setup do
    consul = ConsulDns.start!()
    ConsulDns.set(consul, @service, fleet(150))
    %{consul: consul, ns: ConsulDns.nameserver(consul)}
  end

  defp raw(ns, opts) do
    {:ok, msg} = ask(ns, @query, :srv, opts)
    msg
  end

  defp ask(ns, name, type, opts \\ []) do
    [ip, port] = String.split(ns, ":")
    {:ok, ip} = :inet.parse_address(to_charlist(ip))
    base = [nameservers: [{ip, String.to_integer(port)}], recurse: false, timeout: 2000]
    :inet_res.resolve(to_charlist(name), :in, type, base ++ opts)
  end

  # An SRV query for @query with an OPT record advertising `payload`, added
  # by hand (the OPT record's fields differ across OTP releases).
  defp query_with_payload(payload) do
    header = :inet_dns.make_header(id: 7, opcode: :query, rd: false)
    question = :inet_dns.make_dns_query(domain: to_charlist(@query), type: :srv, class: :in)
    bytes = :inet_dns.encode(:inet_dns.make_msg(header: header, qdlist: [question]))
    <<head::binary-size(10), 0::16, rest::binary>> = bytes
    <<head::binary, 1::16, rest::binary, 0, 41::16, payload::16, 0::32, 0::16>>
  end

  defp udp_exchange(ns, query) do
    [ip, port] = String.split(ns, ":")
    {:ok, ip} = :inet.parse_address(to_charlist(ip))
    {:ok, socket} = :gen_udp.open(0, [:binary, active: false, ip: {127, 0, 0, 1}])
    :ok = :gen_udp.send(socket, ip, String.to_integer(port), query)
    {:ok, {_, _, reply}} = :gen_udp.recv(socket, 0, 2_000)
    :gen_udp.close(socket)
    {:ok, msg} = :inet_dns.decode(reply)
    msg
  end

  defp ports_and_hosts(msg),
    do: for(rr <- :inet_dns.msg(msg, :anlist), do: :inet_dns.rr(rr, :data))

  test "UDP answers are cut to the advertised payload, without TC, and differ", %{ns: ns} do
    answers = for _ <- 1..5, do: raw(ns, edns: 0, udp_payload_size: 4096)

    for msg <- answers do
      header = :inet_dns.msg(msg, :header)
      refute :inet_dns.header(header, :tc)
      count = length(:inet_dns.msg(msg, :anlist))
      # 45 to 55 bytes per instance with its glue: 70 to 90 fit 4,096.
      assert count in 60..100, "#{count} records"
      assert byte_size(:inet_dns.encode(msg)) <= 4096
      # The glue follows the answers that were kept.
      assert length(for rr <- :inet_dns.msg(msg, :arlist), :inet_dns.rr(rr, :type) == :a, do: rr) ==
               count
    end

    assert answers |> Enum.map(&ports_and_hosts/1) |> Enum.uniq() |> length() > 1, "shuffled"
  end

  test "without EDNS, 3 answers; an advertised payload below 512 counts as 512", %{ns: ns} do
    msg = raw(ns, edns: false)
    assert length(:inet_dns.msg(msg, :anlist)) == 3
    assert byte_size(:inet_dns.encode(msg)) <= 512

    # maxSize starts at 512 and only an EDNS size above it raises it, so a
    # smaller one is answered as a query without EDNS. (:inet_res will not
    # advertise less than 512: the query is made here.)
    small = udp_exchange(ns, query_with_payload(256))
    assert length(:inet_dns.msg(small, :anlist)) == 3
    assert byte_size(:inet_dns.encode(small)) <= 512
  end

  test ".addr. names answer their address; host-name instances come without glue, and names outside consul. are refused or fail",
       %{consul: consul, ns: ns} do
    assert {:ok, msg} = ask(ns, "7f000002.addr.dc1.consul", :a)
    assert [{127, 0, 0, 2}] = for(rr <- :inet_dns.msg(msg, :anlist), do: :inet_dns.rr(rr, :data))
    assert {:ok, msg} = ask(ns, "fd000000000000000000000000000001.addr.consul", :aaaa)

    assert [{0xFD00, 0, 0, 0, 0, 0, 0, 1}] =
             for(rr <- :inet_dns.msg(msg, :anlist), do: :inet_dns.rr(rr, :data))

    ConsulDns.set(consul, @service, [{"db1.example.com", 4001}])
    msg = raw(ns, [])
    assert [{1, 1, 4001, ~c"db1.example.com"}] = ports_and_hosts(msg)
    assert :inet_dns.msg(msg, :arlist) == []
    # Without recursors no handler matches (REFUSED); with failing ones, SERVFAIL.
    assert {:error, {:refused, _}} = ask(ns, "db1.example.com", :a)
    ConsulDns.recursors(consul, :failing)
    assert {:error, {:servfail, _}} = ask(ns, "db1.example.com", :a)
    assert :inet_dns.msg(raw(ns, []), :arlist) == []

    # Answering recursors resolve the name, and the SRV answer carries it.
    ConsulDns.recursors(consul, %{"db1.example.com" => {127, 0, 0, 9}})
    assert {:ok, msg} = ask(ns, "db1.example.com", :a)
    assert [{127, 0, 0, 9}] = for(rr <- :inet_dns.msg(msg, :anlist), do: :inet_dns.rr(rr, :data))

    assert [{127, 0, 0, 9}] =
             for(rr <- :inet_dns.msg(raw(ns, []), :arlist), do: :inet_dns.rr(rr, :data))
  end

  test "TCP answers are whole, and so are UDP answers that fit", %{consul: consul, ns: ns} do
    assert {:ok, %{targets: targets, complete: true}} =
             Caravan.DnsClient.answer(@query, nameservers: [ns], transport: :tcp)

    assert length(targets) == 150

    ConsulDns.set(consul, @service, fleet(10))

    assert {:ok, %{targets: small, complete: true}} =
             Caravan.DnsClient.answer(@query, nameservers: [ns])

    assert length(small) == 10
  end

  test "a trimmed UDP answer is never taken as complete", %{ns: ns} do
    for client <- [Caravan.DnsClient, Caravan.DnsClient.InetRes] do
      assert {:ok, %{targets: targets, complete: false}} =
               client.answer(@query, nameservers: [ns])

      assert length(targets) < 150
    end
  end

  test "enable_truncate sets TC, and the clients then ask over TCP" do
    consul = ConsulDns.start!(enable_truncate: true)
    ConsulDns.set(consul, @service, fleet(150))

    assert {:ok, %{targets: targets, complete: true}} =
             Caravan.DnsClient.answer(@query, nameservers: [ConsulDns.nameserver(consul)])

    assert length(targets) == 150
    assert %{tcp: 1} = ConsulDns.queries(consul)
  end

  test "unknown services and services with no passing instance are NXDOMAIN", %{
    consul: consul,
    ns: ns
  } do
    assert {:ok, []} = Caravan.DnsClient.lookup("nobody.service.consul", nameservers: [ns])

    ConsulDns.set(consul, @service, [
      {{127, 0, 0, 2}, 4001, :critical},
      {{127, 0, 0, 3}, 4001, :warning}
    ])

    assert {:ok, [%{addresses: [{127, 0, 0, 3}]}]} =
             Caravan.DnsClient.lookup(@query, nameservers: [ns])

    ConsulDns.set(consul, @service, [{{127, 0, 0, 2}, 4001, :critical}])
    assert {:ok, []} = Caravan.DnsClient.lookup(@query, nameservers: [ns])
  end

  test ".addr. targets with and without a datacenter, and the RFC 2782 form" do
    for {addr_dc, host} <- [{true, "7f000002.addr.dc1.consul"}, {false, "7f000002.addr.consul"}] do
      consul = ConsulDns.start!(addr_dc: addr_dc)
      ConsulDns.set(consul, @service, [{{127, 0, 0, 2}, 4001}])
      ns = ConsulDns.nameserver(consul)

      for query <- [@query, "_likes-dist._tcp.service.consul", "likes-dist.service.dc1.consul"] do
        assert {:ok, [%{host: ^host, port: 4001, addresses: [{127, 0, 0, 2}]}]} =
                 Caravan.DnsClient.lookup(query, nameservers: [ns])
      end
    end
  end
end

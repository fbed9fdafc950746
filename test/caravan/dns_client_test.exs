defmodule Caravan.DnsClientTest do
  # Both clients against the same real servers: dnsmasq and BIND with
  # Consul-shaped records, and raw servers that stay silent, fail or send
  # garbage.
  use ExUnit.Case, async: true

  import ExUnit.CaptureLog

  alias Caravan.Test.{Bind, DnsServer, Dnsmasq, RawDnsServer}

  @service "likes-dist.service.consul"
  @fleet "fleet-dist.service.consul"

  # 3 instances registered without an address: .node. targets.
  defp node_records do
    List.flatten(
      for i <- 1..3, do: DnsServer.node_instance(@service, "node#{i}", {127, 0, 1, i}, 4000 + i)
    )
  end

  # 5 instances with IPv4 service addresses and 2 with IPv6: .addr. targets
  # with glue.
  defp addr_records do
    v4 = for i <- 1..5, do: DnsServer.addr_instance(@fleet, {127, 0, 2, i}, 4100 + i)

    v6 =
      for i <- 1..2,
          do: DnsServer.addr_instance(@fleet, {0xFD00, 0, 0, 0, 0, 0, 0, i}, 4200 + i)

    List.flatten(v4 ++ v6)
  end

  for client <- [Caravan.DnsClient, Caravan.DnsClient.InetRes] do
    @client client

    describe "#{inspect(client)} against dnsmasq" do
      setup do
        dns = Dnsmasq.start!(node_records() ++ addr_records())
        %{dns: dns, ns: Dnsmasq.nameserver(dns)}
      end

      test "3 instances behind .node. targets come back ordered, with their glue", %{ns: ns} do
        assert {:ok, targets} = @client.lookup(@service, nameservers: [ns])

        assert targets == [
                 %{
                   port: 4001,
                   host: "node1.node.dc1.consul",
                   priority: 1,
                   weight: 1,
                   addresses: [{127, 0, 1, 1}],
                   unresolved: false
                 },
                 %{
                   port: 4002,
                   host: "node2.node.dc1.consul",
                   priority: 1,
                   weight: 1,
                   addresses: [{127, 0, 1, 2}],
                   unresolved: false
                 },
                 %{
                   port: 4003,
                   host: "node3.node.dc1.consul",
                   priority: 1,
                   weight: 1,
                   addresses: [{127, 0, 1, 3}],
                   unresolved: false
                 }
               ]

        assert {:ok, %{targets: ^targets, complete: true}} =
                 @client.answer(@service, nameservers: [ns])
      end

      test "5 .addr. targets with A glue and 2 with AAAA glue", %{ns: ns} do
        assert {:ok, targets} = @client.lookup(@fleet, nameservers: [ns])
        assert length(targets) == 7

        by_port = Map.new(targets, &{&1.port, &1})

        for i <- 1..5 do
          assert by_port[4100 + i].host == "7f00020#{i}.addr.dc1.consul"
          assert by_port[4100 + i].addresses == [{127, 0, 2, i}]
        end

        for i <- 1..2 do
          assert by_port[4200 + i].host == "fd00#{String.duplicate("0", 27)}#{i}.addr.dc1.consul"
          assert by_port[4200 + i].addresses == [{0xFD00, 0, 0, 0, 0, 0, 0, i}]
        end

        assert Enum.map(targets, & &1.host) == Enum.sort(Enum.map(targets, & &1.host))
      end

      test "NXDOMAIN is an empty success: the service has no instances", %{ns: ns} do
        assert @client.lookup("nobody.service.consul", nameservers: [ns]) == {:ok, []}
      end

      test "a name with records but no SRV is an empty success", %{ns: ns} do
        assert @client.lookup("node1.node.dc1.consul", nameservers: [ns]) == {:ok, []}
      end

      test "every nameserver form reaches the same server", %{dns: dns, ns: ns} do
        {ip, port} = Dnsmasq.address(dns)
        text = to_string(:inet.ntoa(ip))
        {:ok, expected} = @client.lookup(@service, nameservers: [ns])

        for form <- [
              ns,
              String.to_charlist(ns),
              {text, port},
              {text, Integer.to_string(port)},
              {ip, port},
              {String.to_charlist(text), port}
            ] do
          assert @client.lookup(@service, nameservers: [form]) == {:ok, expected},
                 inspect(form)
        end
      end

      test "transport: :tcp gives the same answer", %{ns: ns} do
        assert @client.lookup(@service, nameservers: [ns], transport: :tcp) ==
                 @client.lookup(@service, nameservers: [ns])
      end

      test "a membership change is seen after the server restarts", %{dns: dns, ns: ns} do
        assert {:ok, [_, _, _]} = @client.lookup(@service, nameservers: [ns])

        :ok =
          Dnsmasq.set_records(
            dns,
            DnsServer.node_instance(@service, "node9", {127, 0, 1, 9}, 4009)
          )

        assert {:ok, [%{port: 4009, host: "node9.node.dc1.consul"}]} =
                 @client.lookup(@service, nameservers: [ns])
      end

      test "an outage is an error, never an empty answer", %{dns: dns, ns: ns} do
        :ok = Dnsmasq.stop_server(dns)

        assert {:error, {reason, message}} =
                 @client.lookup(@service, nameservers: [ns], timeout: 500)

        assert reason in [:timeout, :unreachable]
        assert message =~ ns

        :ok = Dnsmasq.start_server(dns)
        assert {:ok, [_, _, _]} = @client.lookup(@service, nameservers: [ns])
      end

      test "2,000 concurrent lookups from 2,000 processes are all answered", %{ns: ns} do
        results =
          1..2000
          |> Enum.map(fn _ ->
            Task.async(fn ->
              @client.lookup(@service, nameservers: [ns], timeout: 20_000, attempts: 4)
            end)
          end)
          |> Task.await_many(60_000)

        assert length(results) == 2000
        assert Enum.all?(results, &match?({:ok, [_, _, _]}, &1)), inspect(Enum.uniq(results))
      end
    end

    describe "#{inspect(client)} against misbehaving servers" do
      test "a UDP server that never answers is a timeout", _ do
        ns = RawDnsServer.nameserver(RawDnsServer.start!(answer: :never))
        started = System.monotonic_time(:millisecond)

        assert {:error, {:timeout, message}} =
                 @client.lookup(@service, nameservers: [ns], timeout: 400)

        elapsed = System.monotonic_time(:millisecond) - started
        # Liveness, not speed: the answer comes within the timeout plus a margin.
        assert elapsed < 400 + 1500, "took #{elapsed} ms"
        assert message =~ "within 400 ms"
      end

      test "SERVFAIL and REFUSED have their own reasons" do
        for {rcode, reason} <- [servfail: :servfail, refused: :refused, notimp: :server_error] do
          server = RawDnsServer.start!(answer: &RawDnsServer.rcode_reply(&1, rcode))
          ns = RawDnsServer.nameserver(server)

          assert {:error, {^reason, message}} =
                   @client.lookup(@service, nameservers: [ns], timeout: 2000, attempts: 1)

          assert message =~ ns
        end
      end

      test "garbage bytes give a clean error" do
        for answer <- [
              "\xde\xad\xbe\xef not dns at all",
              &RawDnsServer.garbage_after_id(&1, <<0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xFF>>)
            ] do
          ns = RawDnsServer.nameserver(RawDnsServer.start!(answer: answer))
          assert {:error, {reason, _}} = @client.lookup(@service, nameservers: [ns], timeout: 500)
          assert reason in [:malformed, :timeout]
        end
      end

      test "garbage after the right ID is :malformed" do
        answer = &RawDnsServer.garbage_after_id(&1, <<0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xFF>>)
        ns = RawDnsServer.nameserver(RawDnsServer.start!(answer: answer))

        assert {:error, {:malformed, message}} =
                 @client.lookup(@service, nameservers: [ns], timeout: 1000)

        assert message =~ "could not be decoded"
      end

      test "a truncated UDP reply goes on over TCP, even one cut mid-record" do
        records = for i <- 1..3, do: srv_answer(4000 + i, "n#{i}.node.dc1.consul")

        answer = fn query, transport ->
          whole = RawDnsServer.response(query, records, [])

          case transport do
            :tcp ->
              whole

            # The header with TC set and the counts of the whole answer, then
            # the first 20 bytes of its body: what a server cutting at the
            # payload sends.
            :udp ->
              <<id::binary-size(2), flags::8, rest::binary>> = whole
              <<id::binary, Bitwise.bor(flags, 0x02)::8, binary_part(rest, 0, 30)::binary>>
          end
        end

        server = RawDnsServer.start!(answer: answer)

        assert {:ok, targets} =
                 @client.answer(@service, nameservers: [RawDnsServer.nameserver(server)])

        assert length(targets.targets) == 3
        assert targets.complete
        assert %{udp: udp, tcp: 1} = RawDnsServer.queries(server)
        assert udp >= 1
      end

      test "complete is true over TCP and over UDP well below the payload, false near it" do
        for {count, transport, complete} <- [
              {3, :udp, true},
              {3, :tcp, true},
              {near_limit(), :udp, false}
            ] do
          server = RawDnsServer.start!(answer: &srv_with_glue(&1, count))
          opts = [nameservers: [RawDnsServer.nameserver(server)], transport: transport]
          assert {:ok, answer} = @client.answer(@service, opts)
          assert length(answer.targets) == count
          assert answer.complete == complete, "#{count} over #{transport}"
        end
      end

      test "complete leaves room for two of the answer's largest records" do
        # Node metadata as TXT beside each target, as Consul can send: 4 such
        # records fit well under 3,584 bytes, but 2 more would not fit.
        meta = List.duplicate(~c"k=" ++ String.to_charlist(String.duplicate("v", 240)), 3)

        answer = fn query ->
          hosts = for i <- 1..4, do: "node-#{i}.node.dc1.consul"

          reply =
            RawDnsServer.response(
              query,
              for({h, i} <- Enum.with_index(hosts), do: srv_answer(4000 + i, h)),
              for(h <- hosts, do: {h, :txt, meta})
            )

          <<header::binary-size(10), arcount::16, rest::binary>> = reply
          <<header::binary, arcount + 1::16, rest::binary, 0, 41::16, 4096::16, 0::32, 0::16>>
        end

        server = RawDnsServer.start!(answer: answer)

        assert {:ok, %{targets: [_, _, _, _], complete: false}} =
                 @client.answer(@service, nameservers: [RawDnsServer.nameserver(server)])
      end

      test "a failed A/AAAA follow-up leaves its target unresolved and is logged" do
        for rcode <- [:servfail, :refused] do
          ns = RawDnsServer.nameserver(RawDnsServer.start!(answer: &follow_ups(&1, rcode)))

          log =
            capture_log(fn ->
              assert {:ok, targets} =
                       @client.lookup(@service, nameservers: [ns], resolve_addresses: true)

              assert [
                       %{host: "broken.example", addresses: [], unresolved: true},
                       %{host: "fine.example", addresses: [{127, 0, 0, 9}], unresolved: false},
                       %{host: "gone.example", addresses: [], unresolved: false}
                     ] = targets
            end)

          assert log =~ "could not be looked up"
          assert log =~ "broken.example"
          assert log =~ rcode |> to_string() |> String.upcase()
        end
      end

      test "records with invalid targets are dropped and logged" do
        answer = fn query ->
          RawDnsServer.response(
            query,
            [
              {@service, :srv, {1, 1, 4001, ~c"good.node.dc1.consul"}},
              {@service, :srv, {1, 1, 4002, ~c"bad_name.node.dc1.consul"}},
              {@service, :srv, {1, 1, 0, ~c"zero.node.dc1.consul"}}
            ],
            []
          )
        end

        ns = RawDnsServer.nameserver(RawDnsServer.start!(answer: answer))

        log =
          capture_log(fn ->
            assert {:ok, [%{host: "good.node.dc1.consul", port: 4001}]} =
                     @client.lookup(@service, nameservers: [ns])
          end)

        assert log =~ "ignored 2 SRV record(s)"
        assert log =~ "bad_name.node.dc1.consul"
      end

      test "max_records keeps the first records in order and logs the rest" do
        records =
          for i <- 1..10, do: {@service, :srv, {1, 1, 4000 + i, ~c"n#{i}.node.dc1.consul"}}

        ns =
          RawDnsServer.nameserver(
            RawDnsServer.start!(answer: &RawDnsServer.response(&1, records, []))
          )

        log =
          capture_log(fn ->
            assert {:ok, targets} = @client.lookup(@service, nameservers: [ns], max_records: 3)
            assert Enum.map(targets, & &1.port) == [4001, 4010, 4002]
          end)

        assert log =~ "7 SRV record(s) beyond :max_records"
      end
    end

    describe "#{inspect(client)} against BIND" do
      @tag timeout: 120_000
      test "600 instances arrive in full over TCP, and over UDP via the TCP retry" do
        records =
          List.flatten(
            for i <- 0..599 do
              DnsServer.addr_instance(@fleet, {127, 1, div(i, 250), rem(i, 250) + 2}, 40_000 + i)
            end
          )

        ns = Bind.nameserver(Bind.start!(records))

        for transport <- [:tcp, :udp] do
          assert {:ok, targets} = @client.lookup(@fleet, nameservers: [ns], transport: transport)
          assert length(targets) == 600
          assert Enum.sort(Enum.map(targets, & &1.port)) == Enum.to_list(40_000..40_599)
          assert Enum.all?(targets, &match?([{127, 1, _, _}], &1.addresses))
        end
      end
    end

    describe "#{inspect(client)} options" do
      test "a malformed nameserver raises ArgumentError naming the entry" do
        for {entry, text} <- [
              {"localhost:8600", ~s("localhost" is not an IP address)},
              {{"10.0.183.34", "87000"}, ~s(port "87000" is not a port number)},
              {"::1:8600", "needs brackets"},
              {{{127, 0, 0, 1}, 0}, ~s(port "0")},
              {:nope, "expected \"IP:PORT\""}
            ] do
          error =
            assert_raise ArgumentError, fn -> @client.lookup(@service, nameservers: [entry]) end

          assert error.message =~ "invalid DNS nameserver #{inspect(entry)}"
          assert error.message =~ text
        end
      end

      test "bad option values raise ArgumentError naming key, value and range" do
        for {opts, text} <- [
              {[timeout: 0],
               "expected :timeout to be a number of milliseconds in 1..600000, got: 0"},
              {[timeout: "5"], ~s(expected :timeout to be an integer)},
              {[attempts: 99], "expected :attempts to be an integer in 1..16, got: 99"},
              {[max_records: 0], "expected :max_records"},
              {[transport: :sctp], "expected :transport to be :udp or :tcp"},
              {[resolve_addresses: 1], "expected :resolve_addresses to be true or false"},
              {[nameservers: {}], "expected :nameservers to be :system or a list"},
              {[nameservers: ~c"127.0.0.1:8600"], "wrap it in a list"},
              {[colour: :blue], "unknown DNS option(s) [:colour]"}
            ] do
          error = assert_raise ArgumentError, fn -> @client.lookup(@service, opts) end
          assert error.message =~ text
        end
      end

      test "a query that is not a domain name raises ArgumentError" do
        for query <- ["", "bad name.consul", "a..b", String.duplicate("a", 300)] do
          error =
            assert_raise ArgumentError, fn ->
              @client.lookup(query, nameservers: ["127.0.0.1:9"])
            end

          assert error.message =~ "is not a domain name"
        end

        assert_raise ArgumentError, ~r/expected the DNS query to be a string/, fn ->
          @client.lookup(:likes, [])
        end
      end
    end
  end

  describe "resolve_addresses" do
    test "looks up A/AAAA only for targets that arrived without an address, only when asked" do
      records = [
        {:srv, @service, "app.example.consul", 4001},
        {:a, "app.example.consul", {127, 0, 5, 1}},
        {:aaaa, "app.example.consul", {0xFD00, 0, 0, 0, 0, 0, 0, 0x51}}
      ]

      # A raw server without glue answers the SRV query; dnsmasq answers the
      # address queries, as a second nameserver would.
      dns = Dnsmasq.start!(records)
      {_ip, dns_port} = Dnsmasq.address(dns)

      srv_only = fn query ->
        {:ok, msg} = :inet_dns.decode(query)
        [q] = :inet_dns.msg(msg, :qdlist)

        case :inet_dns.dns_query(q, :type) do
          :srv ->
            RawDnsServer.response(
              query,
              [{@service, :srv, {1, 1, 4001, ~c"app.example.consul"}}],
              []
            )

          _ ->
            forward(query, dns_port)
        end
      end

      ns = RawDnsServer.nameserver(RawDnsServer.start!(answer: srv_only))

      for client <- [Caravan.DnsClient, Caravan.DnsClient.InetRes] do
        assert {:ok, [%{addresses: []}]} = client.lookup(@service, nameservers: [ns])

        assert {:ok, [%{addresses: [{127, 0, 5, 1}, {0xFD00, 0, 0, 0, 0, 0, 0, 0x51}]}]} =
                 client.lookup(@service, nameservers: [ns], resolve_addresses: true),
               inspect(client)
      end
    end
  end

  defp srv_answer(port, target), do: {@service, :srv, {1, 1, port, to_charlist(target)}}

  # An SRV answer to `query` with `count` .node. targets and their A glue,
  # with an EDNS record, as Consul sends to a query with EDNS.
  defp srv_with_glue(query, count) do
    answers = for i <- 1..count, do: srv_answer(4000 + i, "instance-#{i}.node.dc1.consul")

    glue = for i <- 1..count, do: {"instance-#{i}.node.dc1.consul", :a, {127, 0, 1, rem(i, 250)}}

    # An OPT record (root name, type 41, payload 4096, no flags, no data)
    # appended and counted by hand: its record's fields differ across OTP.
    <<header::binary-size(10), arcount::16, rest::binary>> =
      RawDnsServer.response(query, answers, glue)

    <<header::binary, arcount + 1::16, rest::binary, 0, 41::16, 4096::16, 0::32, 0::16>>
  end

  # The most instances whose answer fits the 4,096 bytes the query
  # advertises: what Consul's trimming leaves of a larger service.
  defp near_limit do
    query =
      :inet_dns.encode(
        :inet_dns.make_msg(
          header: :inet_dns.make_header(id: 1),
          qdlist: [:inet_dns.make_dns_query(domain: ~c"#{@service}", type: :srv, class: :in)]
        )
      )

    count = Enum.find(200..1//-1, &(byte_size(srv_with_glue(query, &1)) <= 4096))
    # Longer than what the clients take as complete (4,096 - 512 bytes).
    assert byte_size(srv_with_glue(query, count)) > 3584
    count
  end

  # SRV answers without glue naming broken, gone and fine hosts; their A and
  # AAAA queries answer `rcode`, NXDOMAIN, and an address (A only).
  defp follow_ups(query, rcode) do
    {:ok, msg} = :inet_dns.decode(query)
    [q] = :inet_dns.msg(msg, :qdlist)
    type = :inet_dns.dns_query(q, :type)

    case to_string(:inet_dns.dns_query(q, :domain)) do
      "likes-" <> _ ->
        targets = [{4001, "broken.example"}, {4002, "gone.example"}, {4003, "fine.example"}]
        RawDnsServer.response(query, for({p, t} <- targets, do: srv_answer(p, t)), [])

      "broken." <> _ ->
        RawDnsServer.rcode_reply(query, rcode)

      "gone." <> _ ->
        RawDnsServer.rcode_reply(query, :nxdomain)

      "fine." <> _ when type == :a ->
        RawDnsServer.response(query, [{"fine.example", :a, {127, 0, 0, 9}}], [])

      _ ->
        RawDnsServer.response(query, [], [])
    end
  end

  # Sends `query` to the dnsmasq on `port` and returns its answer.
  defp forward(query, port) do
    {:ok, socket} = :gen_udp.open(0, [:binary, active: false, ip: {127, 0, 0, 1}])
    :ok = :gen_udp.send(socket, {127, 0, 0, 1}, port, query)
    {:ok, {_, _, answer}} = :gen_udp.recv(socket, 0, 2000)
    :gen_udp.close(socket)
    answer
  end

  test "the default client has the behaviour's functions" do
    # function_exported?/3 does not load a module; which test loads it first
    # depends on the seed.
    Code.ensure_loaded!(Caravan.DnsClient)
    Code.ensure_loaded!(Caravan.DnsClient.InetRes)

    for {name, arity} <- Caravan.DnsClient.behaviour_info(:callbacks) do
      assert function_exported?(Caravan.DnsClient, name, arity), "#{name}/#{arity}"
      assert function_exported?(Caravan.DnsClient.InetRes, name, arity), "#{name}/#{arity}"
    end
  end
end

defmodule Caravan.HostileDnsTest do
  # Hostile DNS answers, written byte by byte by Caravan.Test.RawDnsServer
  # (UDP and TCP on loopback), through the real NIF client and the real
  # strategy. Each case ends in a clean error or a filtered answer; nothing
  # crashes, the NIF's runtime keeps its one thread, no BEAM process is left
  # behind, and no invalid name becomes an atom.
  #
  # Not async: the process and atom counts measured here must not move with
  # other tests running beside them.
  use ExUnit.Case, async: false

  import ExUnit.CaptureLog

  alias Caravan.Cluster.{DnsStrategy, NodeNames}
  alias Caravan.DnsClient
  alias Caravan.Test.RawDnsServer

  @service "likes-dist.service.consul"

  ## Raw DNS messages

  # The question section of `query` (its name and type/class), echoed in
  # replies as resolvers expect.
  defp question(<<_header::binary-size(12), rest::binary>>) do
    qname_len = qname_length(rest, 0)
    binary_part(rest, 0, qname_len + 4)
  end

  defp qname_length(<<0, _::binary>>, acc), do: acc + 1

  defp qname_length(<<len, rest::binary>>, acc),
    do: qname_length(binary_part(rest, len, byte_size(rest) - len), acc + 1 + len)

  # A response to `query`: `answers` and `additionals` are raw records
  # (binaries); `flags` defaults to QR AA RD RA, NOERROR.
  defp reply(query, answers, additionals \\ [], opts \\ []) do
    <<id::binary-size(2), _::binary>> = query
    flags = Keyword.get(opts, :flags, 0x8580)
    an = Keyword.get(opts, :ancount, length(answers))

    <<id::binary, flags::16, 1::16, an::16, 0::16, length(additionals)::16>> <>
      question(query) <> IO.iodata_to_binary(answers ++ additionals)
  end

  # A name from raw labels (any bytes at all), uncompressed.
  defp name(labels),
    do: IO.iodata_to_binary(Enum.map(labels, &<<byte_size(&1), &1::binary>>) ++ [0])

  # A compression pointer to offset `at`.
  defp ptr(at), do: <<0b11::2, at::14>>

  # A record owned by the question's name (a pointer to offset 12).
  defp rr(type, rdata, owner \\ <<0xC0, 12>>),
    do: <<owner::binary, type::16, 1::16, 30::32, byte_size(rdata)::16, rdata::binary>>

  defp srv(port, target, priority \\ 1, weight \\ 1),
    do: rr(33, <<priority::16, weight::16, port::16, target::binary>>)

  defp a(owner, {a, b, c, d}), do: rr(1, <<a, b, c, d>>, owner)

  defp good_target(i), do: name(["n#{i}", "node", "dc1", "consul"])

  defp lookup(ns, opts \\ []),
    do:
      DnsClient.lookup(
        @service,
        Keyword.merge([nameservers: [ns], timeout: 1_000, attempts: 1], opts)
      )

  defp nameserver(answer, opts \\ []),
    do: RawDnsServer.nameserver(RawDnsServer.start!([answer: answer] ++ opts))

  ## What must stay flat

  defp runtime_threads do
    for task <- File.ls!("/proc/self/task"),
        {:ok, comm} <- [File.read("/proc/self/task/#{task}/comm")],
        String.trim(comm) == "caravan-dns",
        do: task
  end

  # Runs `fun`, then checks the NIF's runtime still has exactly its one
  # thread and no BEAM process was left behind.
  defp leaves_nothing_behind(fun) do
    # The runtime starts on the first lookup: make sure it has.
    _ = DnsClient.lookup(@service, nameservers: ["127.0.0.1:1"], timeout: 1)
    threads = runtime_threads()
    assert length(threads) == 1, "the runtime runs on one thread: #{inspect(threads)}"
    processes = client_process_count()

    result = fun.()

    assert runtime_threads() == threads
    assert settle(processes) == processes
    result
  end

  # Processes that are ending (a capture_log's, a finished task) may take a
  # moment to go: wait up to a second for the count to come back.
  # Every process but the raw server's TCP connections, which live until
  # the client closes its connection.
  defp client_process_count do
    Enum.count(Process.list(), fn pid ->
      case Process.info(pid, :dictionary) do
        {:dictionary, dict} -> dict[:caravan_test_role] != :raw_dns_tcp_connection
        nil -> false
      end
    end)
  end

  defp settle(expected, tries \\ 20) do
    case client_process_count() do
      ^expected ->
        expected

      other when tries == 0 ->
        other

      _ ->
        Process.sleep(50)
        settle(expected, tries - 1)
    end
  end

  defp refute_atom(text) do
    assert_raise ArgumentError, fn -> String.to_existing_atom(text) end
  end

  ## The cases

  test "targets with @, spaces, control bytes or non-ASCII are dropped, logged, never atoms" do
    hostile = [
      ["a@b", "node", "consul"],
      ["a b", "node", "consul"],
      ["x\0y", "node", "consul"],
      ["tab\there", "consul"],
      ["del\x7F", "consul"],
      ["new\nline", "consul"],
      ["caf\u00E9", "consul"],
      ["\xFF\xFE", "consul"],
      ["dot.inside", "consul"],
      ["_under", "consul"],
      ["-lead", "consul"]
    ]

    answer = fn query ->
      reply(query, [srv(4001, good_target(1)) | Enum.map(hostile, &srv(4001, name(&1)))])
    end

    ns = RawDnsServer.nameserver(RawDnsServer.start!(answer: answer))

    leaves_nothing_behind(fn ->
      log =
        capture_log(fn ->
          assert {:ok, [%{host: "n1.node.dc1.consul", port: 4001}]} = lookup(ns)
        end)

      assert log =~ "ignored #{length(hostile)} SRV record(s)"
      assert log =~ ~S(a\\@b.node.consul)
    end)

    # A 64-byte label cannot even be encoded (its length byte reads as a
    # pointer type): the whole answer is malformed.
    long = nameserver(&reply(&1, [srv(4001, name([String.duplicate("a", 64), "consul"]))]))
    assert {:error, {:malformed, message}} = lookup(long)
    assert message =~ @service

    # And through the strategy: only the good target is ever connected.
    log =
      capture_log(fn ->
        start_strategy(ns, :hostile_targets, poll_interval: 20, max_node_names: 10)
        # A few polls (connect says false, so the peer is retried).
        assert_receive {:connect, :"app-4001@n1.node.dc1.consul"}, 2_000
        Process.sleep(200)
        stop_supervised!(:hostile_targets)
      end)

    assert connected() |> Enum.uniq() == [:"app-4001@n1.node.dc1.consul"]

    refute log =~ "max_node_names budget"

    for labels <- hostile do
      host = Enum.join(labels, ".")
      refute_atom("app-4001@" <> host)
      refute_atom("app-4001@" <> String.downcase(host))
    end
  end

  test "a 64 KiB answer arrives whole over TCP after a truncated UDP reply" do
    # As many distinct targets as fit in one DNS message (65,535 bytes).
    records =
      Stream.iterate(1, &(&1 + 1))
      |> Stream.map(&srv(4000 + rem(&1, 50_000), good_target(&1)))
      |> Enum.reduce_while({[], 12 + 30}, fn record, {acc, size} ->
        if size + byte_size(record) > 65_535,
          do: {:halt, {acc, size}},
          else: {:cont, {[record | acc], size + byte_size(record)}}
      end)
      |> elem(0)
      |> Enum.reverse()

    count = length(records)
    # 1,624 records of 37-41 bytes: 65,520 bytes with the header and question.
    assert count == 1_624

    answer = fn
      query, :udp -> reply(query, [], [], flags: 0x8780)
      query, :tcp -> reply(query, records)
    end

    server = RawDnsServer.start!(answer: answer)
    ns = RawDnsServer.nameserver(server)

    big =
      reply(<<0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0>> <> name(["q"]) <> <<33::16, 1::16>>, records)

    assert byte_size(big) > 64 * 1024 - 1024

    leaves_nothing_behind(fn ->
      assert {:ok, targets} = lookup(ns, max_records: 65_535, timeout: 5_000)
      assert length(targets) == count
      assert targets |> Enum.map(& &1.host) |> Enum.uniq() |> length() == count

      # The default cap keeps 1,024 and says so.
      log =
        capture_log(fn ->
          assert {:ok, capped} = lookup(ns, timeout: 5_000)
          assert length(capped) == 1024
        end)

      assert log =~ "#{count - 1024} SRV record(s) beyond :max_records"
    end)

    assert %{udp: udp, tcp: tcp} = RawDnsServer.queries(server)
    assert udp >= 2 and tcp >= 2
  end

  test "a 64 KiB datagram over UDP, with no TC bit, is a clean error or the full answer" do
    records = for i <- 1..2_000, do: srv(4001, good_target(i))

    answer = fn
      query, :udp -> binary_part(reply(query, records), 0, 65_000)
      query, :tcp -> reply(query, records)
    end

    ns = RawDnsServer.nameserver(RawDnsServer.start!(answer: answer))

    leaves_nothing_behind(fn ->
      case lookup(ns, max_records: 65_535) do
        {:ok, targets} ->
          assert length(targets) == 2_000

        {:error, {reason, message}} ->
          assert reason in [:malformed, :timeout] and message =~ @service
      end
    end)
  end

  test "an ANCOUNT of 10,000 with the records that fit is :malformed" do
    records = for i <- 1..2_000, do: srv(4001, good_target(i))
    answer = fn query, _ -> reply(query, records, [], ancount: 10_000) end
    ns = RawDnsServer.nameserver(RawDnsServer.start!(answer: answer))

    leaves_nothing_behind(fn ->
      for transport <- [:udp, :tcp] do
        assert {:error, {reason, message}} = lookup(ns, transport: transport)
        assert reason in [:malformed, :timeout], message
        assert message =~ @service
      end
    end)
  end

  test "compression-pointer loops are :malformed" do
    # Offsets: the header is 12 bytes, the echoed question follows, and the
    # first answer record starts right after it.
    loops = %{
      "a target pointing at itself" => fn q ->
        at = 12 + byte_size(question(q)) + 2 + 10 + 6
        reply(q, [srv(4001, ptr(at))])
      end,
      "two labels pointing at each other" => fn q ->
        at = 12 + byte_size(question(q)) + 2 + 10 + 6
        # "x" then a pointer to "y" (at + 4), "y" then a pointer back to "x".
        target = <<1, "x">> <> ptr(at + 4)
        target = target <> <<1, "y">> <> ptr(at)
        reply(q, [srv(4001, target)])
      end,
      "an owner name pointing at itself" => fn q ->
        at = 12 + byte_size(question(q))
        owner = ptr(at)
        reply(q, [rr(33, <<1::16, 1::16, 4001::16>> <> good_target(1), owner)])
      end,
      "a pointer past the end" => fn q -> reply(q, [srv(4001, <<0xFF, 0xFF>>)]) end,
      "a pointer forward, into its own record" => fn q ->
        at = 12 + byte_size(question(q)) + 2 + 10 + 6
        reply(q, [srv(4001, ptr(at + 2) <> <<0>>)])
      end
    }

    servers = for {what, answer} <- loops, do: {what, nameserver(answer)}

    leaves_nothing_behind(fn ->
      for {what, ns} <- servers do
        assert {:error, {reason, message}} = lookup(ns), what
        assert reason in [:malformed, :timeout], "#{what}: #{message}"
        assert message =~ @service
      end
    end)
  end

  test "records of the wrong type in an SRV answer are ignored" do
    cname = rr(5, name(["elsewhere", "consul"]))
    txt = rr(16, <<11, "n9.node@bad">>)
    a_rec = rr(1, <<127, 0, 0, 9>>)
    mx = rr(15, <<10::16>> <> name(["mx", "consul"]))

    cases = %{
      "only A, TXT, CNAME and MX" => {[a_rec, txt, cname, mx], []},
      "an SRV among them, glue of the wrong type" =>
        {[a_rec, srv(4001, good_target(1)), txt, cname],
         [rr(16, <<3, "txt">>, good_target(1)), a(good_target(1), {127, 0, 0, 7})]}
    }

    servers =
      for {what, {answers, additionals}} <- cases,
          do: {what, nameserver(&reply(&1, answers, additionals))}

    # An SRV record whose data is too short to be an SRV.
    short = nameserver(fn q -> reply(q, [rr(33, <<1::16, 1::16>>)]) end)

    leaves_nothing_behind(fn ->
      for {what, ns} <- servers do
        case what do
          "only" <> _ ->
            assert {:ok, []} = lookup(ns), what

          _ ->
            assert {:ok, [%{host: "n1.node.dc1.consul", addresses: [{127, 0, 0, 7}]}]} =
                     lookup(ns),
                   what
        end
      end

      assert {:error, {:malformed, message}} = lookup(short)
      assert message =~ @service
    end)
  end

  test "truncated packets, cut anywhere, are clean errors" do
    whole = fn q -> reply(q, [srv(4001, good_target(1)), srv(4002, good_target(2))]) end
    # The length of a full reply, from a stand-in query of the same shape.
    probe = <<0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0>> <> name(["likes-dist", "service", "consul"])
    size = byte_size(whole.(probe <> <<33::16, 1::16>>))
    cuts = [1, 2, 11, 12, 20, 40, 50, size - 20, size - 1]

    servers = for cut <- cuts, do: {cut, nameserver(fn q -> binary_part(whole.(q), 0, cut) end)}
    # A TCP length prefix promising more than is sent.
    short_frame =
      nameserver(fn q -> <<1_000::16>> <> binary_part(whole.(q), 0, 30) end, tcp_framing: false)

    leaves_nothing_behind(fn ->
      for {cut, ns} <- servers, transport <- [:udp, :tcp] do
        assert {:error, {reason, message}} = lookup(ns, transport: transport, timeout: 500),
               "cut at #{cut} of #{size} over #{transport}"

        assert reason in [:malformed, :timeout, :unreachable], message
        assert message =~ @service
      end

      assert {:error, {reason, _}} = lookup(short_frame, transport: :tcp, timeout: 500)

      assert reason in [:malformed, :timeout, :unreachable]
    end)
  end

  ## The atom table

  def connect(test, node) do
    send(test, {:connect, node})
    false
  end

  def disconnect(_test, _node), do: true
  def list_nodes, do: []

  defp start_strategy(ns, topology, config) do
    state = %{
      topology: topology,
      connect: {__MODULE__, :connect, [self()]},
      disconnect: {__MODULE__, :disconnect, [self()]},
      list_nodes: {__MODULE__, :list_nodes, []},
      config:
        Keyword.merge(
          [query: @service, node_sname: "app", nameservers: [ns], timeout: 1_000],
          config
        )
    }

    start_supervised!({DnsStrategy, [state]}, id: topology)
  end

  # Modules this test is about to use for the first time are loaded (and
  # their atoms made) before counting, so that the bound measures names.
  # What is left: atoms of code loaded lazily during the run (Logger's
  # formatting, a few error paths), a few dozen at most.
  @slack 100
  @budget 500
  @polls 1_000

  @tag timeout: 120_000
  test "1,000 polls of fresh names grow the atom table by at most max_node_names + #{@slack}" do
    # 10 fresh, valid-looking names per poll: 10,000 distinct targets.
    answer = fn query ->
      i = System.unique_integer([:positive])

      reply(
        query,
        for(j <- 1..10, do: srv(4001, name(["fresh#{i}x#{j}", "node", "dc1", "consul"])))
      )
    end

    server = RawDnsServer.start!(answer: answer)
    ns = RawDnsServer.nameserver(server)
    topology = :"atoms#{System.unique_integer([:positive])}"

    # Warm up every code path once, on another topology, then count.
    capture_log(fn ->
      start_strategy(ns, :atoms_warmup, poll_interval: 5, max_node_names: 1)
      Process.sleep(300)
      stop_supervised!(:atoms_warmup)
    end)

    atoms = :erlang.system_info(:atom_count)

    log =
      capture_log(fn ->
        start_strategy(ns, topology, poll_interval: 5, max_node_names: @budget)
        wait_for_polls(server, @polls)
        stop_supervised!(topology)
      end)

    growth = :erlang.system_info(:atom_count) - atoms
    %{udp: udp, tcp: tcp} = RawDnsServer.queries(server)
    polls = udp + tcp

    assert NodeNames.minted(topology) == @budget
    assert growth <= @budget + @slack, "#{growth} new atoms over #{polls} polls"
    assert growth >= @budget, "the names within the budget are atoms: #{growth}"

    assert log =~
             "topology #{inspect(topology)} has already created #{@budget} node-name atoms, " <>
               "its max_node_names budget (#{@budget})"

    # A name past the budget was never made an atom.
    refute_atom("app-4001@fresh#{System.unique_integer([:positive])}x1.node.dc1.consul")

    IO.puts(
      "\n[atom table] #{polls} polls, 10 fresh names each: +#{growth} atoms (budget #{@budget})"
    )
  end

  defp connected do
    receive do
      {:connect, node} -> [node | connected()]
    after
      0 -> []
    end
  end

  # Queries over either transport: each answer lacks every name known so far,
  # and holds no EDNS record, so it is confirmed over TCP and later polls
  # ask over TCP first.
  defp wait_for_polls(server, n) do
    %{udp: udp, tcp: tcp} = RawDnsServer.queries(server)

    if udp + tcp < n do
      Process.sleep(50)
      wait_for_polls(server, n)
    end
  end
end

defmodule Caravan.DnsClientCancelTest do
  # What a lookup costs in time and sockets: callers that die give back their
  # turns and sockets at once, a dead nameserver never holds up lookups to a
  # live one, a slow one costs no more than its delay, a closed port fails
  # at once. Not async: it counts the VM's open file descriptors, and its
  # time bounds should not share the machine with other tests.
  use ExUnit.Case, async: false

  alias Caravan.Test.{DnsServer, Dnsmasq, RawDnsServer}

  @service "likes-dist.service.consul"
  @abandoned 64

  setup do
    healthy = Dnsmasq.start!(DnsServer.addr_instance(@service, {127, 0, 0, 2}, 4001))
    %{healthy: Dnsmasq.nameserver(healthy)}
  end

  test "64 abandoned lookups free their turns and sockets at once", %{healthy: healthy} do
    # Silent for the abandoned lookups' queries, then answering.
    seen = :counters.new(1, [])

    answer = fn query ->
      :counters.add(seen, 1, 1)

      if :counters.get(seen, 1) > @abandoned,
        do:
          RawDnsServer.response(
            query,
            [{@service, :srv, {1, 1, 4001, ~c"n1.node.dc1.consul"}}],
            []
          ),
        else: :no_reply
    end

    silent = RawDnsServer.nameserver(RawDnsServer.start!(answer: answer))
    # The healthy server's answer, and Caravan's runtime, before counting.
    assert {:ok, [_]} = Caravan.DnsClient.lookup(@service, nameservers: [healthy])
    fds = open_fds()

    callers =
      for _ <- 1..@abandoned do
        spawn(fn ->
          Caravan.DnsClient.lookup(@service, nameservers: [silent], timeout: 15_000, attempts: 1)
        end)
      end

    wait_until(fn -> :counters.get(seen, 1) == @abandoned end)
    assert open_fds() >= fds + @abandoned
    Enum.each(callers, &Process.exit(&1, :kill))
    wait_until(fn -> open_fds() <= fds end)

    # Another nameserver was never held up...
    {elapsed, result} =
      timed(fn -> Caravan.DnsClient.lookup(@service, nameservers: [healthy]) end)

    assert {:ok, [%{port: 4001}]} = result
    assert elapsed <= 50, "#{elapsed} ms"

    # ...and the silent one's turns are all free: its next query goes out
    # and is answered at once, not after 15 s.
    {elapsed, result} = timed(fn -> Caravan.DnsClient.lookup(@service, nameservers: [silent]) end)
    assert {:ok, [%{port: 4001}]} = result
    assert elapsed <= 50, "#{elapsed} ms"
  end

  test "lookups waiting on a dead nameserver hold up nobody else", %{healthy: healthy} do
    dead = RawDnsServer.nameserver(RawDnsServer.start!(answer: :never))
    parent = self()

    stuck =
      for _ <- 1..(2 * @abandoned) do
        spawn_link(fn ->
          send(parent, {:started, self()})
          Caravan.DnsClient.lookup(@service, nameservers: [dead], timeout: 15_000)
        end)
      end

    for pid <- stuck, do: assert_receive({:started, ^pid})
    Process.sleep(100)

    {elapsed, result} =
      timed(fn -> Caravan.DnsClient.lookup(@service, nameservers: [healthy]) end)

    assert {:ok, [%{port: 4001}]} = result
    assert elapsed <= 50, "#{elapsed} ms"

    for pid <- stuck do
      Process.unlink(pid)
      Process.exit(pid, :kill)
    end
  end

  for client <- [Caravan.DnsClient, Caravan.DnsClient.InetRes] do
    @client client

    describe inspect(client) do
      test "a closed port is :unreachable at once, over UDP too" do
        {:ok, socket} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
        {:ok, port} = :inet.port(socket)
        :ok = :gen_tcp.close(socket)

        for transport <- [:udp, :tcp] do
          started = System.monotonic_time(:millisecond)

          assert {:error, {:unreachable, message}} =
                   @client.lookup(@service,
                     nameservers: ["127.0.0.1:#{port}"],
                     transport: transport,
                     timeout: 5000
                   )

          elapsed = System.monotonic_time(:millisecond) - started
          assert elapsed <= 100, "#{transport}: #{elapsed} ms"
          assert message =~ "refused"
        end
      end

      test "a nameserver answering after 450 ms is waited for, not asked again" do
        server =
          RawDnsServer.start!(
            delay: 450,
            answer: &RawDnsServer.response(&1, [srv_answer(4001, "n1.node.dc1.consul")], [])
          )

        started = System.monotonic_time(:millisecond)

        assert {:ok, [%{port: 4001}]} =
                 @client.lookup(@service, nameservers: [RawDnsServer.nameserver(server)])

        elapsed = System.monotonic_time(:millisecond) - started
        assert elapsed <= 500, "took #{elapsed} ms"
        assert RawDnsServer.queries(server) == %{udp: 1, tcp: 0}
      end
    end
  end

  defp srv_answer(port, target), do: {@service, :srv, {1, 1, port, to_charlist(target)}}

  defp open_fds, do: "/proc/self/fd" |> File.ls!() |> length()

  defp timed(fun) do
    started = System.monotonic_time(:millisecond)
    result = fun.()
    {System.monotonic_time(:millisecond) - started, result}
  end

  defp wait_until(fun, tries \\ 200) do
    cond do
      fun.() -> :ok
      tries == 0 -> flunk("condition not met within 2 s")
      true -> Process.sleep(10) && wait_until(fun, tries - 1)
    end
  end
end

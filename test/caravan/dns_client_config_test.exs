defmodule Caravan.DnsClient.ConfigTest do
  # Not async: these tests change the application environment or the number
  # of online schedulers, which every other test would see.
  use ExUnit.Case, async: false

  import ExUnit.CaptureLog

  alias Caravan.Test.{DnsServer, Dnsmasq, RawDnsServer}

  @service "likes-dist.service.consul"

  setup do
    previous = Application.fetch_env(:caravan, :dns)

    on_exit(fn ->
      case previous do
        {:ok, value} -> Application.put_env(:caravan, :dns, value)
        :error -> Application.delete_env(:caravan, :dns)
      end
    end)

    dns = Dnsmasq.start!(DnsServer.addr_instance(@service, {127, 0, 0, 2}, 4001))
    %{ns: Dnsmasq.nameserver(dns)}
  end

  test "config :caravan, :dns gives the defaults, and options override it", %{ns: ns} do
    Application.put_env(:caravan, :dns, nameservers: [ns], transport: :tcp)

    for client <- [Caravan.DnsClient, Caravan.DnsClient.InetRes] do
      assert {:ok, [%{port: 4001, addresses: [{127, 0, 0, 2}]}]} = client.lookup(@service)

      silent = RawDnsServer.nameserver(RawDnsServer.start!(answer: :never))

      assert {:error, {:timeout, _}} =
               client.lookup(@service, nameservers: [silent], transport: :udp, timeout: 300)
    end
  end

  test "a bad config raises ArgumentError naming it" do
    Application.put_env(:caravan, :dns, retries: 3)

    assert_raise ArgumentError,
                 ~r/unknown DNS option\(s\) \[:retries\] in config :caravan, :dns/,
                 fn ->
                   Caravan.DnsClient.lookup(@service)
                 end
  end

  test "get_nodes/1 keeps the original contract: [{port, host}], and [] with a warning on failure",
       %{ns: ns} do
    for client <- [Caravan.DnsClient, Caravan.DnsClient.InetRes] do
      Application.put_env(:caravan, :dns, nameservers: [ns])
      assert client.get_nodes(@service) == [{4001, "7f000002.addr.dc1.consul"}]

      refused = RawDnsServer.start!(answer: &RawDnsServer.rcode_reply(&1, :refused))
      Application.put_env(:caravan, :dns, nameservers: [RawDnsServer.nameserver(refused)])

      log = capture_log(fn -> assert client.get_nodes(@service) == [] end)
      assert log =~ "DNS lookup failed (refused)"
      assert log =~ "likes-dist.service.consul"
    end
  end

  test "the caller's scheduler stays free while a lookup waits" do
    # With one scheduler online, a NIF that blocked it would stop every
    # other process too: the round trips below could not happen until the
    # lookup ended.
    online = :erlang.system_info(:schedulers_online)
    on_exit(fn -> :erlang.system_flag(:schedulers_online, online) end)
    :erlang.system_flag(:schedulers_online, 1)

    silent = RawDnsServer.nameserver(RawDnsServer.start!(answer: :never))
    started = System.monotonic_time(:millisecond)

    lookup =
      Task.async(fn ->
        Caravan.DnsClient.lookup(@service, nameservers: [silent], timeout: 1000)
      end)

    echo = spawn_link(fn -> echo() end)
    Process.sleep(100)

    round_trips =
      for _ <- 1..20 do
        t0 = System.monotonic_time(:microsecond)
        send(echo, {:ping, self()})
        assert_receive :pong, 1000
        System.monotonic_time(:microsecond) - t0
      end

    # The round trips happened while the lookup was still waiting.
    assert Task.yield(lookup, 0) == nil
    assert Enum.max(round_trips) < 500_000

    assert {:error, {:timeout, _}} = Task.await(lookup, 5000)
    elapsed = System.monotonic_time(:millisecond) - started
    assert elapsed >= 1000 and elapsed < 1000 + 1500, "took #{elapsed} ms"
  end

  defp echo do
    receive do
      {:ping, from} ->
        send(from, :pong)
        echo()
    end
  end

  test "the DNS runtime adds exactly one OS thread, however many lookups ran", %{ns: ns} do
    tasks =
      for _ <- 1..50,
          do: Task.async(fn -> Caravan.DnsClient.lookup(@service, nameservers: [ns]) end)

    assert Enum.all?(Task.await_many(tasks, 10_000), &match?({:ok, [_]}, &1))

    names =
      for task <- File.ls!("/proc/self/task"),
          comm = File.read("/proc/self/task/#{task}/comm"),
          match?({:ok, _}, comm),
          do: comm |> elem(1) |> String.trim()

    assert Enum.count(names, &(&1 == "caravan-dns")) == 1
  end
end

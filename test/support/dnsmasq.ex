defmodule Caravan.Test.Dnsmasq do
  @moduledoc """
  A dnsmasq serving Consul-shaped records on 127.0.0.1 (or the `:address`
  option's IPv4 address) and a free port, for one test. See `Caravan.Test.DnsServer` for the records, the helpers that
  build Consul's shapes and the lifecycle functions (`nameserver/1`,
  `set_records/2`, `stop_server/1`, `start_server/1`), which are delegated
  here.

      dns = Caravan.Test.Dnsmasq.start!(
              Caravan.Test.DnsServer.addr_instance("likes-dist.service.consul", {127, 0, 0, 2}, 4001))
      Caravan.DnsClient.lookup("likes-dist.service.consul",
        nameservers: [Caravan.Test.Dnsmasq.nameserver(dns)])

  dnsmasq answers over UDP and TCP with the A/AAAA records of SRV targets as
  glue in the ADDITIONAL section, and NXDOMAIN for unknown names under
  `consul` (`local=/consul/`), as Consul does. TTLs are 0.

  **Keep answers small.** dnsmasq 2.90 emits corrupt packets once an answer
  passes about 16 KiB (its compression pointers overflow): about 200
  records with glue, fewer with long names. Use `Caravan.Test.Bind` beyond.

  Each address is one `host-record` line: dnsmasq serves one IPv4 and one
  IPv6 address per name, so a name given more is an error here.
  """

  @behaviour Caravan.Test.DnsServer

  alias Caravan.Test.DnsServer

  @doc "Starts dnsmasq serving `records` for the current test; returns its pid."
  @spec start!([DnsServer.dns_record()], keyword()) :: pid()
  def start!(records, opts \\ []), do: DnsServer.start!(__MODULE__, records, opts)

  defdelegate nameserver(server), to: DnsServer
  defdelegate address(server), to: DnsServer
  defdelegate set_records(server, records), to: DnsServer
  defdelegate stop_server(server), to: DnsServer
  defdelegate start_server(server), to: DnsServer

  @impl DnsServer
  def startup_ms, do: 5_000

  @impl DnsServer
  def command(dir) do
    {"dnsmasq",
     [
       "--keep-in-foreground",
       "--conf-file=" <> Path.join(dir, "dnsmasq.conf"),
       "--pid-file=" <> Path.join(dir, "dnsmasq.pid"),
       "--log-facility=-"
     ]}
  end

  @impl DnsServer
  def files(dir, address, port, records) do
    lines =
      [
        "port=#{port}",
        "listen-address=#{:inet.ntoa(address)}",
        "bind-interfaces",
        "no-resolv",
        "no-hosts",
        "local=/consul/",
        "local-ttl=0",
        user_line()
      ] ++ Enum.map(records, &srv_line/1) ++ host_lines(records)

    [{Path.join(dir, "dnsmasq.conf"), lines |> Enum.reject(&is_nil/1) |> Enum.map(&[&1, ?\n])}]
  end

  # dnsmasq started as root drops privileges to "nobody", who may not read
  # our directory: stay root then. Other users cannot switch anyway.
  defp user_line do
    case System.cmd("id", ["-u"]) do
      {"0\n", 0} -> "user=root"
      _ -> nil
    end
  end

  defp srv_line({:srv, name, target, port}), do: srv_line({:srv, name, target, port, 1, 1})

  defp srv_line({:srv, name, target, port, priority, weight}),
    do: "srv-host=#{name},#{target},#{port},#{priority},#{weight}"

  defp srv_line(_address), do: nil

  defp host_lines(records) do
    records
    |> Enum.filter(&(elem(&1, 0) in [:a, :aaaa]))
    |> Enum.group_by(&elem(&1, 1), fn {type, _name, ip} -> {type, ip_text(ip)} end)
    |> Enum.sort()
    |> Enum.map(fn {name, addresses} ->
      v4 = for {:a, ip} <- addresses, do: ip
      v6 = for {:aaaa, ip} <- addresses, do: ip

      if length(v4) > 1 or length(v6) > 1 do
        raise ArgumentError,
              "dnsmasq serves one IPv4 and one IPv6 address per name; #{name} has #{inspect(addresses)}"
      end

      Enum.join(["host-record=#{name}" | v4 ++ v6], ",")
    end)
  end

  defp ip_text(ip) when is_tuple(ip), do: ip |> :inet.ntoa() |> to_string()
  defp ip_text(ip) when is_binary(ip), do: ip
end

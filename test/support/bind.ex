defmodule Caravan.Test.Bind do
  @moduledoc """
  BIND (`named`) serving Consul-shaped records on 127.0.0.1 and a free port,
  for one test: the fixture for large answers, which dnsmasq corrupts
  beyond about 16 KiB. It serves 1,000 SRV records correctly (about 44 KB
  over TCP, with TC set on UDP).

  Same records, helpers and lifecycle as `Caravan.Test.Dnsmasq` (see
  `Caravan.Test.DnsServer`). The zone is `consul`, TTLs are 0, and
  `max-records-per-type 0` lifts BIND 9.18's default cap of 100 records per
  name. Unknown names under `consul` answer NXDOMAIN. BIND takes a second or
  so to start.
  """

  @behaviour Caravan.Test.DnsServer

  alias Caravan.Test.DnsServer

  @doc "Starts named serving `records` for the current test; returns its pid."
  @spec start!([DnsServer.dns_record()], keyword()) :: pid()
  def start!(records, opts \\ []), do: DnsServer.start!(__MODULE__, records, opts)

  defdelegate nameserver(server), to: DnsServer
  defdelegate address(server), to: DnsServer
  defdelegate set_records(server, records), to: DnsServer
  defdelegate stop_server(server), to: DnsServer
  defdelegate start_server(server), to: DnsServer

  @impl DnsServer
  def startup_ms, do: 15_000

  @impl DnsServer
  def command(dir) do
    user = if root?(), do: ["-u", "root"], else: []
    {"named", ["-g", "-c", Path.join(dir, "named.conf")] ++ user}
  end

  defp root?, do: match?({"0\n", 0}, System.cmd("id", ["-u"]))

  @impl DnsServer
  def files(dir, address, port, records) do
    conf = """
    options {
      directory "#{dir}";
      listen-on port #{port} { #{:inet.ntoa(address)}; };
      listen-on-v6 { none; };
      recursion no;
      max-records-per-type 0;
      pid-file "#{dir}/named.pid";
      session-keyfile "#{dir}/session.key";
      managed-keys-directory "#{dir}";
      dnssec-validation no;
    };
    zone "consul" { type master; file "#{dir}/consul.zone"; };
    """

    zone = [
      "$TTL 0\n",
      "@ IN SOA ns.consul. hostmaster.consul. 1 3600 600 86400 0\n",
      "@ IN NS ns.consul.\n",
      "ns IN A 127.0.0.1\n"
      | Enum.map(records, &zone_line/1)
    ]

    [{Path.join(dir, "named.conf"), conf}, {Path.join(dir, "consul.zone"), zone}]
  end

  defp zone_line({:srv, name, target, port}), do: zone_line({:srv, name, target, port, 1, 1})

  defp zone_line({:srv, name, target, port, priority, weight}),
    do: "#{fqdn(name)} IN SRV #{priority} #{weight} #{port} #{fqdn(target)}\n"

  defp zone_line({:a, name, ip}), do: "#{fqdn(name)} IN A #{ip_text(ip)}\n"
  defp zone_line({:aaaa, name, ip}), do: "#{fqdn(name)} IN AAAA #{ip_text(ip)}\n"

  defp fqdn(name), do: String.trim_trailing(name, ".") <> "."

  defp ip_text(ip) when is_tuple(ip), do: ip |> :inet.ntoa() |> to_string()
  defp ip_text(ip) when is_binary(ip), do: ip
end

defmodule Mix.Tasks.Caravan.Lookup do
  @shortdoc "Looks up a service's SRV records the way Caravan does (dig for Caravan)"

  @moduledoc """
  Looks up the SRV records of a service the way Caravan's discovery does and
  prints the answer as a table.

      mix caravan.lookup QUERY [--nameserver IP:PORT]... [--tcp] [--node-sname NAME] [--node-host target|address] [--timeout MS]

  Options:

    * `--nameserver IP:PORT` - ask this nameserver (repeatable; any form
      `Caravan.DnsClient.Options` accepts as a string). Default: the
      `:nameservers` of `config :caravan, :dns`, else `/etc/resolv.conf`.
    * `--tcp` - query over TCP only (`transport: :tcp`).
    * `--node-sname NAME` - also print the node names
      `Caravan.Cluster.DnsStrategy` would build, `NAME-PORT@HOST`.
    * `--node-host target|address` - the strategy's `:node_host` for those
      names (default `target`: HOST is the SRV target; `address`: its IP,
      from glue or a Consul `.addr.` target).
    * `--timeout MS` - the lookup's timeout in milliseconds (default 5000).

  Example:

      $ mix caravan.lookup likes-dist.service.consul --nameserver 127.0.0.1:8600 --node-sname likes

  It exits with status 1 and a readable message for an invalid option (a
  `--node-sname` the strategy would refuse, say) and when the lookup fails (a
  timeout, an unreachable or failing nameserver, a malformed answer). A
  service without instances (NXDOMAIN or no records) is not a failure. It
  says so when the answer is not known to be complete (see
  `Caravan.DnsClient.answer/2`), and shows a target whose address lookups
  failed as `(lookup failed)`.

  See also the guide [Discovery and the strategy](discovery.md#mix-caravanlookup).
  """

  use Mix.Task

  @switches [
    nameserver: :keep,
    tcp: :boolean,
    node_sname: :string,
    node_host: :string,
    timeout: :integer
  ]

  @impl Mix.Task
  def run(args) do
    {opts, query} = parse!(args)
    sname!(opts[:node_sname])
    Mix.Task.run("app.config")

    lookup_opts =
      [
        transport: if(opts[:tcp], do: :tcp, else: :udp),
        resolve_addresses: node_host!(opts[:node_host]) == :address
      ]
      |> put_nameservers(Keyword.get_values(opts, :nameserver))
      |> put_timeout(opts[:timeout])

    case lookup(query, lookup_opts) do
      {:ok, %{targets: targets, complete: complete}} ->
        print(query, targets, lookup_opts, {opts[:node_sname], node_host!(opts[:node_host])})

        unless complete do
          Mix.shell().info(
            "\nNot known to be complete: a UDP answer this close to the 4,096 bytes " <>
              "the query advertises may have been trimmed (Consul trims silently); " <>
              "--tcp gets the whole answer"
          )
        end

      {:error, {reason, message}} ->
        Mix.raise("DNS lookup of #{query} failed (#{reason}): #{message}")
    end
  end

  defp parse!(args) do
    case OptionParser.parse(args, strict: @switches) do
      {opts, [query], []} ->
        {opts, query}

      {_opts, _rest, [{switch, _} | _]} ->
        Mix.raise("unknown or invalid option #{switch}\n\n" <> usage())

      _ ->
        Mix.raise("expected exactly one query\n\n" <> usage())
    end
  end

  defp usage do
    "usage: mix caravan.lookup QUERY [--nameserver IP:PORT]... [--tcp] [--node-sname NAME] [--node-host target|address] [--timeout MS]"
  end

  # The strategy's own check (Caravan.Cluster.Config), once, before asking DNS.
  defp sname!(nil), do: :ok

  defp sname!(sname) do
    with {:error, message} <- Caravan.Cluster.Config.check_sname(sname),
         do: Mix.raise("invalid --node-sname: " <> message)
  end

  defp node_host!(nil), do: :target
  defp node_host!("target"), do: :target
  defp node_host!("address"), do: :address
  defp node_host!(other), do: Mix.raise("--node-host must be target or address, got: #{other}")

  defp put_nameservers(opts, []), do: opts
  defp put_nameservers(opts, servers), do: Keyword.put(opts, :nameservers, servers)

  defp put_timeout(opts, nil), do: opts
  defp put_timeout(opts, ms), do: Keyword.put(opts, :timeout, ms)

  defp lookup(query, opts) do
    Caravan.DnsClient.answer(query, opts)
  rescue
    e in ArgumentError -> Mix.raise(Exception.message(e))
  end

  defp print(query, [], opts, _naming) do
    Mix.shell().info("#{query}: no instances (NXDOMAIN or no SRV records) #{via(opts)}")
  end

  defp print(query, targets, opts, {sname, node_host}) do
    Mix.shell().info("#{query}: #{length(targets)} target(s) #{via(opts)}\n")

    rows =
      for t <- targets do
        [t.priority, t.weight, t.port, t.host, addresses(t)]
        |> Enum.map(&to_string/1)
      end

    Mix.shell().info(table(["PRIORITY", "WEIGHT", "PORT", "TARGET", "ADDRESSES"], rows))

    if sname do
      names = Enum.map_join(targets, "\n", &node_name(sname, node_host, &1))

      Mix.shell().info(
        "\nNode names (node_sname: #{inspect(sname)}, node_host: #{inspect(node_host)}):\n" <>
          names
      )
    end
  end

  defp addresses(%{unresolved: true}), do: "(lookup failed)"
  defp addresses(target), do: Enum.map_join(target.addresses, " ", &ip/1)

  defp via(opts) do
    servers =
      case opts[:nameservers] do
        nil -> "the configured nameservers"
        list -> Enum.join(list, ", ")
      end

    "from #{servers} over #{opts[:transport]}"
  end

  defp table(header, rows) do
    widths =
      Enum.zip_with([header | rows], fn column -> column |> Enum.map(&String.length/1) end)
      |> Enum.map(&Enum.max/1)

    Enum.map_join([header | rows], "\n", fn row ->
      row
      |> Enum.zip(widths)
      |> Enum.map_join("  ", fn {cell, width} -> String.pad_trailing(cell, width) end)
      |> String.trim_trailing()
    end)
  end

  # Exactly what Caravan.Cluster.DnsStrategy builds for the same record.
  defp node_name(sname, node_host, target) do
    case Caravan.Cluster.NodeNames.name(target, sname, node_host) do
      {:ok, name} -> name
      {:error, message} -> "(none: #{message})"
    end
  end

  defp ip(ip), do: ip |> :inet.ntoa() |> to_string()
end

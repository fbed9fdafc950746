defmodule Caravan.DnsClient.InetRes do
  @moduledoc """
  The `Caravan.DnsClient` behaviour over OTP's `:inet_res`: the same
  functions, options and result shapes as `Caravan.DnsClient`, with the query
  sent by OTP instead of hickory.

  It is a fallback and a baseline for benchmarks. The answer is shaped by
  the same Rust rules as the default client (`caravan_core::dns::answer`,
  through a NIF), so both return identical targets for identical answers.

  Differences that come from `:inet_res`:

    * the calling process runs the query itself (it waits in a `receive` on
      an OTP socket: no scheduler is blocked, but the process is busy);
    * `:timeout` bounds the whole call. OTP's own scheme spends it: `:attempts`
      counts passes over the nameservers (so queries sent are attempts times
      nameservers), each pass waits longer than the last, and an attempt's
      reply is no longer listened for once its wait is over;
    * `:transport` `:udp` falls back to TCP on a truncated answer, as OTP
      does, and also on a UDP answer OTP cannot decode (OTP 27.3's
      `inet_dns` rejects every truncated reply as `:formerr`, so its own
      fallback never runs: erlang/otp#11114); `:tcp` sets `usevc`;
    * `:nameservers` `:system` uses OTP's resolver configuration (on Unix,
      `/etc/resolv.conf`);
    * `complete` (see `Caravan.DnsClient.answer/2`) is judged from the
      message encoded again, since `:inet_res` does not hand over its bytes;
    * reasons are mapped to `t:Caravan.DnsClient.reason/0`: `:nxdomain` is an
      empty answer, the response codes FORMERR, NOTIMP and BADVERS are
      `:server_error`, a POSIX error such as `:econnrefused` is
      `:unreachable`, and an answer `:inet_res` cannot decode (its bare
      `:formerr`) is `:malformed`.

  See also the guide [Discovery and the strategy](discovery.md#the-dns-client).
  """

  @behaviour Caravan.DnsClient

  alias Caravan.DnsClient.Options

  @edns_payload 4096

  @impl Caravan.DnsClient
  @doc "See `c:Caravan.DnsClient.get_nodes/1`."
  @spec get_nodes(String.t()) :: [{:inet.port_number(), String.t()}]
  def get_nodes(query), do: Caravan.DnsClient.nodes(__MODULE__, query, [])

  @impl Caravan.DnsClient
  @doc "See `c:Caravan.DnsClient.get_nodes/2`."
  @spec get_nodes(String.t(), [Options.option()] | [Options.nameserver()]) ::
          [{:inet.port_number(), String.t()}]
  def get_nodes(query, opts), do: Caravan.DnsClient.nodes(__MODULE__, query, opts)

  @impl Caravan.DnsClient
  @doc "See `c:Caravan.DnsClient.lookup/2`: same options, same results."
  @spec lookup(String.t(), [Options.option()]) ::
          {:ok, [Caravan.DnsClient.target()]} | {:error, Caravan.DnsClient.error()}
  def lookup(query, opts \\ []), do: Caravan.DnsClient.targets(answer(query, opts))

  @impl Caravan.DnsClient
  @doc """
  See `c:Caravan.DnsClient.answer/2`. `:inet_res` hands over the decoded
  message, not its bytes, so its size is that of the message encoded again
  (OTP compresses names as servers do).
  """
  @spec answer(String.t(), [Options.option()]) ::
          {:ok, Caravan.DnsClient.answer()} | {:error, Caravan.DnsClient.error()}
  def answer(query, opts \\ [])

  def answer(query, opts) when is_binary(query) do
    options = Options.validate!(opts)
    name = query!(query)
    deadline = System.monotonic_time(:millisecond) + options.timeout

    case resolve_srv(name, options, deadline) do
      {:ok, message, transport} -> {:ok, shape(query, message, transport, options, deadline)}
      {:error, reason} -> error(query, reason, options)
    end
  end

  def answer(query, _opts), do: Options.not_a_query!(query)

  # The query rules live in Rust (caravan_core::dns::options::Query).
  defp query!(query) do
    case Caravan.Native.dns_check_query(query) do
      {:ok, normalized} -> String.to_charlist(normalized <> ".")
      {:error, :bad_option, message} -> raise ArgumentError, message
    end
  end

  # The message, and :tcp when it is known to have come over TCP.
  defp resolve_srv(name, options, deadline) do
    case :inet_res.resolve(name, :in, :srv, resolver_opts(options), options.timeout) do
      # A bare :formerr is a reply inet_dns could not decode. Debian's OTP
      # 27.3 says so of every reply with TC set (erlang/otp#11114), so the
      # TCP fallback inet_res would make is made here.
      {:error, :formerr} when options.transport == :udp ->
        left = deadline - System.monotonic_time(:millisecond)
        tcp = %{options | transport: :tcp}

        with true <- left > 0 || {:error, :timeout},
             {:ok, message} <- :inet_res.resolve(name, :in, :srv, resolver_opts(tcp), left),
             do: {:ok, message, :tcp}

      {:ok, message} ->
        {:ok, message, options.transport}

      error ->
        error
    end
  end

  defp resolver_opts(options) do
    per_attempt = max(div(options.timeout, options.attempts), 1)

    [
      retry: options.attempts,
      timeout: per_attempt,
      edns: 0,
      udp_payload_size: @edns_payload,
      usevc: options.transport == :tcp,
      recurse: true
    ] ++ nameservers(options.nameservers)
  end

  defp nameservers(:system), do: []
  defp nameservers(list), do: [nameservers: list]

  defp shape(query, message, transport, options, deadline) do
    records =
      for rr <- :inet_dns.msg(message, :anlist),
          :inet_dns.rr(rr, :type) == :srv,
          {priority, weight, port, target} <- [:inet_dns.rr(rr, :data)] do
        {priority, weight, port, List.to_string(target)}
      end

    glue =
      for rr <- :inet_dns.msg(message, :arlist),
          :inet_dns.rr(rr, :type) in [:a, :aaaa] do
        {List.to_string(:inet_dns.rr(rr, :domain)), :inet_dns.rr(rr, :data)}
      end

    {:ok, targets, stats} = Caravan.Native.dns_shape(records, glue, options.max_records)

    {targets, stats} =
      if options.resolve_addresses,
        do: resolve_all(targets, stats, options, deadline),
        else: {targets, stats}

    Caravan.DnsClient.warn_about_dropped(query, stats)
    %{targets: targets, complete: stats.complete and whole?(message, transport)}
  end

  # The rule of caravan_core::dns::exchange: over TCP, or over UDP with EDNS
  # honoured and room left for two more of its largest records (never less
  # than 512 bytes). A message longer than the advertised payload can only
  # have come over TCP (OTP retries there on TC).
  defp whole?(_message, :tcp), do: true

  defp whole?(message, :udp) do
    size = byte_size(:inet_dns.encode(message))
    arlist = :inet_dns.msg(message, :arlist)
    edns? = Enum.any?(arlist, &(:inet_dns.rr(&1, :type) == :opt))
    room = max(512, 2 * largest_record(message, arlist))
    (edns? and size + room <= @edns_payload) or size > @edns_payload
  end

  # The encoded length of the largest SRV record with the ADDITIONAL records
  # named after its target: what Consul trims as one.
  defp largest_record(message, arlist) do
    for rr <- :inet_dns.msg(message, :anlist),
        :inet_dns.rr(rr, :type) == :srv,
        {_, _, _, target} = :inet_dns.rr(rr, :data),
        key = target |> to_string() |> String.downcase(),
        extras = for(x <- arlist, same_name?(x, key), do: x) do
      unit =
        :inet_dns.make_msg(header: :inet_dns.msg(message, :header), anlist: [rr], arlist: extras)

      byte_size(:inet_dns.encode(unit)) - 12
    end
    |> Enum.max(fn -> 0 end)
  end

  defp same_name?(rr, key) do
    :inet_dns.rr(rr, :type) != :opt and
      rr |> :inet_dns.rr(:domain) |> to_string() |> String.downcase() == key
  end

  defp resolve_all(targets, stats, options, deadline) do
    resolved = Enum.map(targets, &resolve(&1, options, deadline))
    errors = for {_target, error} <- resolved, error != nil, do: error

    {Enum.map(resolved, &elem(&1, 0)),
     %{stats | unresolved: length(errors), unresolved_example: List.first(errors)}}
  end

  # Address lookups share what is left of the lookup's timeout. A target
  # whose lookups find no address, one of them failing (not NXDOMAIN or no
  # records), is unresolved; the failure's message comes with it.
  defp resolve(%{addresses: []} = target, options, deadline) do
    name = String.to_charlist(target.host <> ".")
    results = for type <- [:a, :aaaa], do: {type, resolve_one(name, type, options, deadline)}

    addresses =
      for {_type, {:ok, message}} <- results,
          rr <- :inet_dns.msg(message, :anlist),
          :inet_dns.rr(rr, :type) in [:a, :aaaa],
          do: :inet_dns.rr(rr, :data)

    failures = for {type, {:error, reason}} <- results, reason != :nxdomain, do: {type, reason}

    case {addresses, failures} do
      {[], [{type, reason} | _]} ->
        {_atom, text} = describe_error(target.host, type, reason, options)
        {%{target | unresolved: true}, text}

      _ ->
        {%{target | addresses: addresses |> Enum.uniq() |> Enum.sort_by(&address_key/1)}, nil}
    end
  end

  defp resolve(target, _options, _deadline), do: {target, nil}

  defp resolve_one(name, type, options, deadline) do
    left = deadline - System.monotonic_time(:millisecond)

    case left > 0 && :inet_res.resolve(name, :in, type, resolver_opts(options), left) do
      false -> {:error, :timeout}
      {:ok, message} -> {:ok, message}
      {:error, {:nxdomain, _}} -> {:error, :nxdomain}
      {:error, {code, message}} when is_tuple(message) -> {:error, {:rcode, code}}
      {:error, reason} -> {:error, reason}
    end
  end

  # IPv4 before IPv6, then numerically: the order the Rust shaping uses.
  defp address_key({_, _, _, _} = ip), do: {4, ip}
  defp address_key(ip), do: {6, ip}

  # With no nameserver configured, :inet_res answers :nxdomain itself:
  # that is not an answer from anyone.
  defp error(query, :nxdomain, %{nameservers: :system} = options) do
    if :inet_db.res_option(:nameservers) == [] and :inet_db.res_option(:alt_nameservers) == [] do
      {:error,
       {:no_nameservers,
        "no nameserver to ask for #{query} SRV: OTP's resolver configuration " <>
          "(/etc/resolv.conf) names none; pass :nameservers, for example [\"127.0.0.1:8600\"]"}}
    else
      error(query, {:nxdomain, nil}, options)
    end
  end

  defp error(_query, :nxdomain, _options), do: {:ok, %{targets: [], complete: true}}
  defp error(_query, {:nxdomain, _message}, _options), do: {:ok, %{targets: [], complete: true}}

  # An error response code comes with the response message; a bare
  # :formerr is :inet_res failing to decode the answer itself.
  defp error(query, {code, message}, options)
       when code in [:refused, :servfail, :formerr, :notimp, :badvers] and is_tuple(message),
       do: error(query, {:rcode, code}, options)

  defp error(query, reason, options), do: {:error, describe_error(query, :srv, reason, options)}

  # The reason and message for a failed query of `type` for `name`.
  defp describe_error(name, type, reason, options) do
    where = describe(options)
    question = "#{name} #{type |> to_string() |> String.upcase()}"

    case reason do
      :timeout ->
        {:timeout,
         "no answer for #{question} from #{where} within #{options.timeout} ms " <>
           "(#{options.attempts} attempt(s)); check that the nameserver is up and reachable, or raise :timeout"}

      {:rcode, :refused} ->
        {:refused, "#{where} refused the query for #{question} (REFUSED)"}

      {:rcode, :servfail} ->
        {:servfail, "#{where} failed to answer #{question} (SERVFAIL)"}

      {:rcode, code} ->
        {:server_error,
         "#{where} answered #{question} with error code #{code |> to_string() |> String.upcase()}"}

      :formerr ->
        {:malformed, "#{where} sent a malformed answer for #{question}: it could not be decoded"}

      posix when is_atom(posix) ->
        {:unreachable,
         "could not reach #{where} for #{question}: #{:inet.format_error(posix)} (#{posix})"}

      other ->
        {:internal, "the lookup of #{question} failed: #{inspect(other, limit: 20)}"}
    end
  end

  defp describe(%{nameservers: :system, transport: transport}),
    do: "the system nameservers (#{transport(transport)})"

  defp describe(%{nameservers: list, transport: transport}) do
    list
    |> Enum.map_join(", ", fn {ip, port} -> address(ip, port) end)
    |> Kernel.<>(" (#{transport(transport)})")
  end

  defp address({_, _, _, _} = ip, port), do: "#{:inet.ntoa(ip)}:#{port}"
  defp address(ip, port), do: "[#{:inet.ntoa(ip)}]:#{port}"

  defp transport(:udp), do: "udp with tcp fallback"
  defp transport(:tcp), do: "tcp"
end

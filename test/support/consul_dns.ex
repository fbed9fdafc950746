defmodule Caravan.Test.ConsulDns do
  @moduledoc """
  A DNS server that answers service queries as Consul's agent does, standing
  in for Consul, which cannot be installed here. It mirrors hashicorp/consul
  1.16-1.19 `agent/dns.go`:

    * `serviceLookup`: an unknown service, or one with no instance passing
      (passing or warning unless `only_passing`), is NXDOMAIN with an SOA;
      instances are shuffled on every query (`out.Nodes.Shuffle()`);
    * `serviceSRVRecords`: one SRV per instance, priority 1, weight 1, TTL 0,
      target `<hex-ip>.addr.<dc>.consul` (or `<hex-ip>.addr.consul` with
      `addr_dc: false`) with its A or AAAA record in ADDITIONAL;
    * `trimUDPResponse`, `syncExtra`, `dnsBinaryTruncate`: over UDP the
      answer is cut to the payload size the query's EDNS record advertises,
      less 8 bytes (512 without EDNS or with an advertised size under 512, and
      then first to `udp_answer_limit` answers, default 3), dropping whole records and the glue of the ones
      dropped; TC is set only with `enable_truncate: true`
      (`trimDNSResponse`); an EDNS query gets an OPT record back;
    * over TCP the whole answer (`trimTCPResponse` cuts only past 64 KB);
    * the `addr` lookup: an A or AAAA query for `<hex-ip>.addr[.<dc>].consul`
      is answered with that address;
    * `makeRecordFromFQDN`, `resolveCNAME`, `handleRecurse`: an instance
      registered with a host name instead of an address gets that name as its
      SRV target, with glue only from the recursors (`recursors/2`). A query
      for a name outside `consul.` goes to them too: with none it is
      REFUSED (no handler matches, miekg/dns `handleRefused`); with failing
      ones SERVFAIL, and the SRV answer has no glue; with answering ones
      (a map of host names to addresses) the address, or NXDOMAIN.

  It runs on `Caravan.Test.RawDnsServer` (UDP and TCP on one port of
  127.0.0.1) under the test's supervisor, and is stopped with the test.

      consul = Caravan.Test.ConsulDns.start!()
      Caravan.Test.ConsulDns.set(consul, "likes-dist", for(i <- 1..150, do: {{127, 1, 0, i}, 4001}))
      Caravan.DnsClient.lookup("likes-dist.service.consul",
        nameservers: [Caravan.Test.ConsulDns.nameserver(consul)])

  Instances are `{ip, port}` (passing) or `{ip, port, status}` with status
  `:passing`, `:warning` or `:critical`; `ip` may be a host name (a
  string).
  """

  alias Caravan.Test.RawDnsServer

  defstruct [:server, :state]

  @typedoc "A running fixture."
  @type t :: %__MODULE__{server: pid(), state: pid()}

  @typedoc "A registered instance."
  @type instance ::
          {:inet.ip_address() | String.t(), :inet.port_number()}
          | {:inet.ip_address() | String.t(), :inet.port_number(),
             :passing | :warning | :critical}

  @rcodes %{noerror: 0, servfail: 2, nxdomain: 3, refused: 5}
  @max_udp 65_535 - 68

  @doc """
  Starts the fixture. Options: `:enable_truncate` (`false`),
  `:udp_answer_limit` (`3`), `:only_passing` (`false`), `:addr_dc` (`true`),
  `:dc` (`"dc1"`), `:recursors` (`:none`; see `recursors/2`).
  """
  @spec start!(keyword()) :: t()
  def start!(opts \\ []) do
    start_with(opts, fn spec -> ExUnit.Callbacks.start_supervised!(spec, []) end)
  end

  @doc """
  `start!/1` outside ExUnit (for the benchmark): the fixture lives until
  `stop/1`.
  """
  @spec start_unsupervised(keyword()) :: t()
  def start_unsupervised(opts \\ []) do
    start_with(opts, fn %{start: {m, f, a}} ->
      {:ok, pid} = apply(m, f, a)
      Process.unlink(pid)
      pid
    end)
  end

  @doc "Stops a fixture started with `start_unsupervised/1`."
  @spec stop(t()) :: :ok
  def stop(%__MODULE__{server: server, state: state}) do
    for pid <- [server, state], Process.alive?(pid), do: GenServer.stop(pid)
    :ok
  end

  @doc "Every query answered, oldest first (see `Caravan.Test.RawDnsServer.traffic/1`)."
  @spec traffic(t()) :: [{integer(), :udp | :tcp, non_neg_integer()}]
  def traffic(%__MODULE__{server: server}), do: RawDnsServer.traffic(server)

  defp start_with(opts, start) do
    opts =
      Keyword.validate!(opts,
        enable_truncate: false,
        udp_answer_limit: 3,
        only_passing: false,
        addr_dc: true,
        dc: "dc1",
        recursors: :none
      )

    recursors = Keyword.fetch!(opts, :recursors)

    state =
      start.(%{
        id: {__MODULE__, make_ref()},
        start: {Agent, :start_link, [fn -> %{{:recursors} => recursors} end]}
      })

    server =
      start.(%{
        id: {RawDnsServer, make_ref()},
        restart: :temporary,
        start:
          {GenServer, :start_link,
           [RawDnsServer, [answer: &answer(&1, &2, state, opts), tcp_framing: true, delay: 0]]}
      })

    %__MODULE__{server: server, state: state}
  end

  @doc "Registers `instances` as the whole of `service` (`[]` removes it)."
  @spec set(t(), String.t(), [instance()]) :: :ok
  def set(%__MODULE__{state: state}, service, instances) do
    Agent.update(state, &Map.put(&1, service, instances))
  end

  @doc """
  How a service with no instance passing is answered: `:nxdomain` (the
  default, `errNameNotFound`) or `:nodata`, NOERROR with no records
  (`errNoData`, what Consul answers when the instances give no record).
  """
  @spec empty_answer(t(), :nxdomain | :nodata) :: :ok
  def empty_answer(%__MODULE__{state: state}, how) when how in [:nxdomain, :nodata] do
    Agent.update(state, &Map.put(&1, {:empty, :answer}, how))
  end

  @doc """
  What the agent's recursors (`dns_config.recursors`) do from now on: `:none`
  (none configured), `:failing` (configured, none answering), or a map of
  host names to addresses, which they answer.
  """
  @spec recursors(t(), :none | :failing | %{String.t() => :inet.ip_address()}) :: :ok
  def recursors(%__MODULE__{state: state}, recursors) do
    Agent.update(state, &Map.put(&1, {:recursors}, recursors))
  end

  @doc """
  How TCP queries are answered from now on: `:answer` (the default) or
  `:servfail`, a TCP side that fails while UDP works.
  """
  @spec tcp(t(), :answer | :servfail) :: :ok
  def tcp(%__MODULE__{state: state}, how) when how in [:answer, :servfail] do
    Agent.update(state, &Map.put(&1, {:tcp}, how))
  end

  @doc "SRV queries answered so far, over both transports: one a poll, and a TCP confirmation."
  @spec srv_queries(t()) :: non_neg_integer()
  def srv_queries(%__MODULE__{state: state}), do: Agent.get(state, &Map.get(&1, {:srv}, 0))

  @doc "The fixture as a nameserver entry, `\"127.0.0.1:PORT\"`."
  @spec nameserver(t()) :: String.t()
  def nameserver(%__MODULE__{server: server}), do: RawDnsServer.nameserver(server)

  @doc "Queries received so far, per transport."
  @spec queries(t()) :: %{udp: non_neg_integer(), tcp: non_neg_integer()}
  def queries(%__MODULE__{server: server}), do: RawDnsServer.queries(server)

  ## Answering

  defp answer(query, transport, state, opts) do
    {:ok, msg} = :inet_dns.decode(query)
    [question] = :inet_dns.msg(msg, :qdlist)
    name = question |> :inet_dns.dns_query(:domain) |> to_string() |> String.downcase()
    type = :inet_dns.dns_query(question, :type)
    payload = edns_payload(msg)
    recursors = Agent.get(state, &Map.fetch!(&1, {:recursors}))
    opts = Keyword.put(opts, :recursors, recursors)

    cond do
      transport == :tcp and Agent.get(state, &Map.get(&1, {:tcp})) == :servfail ->
        reply(query, :servfail, [], [], payload, false)

      not String.ends_with?(name, ".consul") ->
        case recursed(recursors, name) do
          {:ok, ip}
          when (type == :a and tuple_size(ip) == 4) or (type == :aaaa and tuple_size(ip) == 8) ->
            reply(query, :noerror, [{name, type, ip}], [], payload, false)

          {:ok, _other_family} ->
            reply(query, :noerror, [], [], payload, false)

          {:error, rcode} ->
            reply(query, rcode, [], [], payload, false)
        end

      ip = addr_lookup(name, type) ->
        reply(query, :noerror, [{name, type, ip}], [], payload, false)

      true ->
        service_answer(query, name, type, payload, transport, state, opts)
    end
  end

  defp service_answer(query, name, type, payload, transport, state, opts) do
    if type == :srv, do: Agent.update(state, &Map.update(&1, {:srv}, 1, fn n -> n + 1 end))

    instances =
      case service_of(name) do
        nil -> []
        service -> state |> Agent.get(&Map.get(&1, service, [])) |> healthy(opts)
      end

    if instances == [] or type != :srv do
      rcode =
        if service_of(name) && Agent.get(state, &Map.get(&1, {:empty, :answer})) == :nodata,
          do: :noerror,
          else: :nxdomain

      reply(query, rcode, [], [], payload, false)
    else
      {answers, glue} =
        instances |> Enum.shuffle() |> Enum.map(&records(name, &1, opts)) |> Enum.unzip()

      {answers, glue, trimmed} = trim(query, answers, glue, transport, payload, opts)

      reply(
        query,
        :noerror,
        answers,
        List.flatten(glue),
        payload,
        trimmed and opts[:enable_truncate]
      )
    end
  end

  defp recursed(:none, _name), do: {:error, :refused}
  defp recursed(:failing, _name), do: {:error, :servfail}

  defp recursed(hosts, name) do
    case Map.fetch(hosts, name) do
      {:ok, ip} -> {:ok, ip}
      :error -> {:error, :nxdomain}
    end
  end

  # "7f000002.addr.dc1.consul" (A) -> {127, 0, 0, 2}; nil for anything else.
  defp addr_lookup(name, type) do
    with [hex, "addr" | _] <- String.split(name, "."),
         {:ok, bytes} <- Base.decode16(hex, case: :mixed),
         {^type, ip} <- address(bytes) do
      ip
    else
      _ -> nil
    end
  end

  defp address(<<a, b, c, d>>), do: {:a, {a, b, c, d}}

  defp address(<<_::binary-size(16)>> = bytes),
    do: {:aaaa, List.to_tuple(for(<<part::16 <- bytes>>, do: part))}

  defp address(_), do: nil

  # "likes.service.consul", "likes.service.dc1.consul",
  # "_likes._tcp.service.consul" -> "likes".
  defp service_of(name) do
    case String.split(name, ".") do
      ["_" <> service, "_tcp", "service" | _] -> service
      [service, "service" | _] -> service
      _ -> nil
    end
  end

  defp healthy(instances, opts) do
    allowed = if opts[:only_passing], do: [:passing], else: [:passing, :warning]

    for instance <- instances, status(instance) in allowed, do: instance
  end

  defp status({_ip, _port}), do: :passing
  defp status({_ip, _port, status}), do: status

  # {srv, glue}: glue is [] for an instance registered with a host name.
  defp records(name, instance, opts) do
    ip = elem(instance, 0)
    port = elem(instance, 1)

    if is_binary(ip) do
      glue =
        case recursed(opts[:recursors], ip) do
          {:ok, address} -> [{ip, if(tuple_size(address) == 4, do: :a, else: :aaaa), address}]
          {:error, _} -> []
        end

      {{name, :srv, {1, 1, port, to_charlist(ip)}}, glue}
    else
      dc = if opts[:addr_dc], do: ".#{opts[:dc]}", else: ""
      target = "#{hex(ip)}.addr#{dc}.consul"
      type = if tuple_size(ip) == 4, do: :a, else: :aaaa
      {{name, :srv, {1, 1, port, to_charlist(target)}}, [{target, type, ip}]}
    end
  end

  defp hex(ip), do: ip |> Tuple.to_list() |> Enum.map_join(&pad(&1, tuple_size(ip)))

  defp pad(part, 4),
    do: part |> Integer.to_string(16) |> String.pad_leading(2, "0") |> String.downcase()

  defp pad(part, 8),
    do: part |> Integer.to_string(16) |> String.pad_leading(4, "0") |> String.downcase()

  # trimUDPResponse (TCP answers are whole at these sizes).
  defp trim(_query, answers, glue, :tcp, _payload, _opts), do: {answers, glue, false}

  defp trim(query, answers, glue, :udp, payload, opts) do
    max_size = (payload || 512) |> max(512) |> min(@max_udp)
    limit = min(8, opts[:udp_answer_limit])
    all = length(answers)

    {answers, glue} =
      if max_size == 512 and length(answers) > limit,
        do: {Enum.take(answers, limit), Enum.take(glue, limit)},
        else: {answers, glue}

    fits = fn n ->
      size(query, Enum.take(answers, n), List.flatten(Enum.take(glue, n)), payload) <=
        max_size - 8
    end

    kept = if fits.(length(answers)), do: length(answers), else: largest(1, length(answers), fits)
    {Enum.take(answers, kept), Enum.take(glue, kept), kept < all}
  end

  # The largest n in lo..hi with fits.(n), at least 1 (Consul sends one
  # record even if it does not fit).
  defp largest(lo, hi, fits) when lo >= hi, do: if(fits.(lo) or lo == 1, do: lo, else: lo - 1)

  defp largest(lo, hi, fits) do
    mid = div(lo + hi + 1, 2)
    if fits.(mid), do: largest(mid, hi, fits), else: largest(lo, mid - 1, fits)
  end

  defp size(query, answers, glue, payload),
    do: byte_size(reply(query, :noerror, answers, glue, payload, false))

  defp reply(query, rcode, answers, glue, payload, truncated) do
    {:ok, msg} = :inet_dns.decode(query)
    header = :inet_dns.msg(msg, :header)

    header =
      :inet_dns.make_header(header,
        qr: true,
        aa: true,
        tc: truncated,
        rcode: Map.fetch!(@rcodes, rcode)
      )

    authority = if answers == [], do: [soa()], else: []

    bytes =
      :inet_dns.encode(
        :inet_dns.make_msg(msg,
          header: header,
          anlist: Enum.map(answers, &rr/1),
          nslist: authority,
          arlist: Enum.map(glue, &rr/1)
        )
      )

    if payload, do: with_opt(bytes), else: bytes
  end

  defp soa do
    data = {~c"ns.consul", ~c"hostmaster.consul", 1, 3600, 600, 86_400, 0}
    :inet_dns.make_rr(domain: ~c"consul", type: :soa, class: :in, ttl: 0, data: data)
  end

  defp rr({name, type, data}),
    do: :inet_dns.make_rr(domain: to_charlist(name), type: type, class: :in, ttl: 0, data: data)

  # An OPT record (payload 4096) appended and counted by hand: its record's
  # fields differ across OTP releases.
  defp with_opt(<<header::binary-size(10), arcount::16, rest::binary>>),
    do: <<header::binary, arcount + 1::16, rest::binary, 0, 41::16, 4096::16, 0::32, 0::16>>

  # The payload size the query's OPT record advertises, or nil without one.
  defp edns_payload(msg) do
    Enum.find_value(:inet_dns.msg(msg, :arlist), fn rr ->
      if :inet_dns.rr(rr, :type) == :opt, do: :inet_dns.rr(rr, :udp_payload_size)
    end)
  end
end

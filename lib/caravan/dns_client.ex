defmodule Caravan.DnsClient do
  @moduledoc """
  Who serves `likes-dist.service.consul`? The DNS client behaviour, and the
  default client: a NIF that sends the queries on a tokio runtime of
  Caravan's own, with hickory's message codec (see "How a lookup runs").

  The module is both: `dns_client: Caravan.DnsClient` in a strategy's
  configuration uses it as the client. `Caravan.DnsClient.InetRes` is the
  same client over OTP's `:inet_res`.

  ## Results

  `lookup/2` tells "no instances" from "DNS is broken":

    * `{:ok, targets}`: the answer, shaped (see below). NXDOMAIN and an
      answer without SRV records are `{:ok, []}`: the service has no
      instances.
    * `{:error, {reason, message}}`: the lookup failed, and says nothing
      about the service's members. A strategy must keep its current members
      on an error. `reason` is one of `t:reason/0`; `message` is readable
      text naming the query, the nameservers and the likely fix, for logs.

  `answer/2` returns the same targets with what is known of their
  completeness, `{:ok, %{targets: targets, complete: boolean}}`. `complete`
  is `true` when the targets are every instance the server has: the answer
  came over TCP, or over UDP with room left below the 4,096 bytes the query
  advertises for two more of its largest records (an SRV record with its
  target's ADDITIONAL records, such as Consul's node-meta TXT) and at least
  512 bytes, and none was dropped beyond `:max_records`.
  Consul trims UDP answers to the advertised size without setting TC, so a
  UDP answer near it may lack instances that are alive: an instance missing
  from an answer that is not `complete` is no evidence that it left.

  Each target is a map:

      %{port: 4001, host: "0a000105.addr.dc1.consul", priority: 1, weight: 1,
        addresses: [{10, 0, 1, 5}], unresolved: false}

  Targets are shaped in Rust (`caravan_core::dns::answer`) before they
  arrive:

    * `host` is lowercase, without its trailing dot, and always an RFC 1123
      hostname. A record whose target is not one (or whose port is 0) is
      dropped, counted and logged as a warning, never returned: node names
      are atoms, built from these hosts.
    * the order is fixed: priority (lowest first), weight (highest first),
      host, port. A host and port listed twice appear once.
    * `addresses` holds the A/AAAA records the server sent in the ADDITIONAL
      section for that host, plus the address encoded in a Consul
      `<hex>.addr.<dc>.consul` name; with `resolve_addresses: true`, targets
      still without one are looked up (A and AAAA). Sorted, IPv4 first.
    * `unresolved` is `true` when those address lookups failed (SERVFAIL,
      REFUSED, a timeout: not NXDOMAIN or "no records") and found no address.
      The target may well have one: it is neither a usable peer nor evidence
      that the instance is gone. The lookup itself still succeeds, and a
      warning is logged with the first failure.
    * at most `:max_records` targets are returned; a warning says how many
      more there were.

  ## Options

  See `Caravan.DnsClient.Options` for the table of options and defaults
  (`:nameservers`, `:timeout`, `:attempts`, `:transport`,
  `:resolve_addresses`, `:max_records`), which may also be set with
  `config :caravan, :dns`. Invalid options raise `ArgumentError`.

  ## How a lookup runs

  The NIF starts the lookup and returns a handle at once; no scheduler
  (dirty or not) is held while it runs. The answer arrives as a message
  `{ref, result}` sent from Caravan's runtime thread, exactly once per call,
  even when the lookup panics. The calling process waits for it in a
  `receive`, so it is descheduled like any process waiting for a message.
  The timeout is enforced in Rust; the `receive` allows one more second for
  a busy VM, then cancels the lookup, so no answer arrives later.

  A caller that dies mid-lookup lets go of the handle, and that cancels the
  lookup at once: its sockets close and its turn goes to the next lookup.
  At most 64 lookups to the same nameservers run at once (the rest wait,
  within their timeout); lookups to other nameservers have turns of their
  own. Answers are never cached.

  The guide [Discovery and the strategy](discovery.md#the-dns-client)
  shows it at work.
  """

  require Logger

  alias Caravan.DnsClient.Options

  @typedoc "One peer from an SRV answer."
  @type target :: %{
          port: :inet.port_number(),
          host: String.t(),
          priority: non_neg_integer(),
          weight: non_neg_integer(),
          addresses: [:inet.ip_address()],
          unresolved: boolean()
        }

  @typedoc "An answer's targets, and whether they are every instance (see the moduledoc)."
  @type answer :: %{targets: [target()], complete: boolean()}

  @typedoc """
  Why a lookup failed:

    * `:timeout` - no usable answer within `:timeout` (all attempts);
    * `:refused` - the nameserver answered REFUSED (it does not serve the name);
    * `:unreachable` - the nameserver could not be reached (connection refused, no route);
    * `:servfail` - the nameserver answered SERVFAIL;
    * `:server_error` - the nameserver answered another error code (FORMERR, NOTIMP...);
    * `:malformed` - the answer could not be decoded, or stayed truncated over TCP;
    * `:no_nameservers` - `:system` was asked and `/etc/resolv.conf` names none;
    * `:internal` - the lookup ended without an answer inside Caravan (a bug).
  """
  @type reason ::
          :timeout
          | :refused
          | :unreachable
          | :servfail
          | :server_error
          | :malformed
          | :no_nameservers
          | :internal

  @typedoc "A failed lookup: the reason, and a message for people."
  @type error :: {reason(), String.t()}

  @doc """
  The peers serving `query`, as `{port, host}` pairs: the original
  Caravan contract.

  On failure it logs a warning and returns `[]`. That cannot be told from a
  service without instances, so a strategy should use `lookup/2`.
  """
  @callback get_nodes(query :: String.t()) :: [{:inet.port_number(), String.t()}]

  @doc """
  `c:get_nodes/1` with options: the original library's 0.6 contract. The
  strategy calls it as 0.6 did: `get_nodes(query, [])` when `:nameservers`
  is not set (or `[]`: the system resolver), else
  `get_nodes(query, nameservers: [{ip_tuple, port}])`.
  """
  @callback get_nodes(query :: String.t(), opts :: keyword()) ::
              [{:inet.port_number(), String.t()}]

  @doc """
  Looks up the SRV records of `query`, shaped as described in the module
  documentation.
  """
  @callback lookup(query :: String.t(), opts :: [Options.option()]) ::
              {:ok, [target()]} | {:error, error()}

  @doc """
  Looks up `query` as `c:lookup/2` does, saying whether the targets are
  every instance (see the module documentation). Optional: a client without
  it says nothing about completeness.
  """
  @callback answer(query :: String.t(), opts :: [Options.option()]) ::
              {:ok, answer()} | {:error, error()}

  # Every callback is optional, so a client written for any version of the
  # original (get_nodes/1 or get_nodes/2 only) compiles without warnings;
  # Caravan.Cluster.Config checks at start that a client has one of them.
  @optional_callbacks answer: 2, lookup: 2, get_nodes: 1, get_nodes: 2

  # A module cannot declare itself as its own behaviour (the callbacks do not
  # exist yet while it compiles), so the default client's functions are
  # checked against the callbacks by the tests instead of by @impl.

  # How long the receive waits beyond :timeout. Rust enforces the timeout;
  # this only covers a VM too busy to deliver the answer on time.
  @grace_ms 1000

  @doc """
  The peers serving `query` as `[{port, host}]`, in the order of `lookup/2`.

  Uses the options of `config :caravan, :dns`. On failure, logs a warning
  with the reason and returns `[]`. For example, with
  `config :caravan, :dns, nameservers: ["127.0.0.1:8600"]`:

      Caravan.DnsClient.get_nodes("likes-dist.service.consul")
      #=> [{24567, "0a000105.addr.dc1.consul"}, {31002, "0a000106.addr.dc1.consul"},
      #=>  {4370, "worker-3.node.dc1.consul"}]
  """
  @spec get_nodes(String.t()) :: [{:inet.port_number(), String.t()}]
  def get_nodes(query), do: nodes(__MODULE__, query, [])

  @doc """
  `get_nodes/1` with lookup options (`Caravan.DnsClient.Options`): the
  original 0.6 API, `get_nodes(query, nameservers: [{{10, 0, 183, 34}, 8700}])`.
  A list of nameservers alone is taken as `nameservers:`, in any form
  (`[{"10.0.183.34", "8700"}]`, `["127.0.0.1:8600"]`...); `[]` is the
  defaults, as for `get_nodes/1` (`config :caravan, :dns`, else the system
  resolver).

      Caravan.DnsClient.get_nodes("likes-dist.service.consul", nameservers: [{"127.0.0.1", "8600"}])
      #=> [{24567, "0a000105.addr.dc1.consul"}, {31002, "0a000106.addr.dc1.consul"}]
  """
  @spec get_nodes(String.t(), [Options.option()] | [Options.nameserver()]) ::
          [{:inet.port_number(), String.t()}]
  def get_nodes(query, opts), do: nodes(__MODULE__, query, opts)

  @doc """
  Looks up the SRV records of `query` (such as `"likes-dist.service.consul"`
  or `"_likes._tcp.service.consul"`; always sent fully qualified).

  Returns `{:ok, targets}` (`{:ok, []}` for NXDOMAIN or no records) or
  `{:error, {reason, message}}`. Raises `ArgumentError` for a query that is
  not a domain name and for invalid options.

      Caravan.DnsClient.lookup("likes-dist.service.consul", nameservers: ["127.0.0.1:8600"])
      #=> {:ok,
      #=>  [%{port: 24567, host: "0a000105.addr.dc1.consul", priority: 1, weight: 1,
      #=>     addresses: [{10, 0, 1, 5}], unresolved: false},
      #=>   ...]}

      Caravan.DnsClient.lookup("likes-dist.service.consul",
        nameservers: ["127.0.0.1:8601"], timeout: 1000)
      #=> {:error,
      #=>  {:timeout,
      #=>   "no answer for likes-dist.service.consul SRV from 127.0.0.1:8601 (udp with tcp fallback) within 1000 ms (2 attempt(s)); check that the nameserver is up and reachable, or raise :timeout"}}
  """
  @spec lookup(String.t(), [Options.option()]) :: {:ok, [target()]} | {:error, error()}
  def lookup(query, opts \\ []), do: targets(answer(query, opts))

  @doc """
  Looks up `query` as `lookup/2` does, with the answer's completeness:
  `{:ok, %{targets: targets, complete: boolean}}` (see the module
  documentation).

      Caravan.DnsClient.answer("likes-dist.service.consul", nameservers: ["127.0.0.1:8600"])
      #=> {:ok, %{complete: true, targets: [%{port: 24567, ...}, ...]}}
  """
  @spec answer(String.t(), [Options.option()]) :: {:ok, answer()} | {:error, error()}
  def answer(query, opts \\ [])

  def answer(query, opts) when is_binary(query) do
    options = Options.validate!(opts)
    ref = make_ref()

    case Caravan.Native.dns_lookup(self(), ref, query, options) do
      {:ok, handle} -> await(ref, handle, query, options)
      {:error, :bad_option, message} -> raise ArgumentError, message
      {:error, reason, message} -> {:error, {reason, message}}
    end
  end

  def answer(query, _opts), do: Options.not_a_query!(query)

  @doc false
  # lookup/2 from answer/2, for both clients.
  @spec targets({:ok, answer()} | {:error, error()}) :: {:ok, [target()]} | {:error, error()}
  def targets({:ok, %{targets: targets}}), do: {:ok, targets}
  def targets(error), do: error

  defp await(ref, handle, query, %{timeout: timeout}) do
    result =
      receive do
        {^ref, {:ok, targets, stats}} ->
          warn_about_dropped(query, stats)
          {:ok, %{targets: targets, complete: stats.complete}}

        {^ref, {:error, reason, message}} ->
          {:error, {reason, message}}
      after
        timeout + @grace_ms -> :late
      end

    # Always reached, so the handle stays alive through the receive: were it
    # garbage while this process waits, collecting it would cancel the
    # lookup. Once cancelled, its answer is either here already or never sent.
    :ok = Caravan.Native.dns_cancel(handle)

    if result == :late do
      receive do
        {^ref, _late} -> :ok
      after
        0 -> :ok
      end

      {:error,
       {:timeout,
        "no answer for #{query} SRV within #{timeout} ms (plus #{@grace_ms} ms for a busy VM)"}}
    else
      result
    end
  end

  @doc false
  # Shared by the clients: logs what shaping left out.
  @spec warn_about_dropped(String.t(), map()) :: :ok
  def warn_about_dropped(query, %{rejected: rejected, over_limit: over} = stats) do
    if stats.unresolved > 0 do
      Logger.warning(
        "Caravan.DnsClient: the addresses of #{stats.unresolved} SRV target(s) of #{query} " <>
          "could not be looked up (first: #{stats.unresolved_example}); they are kept " <>
          "as unresolved, neither joined nor taken as gone"
      )
    end

    if rejected > 0 do
      Logger.warning(
        "Caravan.DnsClient: ignored #{rejected} SRV record(s) of #{query} whose target is " <>
          "not an RFC 1123 hostname or whose port is 0 (first: #{stats.rejected_example}); " <>
          "node names are built only from valid hostnames"
      )
    end

    if over > 0 do
      Logger.warning(
        "Caravan.DnsClient: #{query} has #{over} SRV record(s) beyond :max_records; " <>
          "they were dropped. Raise :max_records if the service really has that many instances"
      )
    end

    :ok
  end

  @doc false
  # get_nodes/1 and get_nodes/2 for any client module.
  @spec nodes(module(), String.t(), [Options.option()] | [Options.nameserver()]) ::
          [{:inet.port_number(), String.t()}]
  def nodes(client, query, opts) do
    opts = if Keyword.keyword?(opts), do: opts, else: [nameservers: opts]

    case client.lookup(query, opts) do
      {:ok, targets} ->
        Enum.map(targets, &{&1.port, &1.host})

      {:error, {reason, message}} ->
        Logger.warning("#{inspect(client)}: DNS lookup failed (#{reason}): #{message}")
        []
    end
  end
end

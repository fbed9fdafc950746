defmodule Caravan.Cluster.Config do
  @moduledoc """
  The options of `Caravan.Cluster.DnsStrategy`, validated once at start.

  `new/1` takes what libcluster hands a strategy (a `%Cluster.Strategy.State{}`
  or any map with its keys: `topology`, `connect`, `disconnect`, `list_nodes`
  and `config`), or, for use without libcluster, one flat keyword list holding
  both those keys and the options below.

  ## Options

    * `:query` (required) - the SRV name to poll, such as
      `"likes-service-dist.service.consul"`. `:consul_service` is accepted as
      an alias (the original library's documented name).
    * `:node_sname` (required) - the first part of every peer's node name:
      peers are named `<node_sname>-<port>@<host>`.
    * `:poll_interval` - milliseconds between polls. Default `5000`.
    * `:dns_client` - the module that answers the query: any module
      implementing `Caravan.DnsClient` (`lookup/2`), or a legacy module with
      only `get_nodes/1`. Default `Caravan.DnsClient`.
    * `:nameservers`, `:timeout`, `:transport` - passed to the DNS client's
      `answer/2` or `lookup/2` when given; the client's own defaults apply
      otherwise (see `Caravan.DnsClient.Options`). Ignored for legacy
      clients. Checked at start by the rules every lookup applies, whatever
      the client. A poll whose lookup (its TCP confirmation included,
      which gets what is left of `:timeout`) has not answered within
      `:timeout` plus one second is abandoned and counts as failed, whatever
      the client.
    * `:node_host` - `:target` (default) names peers after the SRV target,
      `<node_sname>-<port>@<target>`, as the original library did. `:address`
      names them after the target's IP address, `<node_sname>-<port>@10.0.1.5`
      (IPv6 formatted as `:inet.ntoa/1` does), for nodes started with
      `-name app-<port>@<ip>`, as Nomad jobs usually are.
    * `:disconnect_after` - how many consecutive successful polls a node
      found earlier must be missing before it is disconnected. A failed
      lookup never counts. Default `3`; `:never` disables pruning.
    * `:connect_timeout` - milliseconds one connect attempt may take before
      it is abandoned, so that a stalled peer delays nobody. Default `5000`.
    * `:connect_concurrency` - connect attempts in flight at once. Default `16`.
    * `:max_backoff` - longest wait, in milliseconds, before retrying a peer
      whose connects keep failing. After its `n`th failure in a row a peer
      waits `poll_interval * (2^(n-1) - 1)` ms, at most `:max_backoff`, and is
      tried at the first poll after that. Default: `:poll_interval`, so a
      failing peer is tried every one or two polls (its wait and the poll
      ticks are both about `poll_interval` long, so which poll it clears
      varies).
    * `:max_nodes` - most peers taken from one answer. Default `1024`.
    * `:max_new_names` - most new node-name atoms one poll may create; names
      past it wait for later polls, so one burst of forged records cannot
      spend the whole `:max_node_names` budget. Default `256`.
    * `:max_node_names` - lifetime cap, per topology, on the node-name atoms
      this strategy creates (atoms are never garbage-collected); names that
      already exist as atoms never count. At 80% of it a warning is logged
      and `[:caravan, :node_names, :near_limit]` is emitted; past it, new
      names are refused (peers already named keep working), each refusal
      logged as an error with `[:caravan, :node_names, :refused]`. Raise it,
      or the VM's `+t` atom limit, before it is reached. Default: 1% of the
      VM's atom limit (`:erlang.system_info(:atom_limit)`), at least 1,000:
      10,485 with the default limit.
    * `:topology` - the topology name, for logs and telemetry. Set by
      libcluster; default `:caravan` when used alone.
    * `:connect`, `:disconnect`, `:list_nodes` - `{module, function, args}`
      used as libcluster does (the node is appended to `args`). Defaults:
      `{:net_kernel, :connect_node, []}`, `{:erlang, :disconnect_node, []}`,
      `{:erlang, :nodes, [:connected]}`.

  Invalid values raise an `ArgumentError` naming the key, the value and what
  is expected; a missing `:query` or `:node_sname` raises a `KeyError`.
  """

  @typedoc "The validated options. Fields are documented in the moduledoc."
  @type t :: %__MODULE__{
          topology: atom(),
          query: String.t(),
          dns_client: module(),
          node_sname: String.t(),
          connect: mfa_tuple(),
          disconnect: mfa_tuple(),
          list_nodes: mfa_tuple(),
          poll_interval: pos_integer(),
          dns_opts: keyword(),
          dns_timeout: pos_integer(),
          lookup_deadline: pos_integer(),
          node_host: :target | :address,
          disconnect_after: pos_integer() | :never,
          connect_timeout: pos_integer(),
          connect_concurrency: pos_integer(),
          max_backoff: non_neg_integer(),
          max_nodes: pos_integer(),
          max_node_names: pos_integer(),
          max_new_names: pos_integer(),
          meta: term()
        }

  @typedoc "A `{module, function, args}` tuple; the node is appended to `args`."
  @type mfa_tuple :: {module(), atom(), [term()]}

  defstruct topology: :caravan,
            query: nil,
            dns_client: Caravan.DnsClient,
            node_sname: nil,
            connect: {:net_kernel, :connect_node, []},
            disconnect: {:erlang, :disconnect_node, []},
            list_nodes: {:erlang, :nodes, [:connected]},
            poll_interval: 5_000,
            dns_opts: [],
            dns_timeout: 5_000,
            lookup_deadline: 6_000,
            node_host: :target,
            disconnect_after: 3,
            connect_timeout: 5_000,
            connect_concurrency: 16,
            max_backoff: nil,
            max_nodes: 1024,
            max_node_names: nil,
            max_new_names: 256,
            meta: nil

  @state_keys [:topology, :connect, :disconnect, :list_nodes, :meta]
  @dns_keys [:nameservers, :timeout, :transport]
  @config_keys [
                 :query,
                 :consul_service,
                 :node_sname,
                 :poll_interval,
                 :dns_client,
                 :node_host,
                 :disconnect_after,
                 :connect_timeout,
                 :connect_concurrency,
                 :max_backoff,
                 :max_nodes,
                 :max_node_names,
                 :max_new_names
               ] ++ @dns_keys

  @doc """
  Builds a validated config from a libcluster state (struct or map) or from a
  flat keyword list. See the moduledoc for the options.

  ## Examples

      iex> config = Caravan.Cluster.Config.new(query: "likes-dist.service.consul", node_sname: "likes")
      iex> {config.poll_interval, config.node_host, config.disconnect_after}
      {5000, :target, 3}
  """
  @spec new(map() | keyword()) :: t()
  def new(%{config: config} = state) when is_list(config) do
    state_opts =
      for key <- @state_keys, value = Map.get(state, key), value != nil, do: {key, value}

    build(state_opts, config)
  end

  def new(opts) when is_list(opts) do
    unless Keyword.keyword?(opts) do
      raise ArgumentError,
            "expected Caravan.Cluster.Config options as a keyword list, got: #{inspect(opts)}"
    end

    {state_opts, config} = Keyword.split(opts, @state_keys)
    build(state_opts, config)
  end

  def new(other) do
    raise ArgumentError,
          "expected a %Cluster.Strategy.State{}, a map with its keys (:topology, :connect, " <>
            ":disconnect, :list_nodes, :config) or a keyword list, got: #{inspect(other)}"
  end

  defp build(state_opts, config) do
    unless Keyword.keyword?(config) do
      raise ArgumentError,
            "expected the strategy's :config to be a keyword list, got: #{inspect(config)}"
    end

    case Keyword.keys(config) -- @config_keys do
      [] ->
        :ok

      unknown ->
        raise ArgumentError,
              "unknown Caravan.Cluster.DnsStrategy option(s) #{inspect(unknown)}; " <>
                "known options are #{inspect(@config_keys)}"
    end

    config = alias_consul_service(config)
    defaults = %__MODULE__{}
    {dns_opts, dns_timeout} = dns_opts!(config)

    poll_interval =
      fetch(
        config,
        :poll_interval,
        defaults.poll_interval,
        &pos_integer?/1,
        "a positive integer (milliseconds)"
      )

    %__MODULE__{
      topology: fetch(state_opts, :topology, :caravan, &is_atom/1, "an atom"),
      connect:
        fetch(state_opts, :connect, defaults.connect, &mfa?/1, "a {module, function, args} tuple"),
      disconnect:
        fetch(
          state_opts,
          :disconnect,
          defaults.disconnect,
          &mfa?/1,
          "a {module, function, args} tuple"
        ),
      list_nodes:
        fetch(
          state_opts,
          :list_nodes,
          defaults.list_nodes,
          &mfa?/1,
          "a {module, function, args} tuple"
        ),
      meta: Keyword.get(state_opts, :meta),
      query:
        config
        |> fetch!(:query, &is_binary/1, "a string such as \"likes-dist.service.consul\"")
        |> query!(),
      node_sname: validate_sname!(Keyword.fetch!(config, :node_sname)),
      poll_interval: poll_interval,
      dns_client:
        fetch(
          config,
          :dns_client,
          defaults.dns_client,
          &dns_client?/1,
          "a module exporting lookup/2 or get_nodes/1"
        ),
      dns_opts: dns_opts,
      dns_timeout: dns_timeout,
      lookup_deadline: dns_timeout + 1_000,
      node_host:
        fetch(config, :node_host, :target, &(&1 in [:target, :address]), ":target or :address"),
      disconnect_after:
        fetch(
          config,
          :disconnect_after,
          3,
          &(pos_integer?(&1) or &1 == :never),
          "a positive integer or :never"
        ),
      connect_timeout:
        fetch(
          config,
          :connect_timeout,
          defaults.connect_timeout,
          &pos_integer?/1,
          "a positive integer (milliseconds)"
        ),
      connect_concurrency:
        fetch(
          config,
          :connect_concurrency,
          defaults.connect_concurrency,
          &pos_integer?/1,
          "a positive integer"
        ),
      max_backoff:
        fetch(
          config,
          :max_backoff,
          poll_interval,
          &non_neg_integer?/1,
          "a non-negative integer (milliseconds)"
        ),
      max_nodes:
        fetch(config, :max_nodes, defaults.max_nodes, &pos_integer?/1, "a positive integer"),
      max_node_names:
        fetch(
          config,
          :max_node_names,
          max(1_000, div(:erlang.system_info(:atom_limit), 100)),
          &pos_integer?/1,
          "a positive integer"
        ),
      max_new_names:
        fetch(
          config,
          :max_new_names,
          defaults.max_new_names,
          &pos_integer?/1,
          "a positive integer"
        )
    }
  end

  defp alias_consul_service(config) do
    case {Keyword.fetch(config, :query), Keyword.fetch(config, :consul_service)} do
      {_, :error} ->
        config

      {:error, {:ok, service}} ->
        config |> Keyword.delete(:consul_service) |> Keyword.put(:query, service)

      {{:ok, query}, {:ok, service}} when query == service ->
        Keyword.delete(config, :consul_service)

      {{:ok, query}, {:ok, service}} ->
        raise ArgumentError,
              "both :query (#{inspect(query)}) and its alias :consul_service (#{inspect(service)}) " <>
                "are set and differ; set only :query"
    end
  end

  # The Rust rule (caravan_core::peer_name) is the one that builds names:
  # asking it here makes a bad :node_sname fail at start, not at every poll.
  defp validate_sname!(sname) when is_binary(sname) do
    case Caravan.Native.peer_name(sname, 4370, "h") do
      name when is_binary(name) -> sname
      {:error, _reason, message} -> raise ArgumentError, "invalid :node_sname: " <> message
    end
  end

  defp validate_sname!(sname) when is_atom(sname) and not is_nil(sname),
    do: validate_sname!(Atom.to_string(sname))

  defp validate_sname!(sname) do
    raise ArgumentError,
          "invalid :node_sname #{inspect(sname)}: expected a string such as \"likes-service\""
  end

  # The lookup's own checks (caravan_core's rules, with `config :caravan,
  # :dns` merged as a lookup merges it), so that a value a lookup would
  # reject fails here, at start, not at every poll.
  defp dns_opts!(config) do
    opts = for key <- @dns_keys, Keyword.has_key?(config, key), do: {key, config[key]}
    {opts, Caravan.DnsClient.Options.validate!(opts).timeout}
  end

  defp query!(query) do
    case Caravan.Native.dns_check_query(query) do
      {:ok, _normalized} -> query
      {:error, :bad_option, message} -> raise ArgumentError, "invalid :query: " <> message
    end
  end

  defp fetch!(opts, key, valid?, expected) do
    value = Keyword.fetch!(opts, key)
    check!(key, value, valid?, expected)
  end

  defp fetch(opts, key, default, valid?, expected) do
    case Keyword.fetch(opts, key) do
      {:ok, value} -> check!(key, value, valid?, expected)
      :error -> default
    end
  end

  defp check!(key, value, valid?, expected) do
    if valid?.(value) do
      value
    else
      raise ArgumentError, "invalid #{inspect(key)} #{inspect(value)}: expected #{expected}"
    end
  end

  defp pos_integer?(value), do: is_integer(value) and value > 0
  defp non_neg_integer?(value), do: is_integer(value) and value >= 0
  defp mfa?({m, f, a}) when is_atom(m) and is_atom(f) and is_list(a), do: true
  defp mfa?(_), do: false

  defp dns_client?(module) when is_atom(module) do
    Code.ensure_loaded?(module) and
      (function_exported?(module, :lookup, 2) or function_exported?(module, :get_nodes, 1))
  end

  defp dns_client?(_), do: false
end

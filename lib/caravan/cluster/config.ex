defmodule Caravan.Cluster.Config do
  # One table holds every option: {key, default, check, doc}, with :state
  # before the doc for the keys libcluster sets outside :config. It drives the
  # struct's defaults, the validation, the option list below and the "known
  # options" of an error, so each default lives in one place.
  @option_table [
    {:query, :required, :query,
     """
     the SRV name to poll, such as `"likes-service-dist.service.consul"`.
     `:consul_service` is accepted as an alias (the original library's name).
     Checked at start by the rules the lookup applies (RFC 1035/1123)\
     """},
    {:node_sname, :required, :sname,
     "the first part of every peer's node name: peers are named `<node_sname>-<port>@<host>`"},
    {:poll_interval, 5_000, :ms,
     """
     milliseconds between polls. The first runs at start; later ones at this
     node's own slot of the interval (`Caravan.Cluster.Schedule`)\
     """},
    {:dns_client, Caravan.DnsClient, :dns_client,
     """
     the module that answers the query: one implementing `Caravan.DnsClient`
     (`answer/2` or `lookup/2`), or one with only `get_nodes/1` (the
     original library's) or `get_nodes/2` (its 0.6 form, given the query and
     `:nameservers`)\
     """},
    {:nameservers, :client, :dns,
     """
     where the client sends its queries, in any form of
     `Caravan.DnsClient.Options` (`["127.0.0.1:8600"]`,
     `[{"10.0.183.34", "8700"}]`...). `:system` or `[]` is the system
     resolver (`/etc/resolv.conf`)\
     """},
    {:timeout, :client, :dns,
     """
     milliseconds a lookup may take. A poll whose lookup (a TCP confirmation
     included, which gets what is left of it) has not answered within
     `:timeout` plus one second is abandoned and counts as failed, whatever
     the client\
     """},
    {:transport, :client, :dns, "`:udp` or `:tcp`, as in `Caravan.DnsClient.Options`"},
    {:node_host, :target, {:one_of, [:target, :address]},
     """
     `:target` names peers after the SRV target,
     `<node_sname>-<port>@<target>`, as the original library did;
     `:address` after the target's IP address, `<node_sname>-<port>@10.0.1.5`
     (IPv6 as `:inet.ntoa/1` writes it), for nodes started with
     `--name app-<port>@<ip>`, as Nomad jobs usually are\
     """},
    {:disconnect_after, 3, :count_or_never,
     """
     how many consecutive successful answers that are evidence of absence a
     node found earlier must be missing from before it is disconnected (see
     `Caravan.Cluster.Membership`); `:never` disables pruning\
     """},
    {:connect_timeout, 5_000, :ms,
     "milliseconds one connect attempt may take before it is abandoned"},
    {:connect_concurrency, 16, :count, "connect attempts in flight at once"},
    {:max_backoff, {:same_as, :poll_interval}, :non_neg_ms,
     """
     longest wait, in milliseconds, before retrying a peer whose connects
     keep failing: after its `n`th failure in a row a peer waits
     `poll_interval * (2^(n-1) - 1)` ms, at most this, and is tried again
     at the first poll, or freed connect slot, after that (so, by default,
     its second attempt may follow at once, and later ones come every one
     or two polls)\
     """},
    {:max_nodes, 1024, :count, "most peers taken from one answer"},
    {:max_new_names, 256, :count,
     """
     most new node-name atoms one poll may create; the rest wait for later
     polls, so one burst of forged records cannot spend `:max_node_names`\
     """},
    {:max_node_names, :atom_limit, :count,
     """
     lifetime cap, per topology, on the node-name atoms this strategy
     creates (atoms are never freed); names that already exist never count.
     At 80% a warning is logged and `[:caravan, :node_names, :near_limit]`
     emitted; past it new names are refused (peers already named keep
     working), each refusal logged as an error with
     `[:caravan, :node_names, :refused]`\
     """},
    {:topology, :caravan, :atom, :state,
     """
     the topology's name, in logs (`[libcluster:<topology>]`), telemetry
     metadata, the node-name budget and the child id. Set by libcluster;
     give each standalone strategy its own\
     """},
    {:connect, {:net_kernel, :connect_node, []}, :mfa, :state,
     "`{module, function, args}` that connects a node (appended to `args`), as in libcluster"},
    {:disconnect, {:erlang, :disconnect_node, []}, :mfa, :state,
     "`{module, function, args}` that disconnects a node, as in libcluster"},
    {:list_nodes, {:erlang, :nodes, [:connected]}, :mfa, :state,
     "`{module, function, args}` that lists the connected nodes, as in libcluster"},
    {:meta, nil, :any, :state, "libcluster's `meta`, kept as given"}
  ]

  @options Enum.map(@option_table, fn
             {key, default, type, doc} ->
               [key: key, default: default, type: type, doc: doc]

             {key, default, type, :state, doc} ->
               [key: key, default: default, type: type, from: :state, doc: doc]
           end)

  @keys Enum.map(@options, & &1[:key])
  @state_keys for opt <- @options, opt[:from] == :state, do: opt[:key]
  @accepted_keys @keys ++ [:consul_service]
  @dns_keys for opt <- @options, opt[:type] == :dns, do: opt[:key]

  @default_docs %{
    required: "required",
    client: "the DNS client's (see `Caravan.DnsClient.Options`)",
    atom_limit:
      "1% of the VM's atom limit (`:erlang.system_info(:atom_limit)`), at least 1,000: 10,485 with the default limit"
  }

  option_docs =
    Enum.map_join(@options, "\n", fn opt ->
      default =
        case opt[:default] do
          {:same_as, key} -> "the value of `#{inspect(key)}`"
          value -> Map.get(@default_docs, value, "`#{inspect(value)}`")
        end

      doc = opt[:doc] |> String.trim() |> String.replace("\n", "\n    ")
      "  * `#{inspect(opt[:key])}` - #{doc}. Default: #{default}."
    end)

  @moduledoc """
  The options of `Caravan.Cluster.DnsStrategy`, validated once at start.

  `new/1` takes what libcluster hands a strategy (a `%Cluster.Strategy.State{}`
  or any map with its keys: `topology`, `connect`, `disconnect`, `list_nodes`,
  `meta` and `config`, the options below; libcluster 2 gave the same keys as
  a keyword list), or, for use without libcluster, one flat keyword list
  holding all of them.

  ## Options

  #{option_docs}

  A value that would fail later fails here: an unknown or repeated key, or
  an invalid value, raises an `ArgumentError` naming the key, the value and
  what is expected. A missing `:query` or `:node_sname` raises a `KeyError`.
  The DNS options are checked by the rules every lookup applies (with
  `config :caravan, :dns` merged in), whatever the client.

  The guide [Discovery and the strategy](discovery.md#options-caravanclusterconfig)
  has these options as a table.
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

  # Defaults that depend on something else (the VM, another option) are
  # filled in by new/1; a struct built by hand gets them from normalize/1.
  static_default = fn
    default when default in [:required, :client, :atom_limit] -> nil
    {:same_as, _} -> nil
    default -> default
  end

  defstruct (for opt <- @options, opt[:type] != :dns do
               {opt[:key], static_default.(opt[:default])}
             end) ++ [dns_opts: [], dns_timeout: 5_000, lookup_deadline: 6_000]

  @doc """
  Every option's key, default and doc, in the order of the moduledoc.
  """
  @spec options() :: [keyword()]
  def options, do: @options

  @doc """
  Builds a validated config from a libcluster state (struct or map) or from a
  flat keyword list. See the moduledoc for the options.

  ## Examples

      iex> config = Caravan.Cluster.Config.new(query: "likes-dist.service.consul", node_sname: "likes")
      iex> {config.poll_interval, config.node_host, config.disconnect_after}
      {5000, :target, 3}
  """
  @spec new(map() | keyword()) :: t()
  def new(%__MODULE__{} = config), do: normalize(config)

  def new(%{config: config} = state) when is_list(config) do
    keyword!(config, "the strategy's :config")

    misplaced = Enum.filter(Keyword.keys(config), &(&1 in @state_keys))

    if misplaced != [] do
      raise ArgumentError,
            "#{inspect(misplaced)} in the strategy's :config: libcluster sets these from the " <>
              "topology itself (its name, :connect, :disconnect, :list_nodes, :meta); move them out of :config"
    end

    state_opts = for {key, value} <- Map.take(state, @state_keys), value != nil, do: {key, value}

    build(state_opts ++ config)
  end

  def new(opts) when is_list(opts) do
    keyword!(opts, "Caravan.Cluster.Config options")

    # libcluster 2 started workers with the state as a keyword list.
    if Keyword.has_key?(opts, :config) do
      known!(opts, @state_keys ++ [:config])
      new(Map.new(opts))
    else
      build(opts)
    end
  end

  def new(other) do
    raise ArgumentError,
          "expected a %Cluster.Strategy.State{}, a map with its keys (:topology, :connect, " <>
            ":disconnect, :list_nodes, :config) or a keyword list, got: #{inspect(other)}"
  end

  @doc """
  Validates a `%Caravan.Cluster.Config{}` built by hand (the original
  library's tests build one as a struct literal), filling in the defaults
  `new/1` computes. Returns it as `new/1` would.
  """
  @spec normalize(t()) :: t()
  def normalize(%__MODULE__{} = config) do
    opts =
      for opt <- @options,
          opt[:type] != :dns,
          not is_nil(Map.fetch!(config, opt[:key])),
          do: {opt[:key], Map.fetch!(config, opt[:key])}

    build(opts ++ config.dns_opts)
  end

  defp keyword!(opts, what) do
    unless Keyword.keyword?(opts) do
      raise ArgumentError, "expected #{what} as a keyword list, got: #{inspect(opts)}"
    end
  end

  defp build(opts) do
    known!(opts, @accepted_keys)
    opts = alias_consul_service(opts)

    values =
      Enum.reduce(@options, %{}, fn opt, values ->
        Map.put(values, opt[:key], value!(opt, opts, values))
      end)

    {dns_values, values} = Map.split(values, @dns_keys)
    dns_opts = for key <- @dns_keys, Keyword.has_key?(opts, key), do: {key, dns_values[key]}
    # The lookup's own checks (caravan_core's rules, `config :caravan, :dns`
    # merged as a lookup merges it): a value a lookup would reject fails here.
    dns_timeout = Caravan.DnsClient.Options.validate!(dns_opts).timeout

    struct!(
      __MODULE__,
      Map.merge(values, %{
        dns_opts: dns_opts,
        dns_timeout: dns_timeout,
        lookup_deadline: dns_timeout + 1_000
      })
    )
  end

  defp known!(opts, accepted) do
    keys = Keyword.keys(opts)

    case Enum.reject(keys, &(&1 in accepted)) do
      [] ->
        :ok

      unknown ->
        raise ArgumentError,
              "unknown Caravan.Cluster.DnsStrategy option(s) #{inspect(Enum.uniq(unknown))}; " <>
                "known options are #{inspect(accepted)}"
    end

    case Enum.uniq(keys -- Enum.uniq(keys)) do
      [] ->
        :ok

      [key | _] ->
        raise ArgumentError,
              "option #{inspect(key)} is given more than once " <>
                "(#{opts |> Keyword.get_values(key) |> Enum.map_join(" and ", &inspect/1)}); give it once"
    end
  end

  defp value!(opt, opts, values) do
    key = opt[:key]

    case {Keyword.fetch(opts, key), opt[:default]} do
      {{:ok, value}, _} -> check!(key, value, opt[:type])
      {:error, :required} -> raise KeyError, key: key, term: opts
      {:error, :client} -> nil
      {:error, :atom_limit} -> max(1_000, div(:erlang.system_info(:atom_limit), 100))
      {:error, {:same_as, other}} -> Map.fetch!(values, other)
      {:error, default} -> default
    end
  end

  defp alias_consul_service(opts) do
    case {Keyword.fetch(opts, :query), Keyword.fetch(opts, :consul_service)} do
      {_, :error} ->
        opts

      {:error, {:ok, service}} ->
        opts |> Keyword.delete(:consul_service) |> Keyword.put(:query, service)

      {{:ok, query}, {:ok, service}} when query == service ->
        Keyword.delete(opts, :consul_service)

      {{:ok, query}, {:ok, service}} ->
        raise ArgumentError,
              "both :query (#{inspect(query)}) and its alias :consul_service (#{inspect(service)}) " <>
                "are set and differ; set only :query"
    end
  end

  # Each type: a check, then what the error says is expected.
  defp check!(key, value, type) do
    case check(type, value) do
      {:ok, value} -> value
      :ok -> value
      {:error, expected} -> invalid!(key, value, expected)
    end
  end

  defp check(:ms, value), do: pos_integer(value, "a positive integer (milliseconds)")

  defp check(:non_neg_ms, value) when is_integer(value) and value >= 0, do: :ok
  defp check(:non_neg_ms, _), do: {:error, "a non-negative integer (milliseconds)"}

  defp check(:count, value), do: pos_integer(value, "a positive integer")

  defp check(:count_or_never, :never), do: :ok
  defp check(:count_or_never, value), do: pos_integer(value, "a positive integer or :never")

  defp check({:one_of, values}, value) do
    if value in values,
      do: :ok,
      else: {:error, values |> Enum.map(&inspect/1) |> Enum.join(" or ")}
  end

  defp check(:atom, value) when is_atom(value) and value not in [nil, true, false], do: :ok
  defp check(:atom, _), do: {:error, "an atom"}

  # Only the shape, as libcluster (which checks the function when it calls
  # it): configs written for libcluster 2 name `:net_kernel.connect/1`,
  # which OTP 25 no longer exports, and must still start.
  defp check(:mfa, {m, f, a}) when is_atom(m) and is_atom(f) and is_list(a), do: :ok
  defp check(:mfa, _), do: {:error, "a {module, function, args} tuple"}

  defp check(:any, _), do: :ok
  # Checked together, by the lookup's rules (build/1).
  defp check(:dns, _), do: :ok

  defp check(:dns_client, module) do
    if is_atom(module) and Code.ensure_loaded?(module) and
         Enum.any?([answer: 2, lookup: 2, get_nodes: 1, get_nodes: 2], fn {f, a} ->
           function_exported?(module, f, a)
         end),
       do: :ok,
       else:
         {:error,
          "a module exporting answer/2, lookup/2, get_nodes/1 or get_nodes/2 (see Caravan.DnsClient)"}
  end

  # The Rust rules (caravan_core) are the ones the lookup and the names use:
  # asking them here makes a bad value fail at start, not at every poll.
  defp check(:query, query) when is_binary(query) do
    case Caravan.Native.dns_check_query(query) do
      {:ok, _normalized} -> :ok
      {:error, :bad_option, message} -> raise ArgumentError, "invalid :query: " <> message
    end
  end

  defp check(:query, _), do: {:error, "a string such as \"likes-dist.service.consul\""}

  defp check(:sname, sname) when is_atom(sname) and sname not in [nil, true, false],
    do: check(:sname, Atom.to_string(sname))

  defp check(:sname, sname) when is_binary(sname) do
    case check_sname(sname) do
      :ok -> {:ok, sname}
      {:error, message} -> raise ArgumentError, "invalid :node_sname: " <> message
    end
  end

  defp check(:sname, _), do: {:error, "a string such as \"likes-service\""}

  @doc false
  # The rule peers' names are built by (caravan_core::peer_name), for
  # :node_sname and `mix caravan.lookup --node-sname`.
  @spec check_sname(String.t()) :: :ok | {:error, String.t()}
  def check_sname(sname) do
    case Caravan.Native.peer_name(sname, 4370, "h") do
      name when is_binary(name) -> :ok
      {:error, _reason, message} -> {:error, message}
    end
  end

  defp pos_integer(value, _expected) when is_integer(value) and value > 0, do: :ok
  defp pos_integer(_value, expected), do: {:error, expected}

  defp invalid!(key, value, expected) do
    raise ArgumentError, "invalid #{inspect(key)} #{inspect(value)}: expected #{expected}"
  end
end

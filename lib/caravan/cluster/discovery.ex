defmodule Caravan.Cluster.Discovery do
  @moduledoc """
  One poll of DNS: where an answer becomes node names.

  It calls the strategy's `dns_client` in whichever form it has
  (`answer/2`, `lookup/2`, or the original library's `get_nodes/1` and
  `get_nodes/2`), confirms over TCP an answer that may have been trimmed,
  and names each peer through `Caravan.Cluster.NodeNames`: at most
  `max_nodes` per answer, `max_new_names` new atoms per poll and
  `max_node_names` per topology, peers this node's name mode cannot reach
  set aside before any atom is made.
  """

  alias Caravan.Cluster.{Config, Log, Membership, NodeNames}
  alias Caravan.DnsClient.Options

  @typedoc """
  One poll's result: the peers DNS names (this node left out), what the
  answer is evidence of (see `Caravan.Cluster.Membership`), how many
  targets it listed, how many a trimmed UDP answer carried when a TCP
  confirmation was needed (else `nil`), and the peers this node's name mode
  cannot reach (a count and an example).
  """
  @type result :: %{
          nodes: [node()],
          evidence: Membership.evidence(),
          targets: non_neg_integer(),
          trimmed: non_neg_integer() | nil,
          unreachable: %{count: non_neg_integer(), example: String.t() | nil}
        }

  @doc """
  Asks the config's client for the config's query, once, in the calling
  process, and names the peers. An answer that may have been trimmed and
  lacks a node of `known` is asked again over TCP, which is whole. With
  `tcp_first` the first question goes over TCP, and if TCP fails, over UDP
  within what is left of the timeout: joins still come from that answer,
  and, trimmed or not, it counts as evidence only if it is whole.
  """
  @spec discover(Config.t(), [node()], boolean()) :: {:ok, result()} | {:error, term()}
  def discover(config, known, tcp_first) do
    started = System.monotonic_time(:millisecond)
    left = fn -> config.dns_timeout - (System.monotonic_time(:millisecond) - started) end

    with {:ok, answer, known} <- first_lookup(config, known, tcp_first, left) do
      {found, trimmed} = config |> found(answer) |> confirm(config, known, left.())
      nodes = List.delete(found.nodes, Node.self())
      evidence = %{complete: found.complete, self_listed: nodes != found.nodes}

      {:ok,
       %{
         nodes: nodes,
         evidence: evidence,
         targets: found.targets,
         trimmed: trimmed,
         unreachable: found.unreachable
       }}
    end
  end

  # {:ok, answer, the known nodes a trimmed answer is confirmed against}: none
  # after a failed TCP question (TCP was just asked).
  defp first_lookup(config, known, false, _left) do
    with {:ok, answer} <- lookup(config, []), do: {:ok, answer, known}
  end

  defp first_lookup(config, known, true, left) do
    case lookup(config, transport: :tcp) do
      {:ok, answer} -> {:ok, answer, known}
      {:error, _} = error -> udp_after_tcp(config, left.(), error)
    end
  end

  defp udp_after_tcp(_config, left, error) when left <= 0, do: error

  defp udp_after_tcp(config, left, error) do
    case lookup(config, timeout: left) do
      {:ok, answer} -> {:ok, answer, []}
      {:error, _} -> error
    end
  end

  # Unresolved targets are set aside: no evidence either way.
  defp found(config, answer) do
    {unresolved, records} = Enum.split_with(answer.targets, &match?(%{unresolved: true}, &1))
    {nodes, unreachable} = to_nodes(records, config)

    %{
      nodes: nodes,
      unreachable: unreachable,
      complete: answer.complete and unresolved == [],
      # Whole as the server sent it (TCP would add nothing).
      whole: answer.complete,
      targets: length(answer.targets)
    }
  end

  # Within what is left of the poll's `timeout` (`left` ms).
  defp confirm(%{whole: true} = found, _config, _known, _left), do: {found, nil}

  defp confirm(found, config, known, left) do
    listed = MapSet.new(found.nodes)

    with true <- left > 0,
         true <- Enum.any?(known, &(not MapSet.member?(listed, &1))),
         {:ok, %{complete: true} = whole} <- lookup(config, transport: :tcp, timeout: left) do
      {found(config, whole), found.targets}
    else
      _ -> {found, nil}
    end
  end

  ## Lookups

  # {:ok, %{targets: records, complete: boolean}}. A client without
  # answer/2 says nothing of completeness: its answers are taken as complete,
  # as before it was asked (it would otherwise never prune).
  defp lookup(%Config{dns_client: client, query: query} = config, extra) do
    Code.ensure_loaded(client)
    opts = config.dns_opts |> Keyword.put(:resolve_addresses, config.node_host == :address)
    opts = Keyword.merge(opts, extra)

    cond do
      function_exported?(client, :answer, 2) ->
        case client.answer(query, opts) do
          {:ok, %{targets: records, complete: complete} = answer}
          when is_list(records) and is_boolean(complete) ->
            {:ok, answer}

          {:error, reason} ->
            {:error, reason}

          other ->
            {:error, {:bad_client_answer, other}}
        end

      function_exported?(client, :lookup, 2) ->
        case client.lookup(query, opts) do
          {:ok, records} when is_list(records) -> {:ok, %{targets: records, complete: true}}
          {:error, reason} -> {:error, reason}
          other -> {:error, {:bad_client_answer, other}}
        end

      function_exported?(client, :get_nodes, 2) ->
        legacy_answer(client.get_nodes(query, legacy_opts(config)))

      true ->
        legacy_answer(client.get_nodes(query))
    end
  end

  # As 0.6 called its clients: nameservers as {ip_tuple, port}, or nothing.
  defp legacy_opts(%Config{dns_opts: opts}) do
    case Options.validate!(Keyword.take(opts, [:nameservers])).nameservers do
      :system -> []
      nameservers -> [nameservers: nameservers]
    end
  end

  defp legacy_answer([]), do: {:error, :empty_answer_from_legacy_client}

  defp legacy_answer(records) when is_list(records),
    do: {:ok, %{targets: Enum.map(records, &legacy_record/1), complete: true}}

  defp legacy_answer(other), do: {:error, {:bad_client_answer, other}}

  defp legacy_record({port, host}) when is_list(host),
    do: legacy_record({port, List.to_string(host)})

  defp legacy_record({port, host}), do: %{port: port, host: host, addresses: []}
  defp legacy_record(other), do: %{port: nil, host: other, addresses: []}

  ## Names

  defp to_nodes(records, config) do
    {records, dropped} = Enum.split(records, config.max_nodes)

    if dropped != [] do
      Log.log(
        :warning,
        config,
        "DNS listed #{length(records) + length(dropped)} peers; only the first max_nodes (#{config.max_nodes}) are used"
      )
    end

    minted_before = NodeNames.minted(config.topology)
    {longnames, family} = {:net_kernel.longnames(), NodeNames.family()}
    initial = {[], %{refused: 0, deferred: 0, new: 0}, %{count: 0, example: nil}}

    {nodes, counts, unreachable} =
      Enum.reduce(records, initial, fn record, {nodes, counts, unreachable} ->
        with {:ok, name} <- NodeNames.name(record, config.node_sname, config.node_host),
             {:reachable, true, _} <-
               {:reachable, NodeNames.reachable?(name, longnames, family), name},
             {:ok, node} <- to_node(name, config, counts.new) do
          {[node | nodes], counts, unreachable}
        else
          {:new, node} ->
            {[node | nodes], %{counts | new: counts.new + 1}, unreachable}

          # Checked before an atom is made: OTP would refuse the name anyway.
          {:reachable, false, name} ->
            {nodes, counts, %{count: unreachable.count + 1, example: unreachable.example || name}}

          {:error, :budget_exhausted} ->
            {nodes, %{counts | refused: counts.refused + 1}, unreachable}

          {:error, :not_yet} ->
            {nodes, %{counts | deferred: counts.deferred + 1}, unreachable}

          {:error, message} ->
            Log.log(
              :warning,
              config,
              "ignoring DNS record #{inspect(record, limit: 10)}: #{message}"
            )

            {nodes, counts, unreachable}
        end
      end)

    report_names(config, minted_before, counts)
    {nodes |> Enum.reverse() |> Enum.uniq(), unreachable}
  end

  # An existing atom, or a new one while this poll may still create one.
  defp to_node(name, config, new_so_far) do
    case NodeNames.to_node(name, config.topology, config.max_node_names, false) do
      {:error, :not_yet} when new_so_far < config.max_new_names ->
        with {:ok, node} <- NodeNames.to_node(name, config.topology, config.max_node_names),
             do: {:new, node}

      other ->
        other
    end
  end

  defp report_names(config, minted_before, counts) do
    minted = NodeNames.minted(config.topology)
    budget = config.max_node_names
    near = div(budget * 4, 5)
    measurements = %{minted: minted, budget: budget}
    metadata = %{topology: config.topology}

    if minted_before < near and minted >= near do
      Log.log(
        :warning,
        config,
        "topology #{inspect(config.topology)} has created #{minted} node-name atoms, 80% of its " <>
          "max_node_names budget (#{budget}); past it new peers are refused. Atoms are never freed: " <>
          "if DNS is trustworthy, raise max_node_names"
      )

      Log.telemetry([:caravan, :node_names, :near_limit], measurements, metadata)
    end

    if counts.refused > 0 do
      Log.log(
        :error,
        config,
        "refused #{counts.refused} new node name(s): topology #{inspect(config.topology)} has already " <>
          "created #{minted} node-name atoms, its max_node_names budget (#{budget}). Atoms are " <>
          "never freed; if DNS is trustworthy, raise max_node_names"
      )

      Log.telemetry(
        [:caravan, :node_names, :refused],
        Map.put(measurements, :count, counts.refused),
        metadata
      )
    end

    if counts.deferred > 0 do
      Log.log(
        :warning,
        config,
        "#{counts.deferred} new node name(s) left for later polls: at most max_new_names " <>
          "(#{config.max_new_names}) are created per poll"
      )
    end
  end

  ## What a result says, for the strategy's logs

  @doc "The warning for peers this node's name mode cannot reach."
  @spec name_mode_warning(%{count: pos_integer(), example: String.t()}, Config.t()) ::
          String.t()
  def name_mode_warning(%{count: count, example: example}, config) do
    {mode, fix} =
      if :net_kernel.longnames() == true,
        do:
          {"long names (--name), which need a host with a dot or an IP address",
           "start the nodes with --sname, or use node_host: :address so that peers are " <>
             "named after their IP addresses"},
        else:
          {"short names (--sname), which refuse a host with a dot or an IPv4 address",
           "start the nodes with --name #{config.node_sname}-<port>@<host> (as Nomad " <>
             "jobs do with the allocation's IP), or answer with hosts without dots"}

    "#{count} peer(s) from DNS, such as #{inspect(example)}, cannot be reached: this node " <>
      "runs with #{mode}. They are skipped; #{fix}"
  end

  @doc """
  The line for an answer without targets: the nameservers asked, and the
  `mix caravan.lookup` command that asks them the same question.
  """
  @spec empty_answer_message(Config.t()) :: String.t()
  def empty_answer_message(config) do
    {asked, flags} =
      case Options.validate!(Keyword.take(config.dns_opts, [:nameservers])) do
        %{nameservers: :system} ->
          {"the system resolver, /etc/resolv.conf", ""}

        %{nameservers: servers} ->
          servers = Enum.map(servers, &nameserver_flag/1)
          {Enum.join(servers, ", "), Enum.map_join(servers, &" --nameserver #{&1}")}
      end

    "DNS lists no peers for #{inspect(config.query)} (asked #{asked}); check that the " <>
      "service is registered and healthy: mix caravan.lookup #{config.query}#{flags}"
  end

  defp nameserver_flag({{_, _, _, _} = ip, port}), do: "#{:inet.ntoa(ip)}:#{port}"
  defp nameserver_flag({ip, port}), do: "[#{:inet.ntoa(ip)}]:#{port}"

  @doc "What an answer's evidence means, for the debug line."
  @spec describe_evidence(Membership.evidence()) :: String.t()
  def describe_evidence(%{complete: false}),
    do: "not known to be complete: no node counts as missing"

  def describe_evidence(%{self_listed: true}), do: "complete"
  def describe_evidence(_), do: "complete; this node not listed"
end

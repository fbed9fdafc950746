defmodule Caravan.Cluster.DnsStrategy do
  @moduledoc """
  A libcluster strategy that forms a cluster from Consul DNS SRV records.

  Every `poll_interval` it asks the DNS client who serves `query` (for example
  `likes-service-dist.service.consul`), names each peer
  `<node_sname>-<port>@<host>` and connects to the new ones.

      config :libcluster,
        topologies: [
          caravan: [
            strategy: Caravan.Cluster.DnsStrategy,
            config: [
              query: "likes-service-dist.service.consul",
              node_sname: "profile-service",
              poll_interval: 5_000,
              dns_client: Caravan.DnsClient
            ]
          ]
        ]

  Without libcluster, start it in any supervision tree with flat options
  (libcluster's default connect, disconnect and list MFAs apply):

      children = [
        {Caravan.Cluster.DnsStrategy,
         query: "likes-service-dist.service.consul", node_sname: "likes"}
      ]

  The options are those of `Caravan.Cluster.Config`; a `:name` option
  registers the process. The child id is `{Caravan.Cluster.DnsStrategy,
  topology}`, so several strategies, each with its own `:topology`, can run
  in one supervisor.

  ## Behaviour

    * The first poll runs at start, then one every `poll_interval`, each node
      at its own slot of the interval (`Caravan.Cluster.Schedule`), so that a
      fleet restarted at once does not ask DNS at once. At most one
      lookup is in flight: a tick that finds one still running is skipped. A
      lookup that has not answered within `:timeout` plus a second (a TCP
      confirmation included: it gets what is left of `:timeout`) is killed,
      whatever the client, and the poll counts as failed.
    * Lookups and connect attempts run in processes of their own, so the
      strategy always answers (`:sys.get_state/1` included) while DNS hangs.
    * New peers are connected in parallel, at most `connect_concurrency` at
      once, each attempt abandoned after `connect_timeout`: a peer that
      accepts TCP and never completes the handshake delays nobody else.
      A peer whose attempts fail waits (see `Caravan.Cluster.Membership`)
      before the next; peers never tried go first, and retries rotate.
    * A node found earlier and missing from `disconnect_after` consecutive
      successful answers that are evidence of absence is disconnected (see
      `Caravan.Cluster.Membership`): a UDP answer that may have been trimmed
      (`Caravan.DnsClient.answer/2`) and lacks a known node is asked again
      over TCP, and polls then ask over TCP first until the service is
      smaller than what UDP carried; an answer with unresolved targets, or
      one that leaves out this node once it has been listed (an empty one,
      say), counts no misses. Joins come from any answer. A failed lookup,
      or an empty answer from a legacy client that cannot tell failure from
      emptiness, never disconnects anything, and nodes connected by other
      means are never touched. A client with only `lookup/2` has its
      answers taken as complete.
    * Node names are built in Rust from validated records only, at most
      `max_nodes` per answer, at most `max_new_names` new atoms per poll and
      `max_node_names` per topology over the VM's life, with a warning at
      80% (`Caravan.Cluster.NodeNames`).
    * Peers this node's name mode cannot reach (a host with a dot for
      `--sname`, one without for `--name`, unless it is an IP address) are
      skipped, with one warning naming the fix.
    * Logs are written as libcluster's `Cluster.Logger` writes them,
      `[libcluster:<topology>] ...`, with `topology` metadata: connects,
      disconnects and failures at info/warning, an answer without peers once
      at info when it comes. Debug lines ("found nodes ...") need
      `config :libcluster, debug: true` (or `config :caravan, debug: true`,
      the original's switch). When `:telemetry`
      is loaded (libcluster brings it), libcluster's own events are emitted:
      `[:libcluster, :connect_node, :ok | :error]` and
      `[:libcluster, :disconnect_node, :ok | :error]`; and Caravan's
      `[:caravan, :node_names, :near_limit | :refused]` (measurements
      `minted`, `budget`, and `count` of refused names).
  """

  use GenServer

  require Logger

  alias Caravan.Cluster.{Config, Membership, NodeNames, Schedule}

  # libcluster is optional: declare its behaviour only when it was compiled
  # first, and mark the two callbacks `@impl` only then.
  if Code.ensure_loaded?(Cluster.Strategy) do
    @behaviour Cluster.Strategy
    @strategy_impl Cluster.Strategy
  else
    @strategy_impl false
  end

  @doc """
  The child spec for both uses: `{#{inspect(__MODULE__)}, [state]}` as
  libcluster passes it, and `{#{inspect(__MODULE__)}, opts}` standalone.
  """
  @impl @strategy_impl
  @spec child_spec([map()] | keyword()) :: Supervisor.child_spec()
  def child_spec(args) do
    %{id: child_id(args), type: :worker, start: {__MODULE__, :start_link, [args]}}
  end

  @doc """
  Starts the strategy: `start_link([state])` is libcluster's form (a
  `%Cluster.Strategy.State{}` or a map with its keys); `start_link(opts)`
  takes flat `Caravan.Cluster.Config` options plus an optional `:name`.
  """
  @impl @strategy_impl
  @spec start_link([map()] | keyword()) :: GenServer.on_start()
  def start_link([%{} = state]), do: GenServer.start_link(__MODULE__, Config.new(state))

  def start_link(opts) when is_list(opts) do
    {gen_opts, opts} = Keyword.split(opts, [:name])
    GenServer.start_link(__MODULE__, Config.new(opts), gen_opts)
  end

  @doc """
  Asks DNS once, in the calling process, and connects the peers it names,
  as the original library's `find_nodes/1` did: this node left out, nodes
  already connected skipped, the others connected one after the other
  through `config.connect`, each logged and reported to telemetry as the
  strategy does.

  Returns `:ok`, or `{:error, [{node, result}]}` for the nodes whose connect
  returned something else than `true` (`false`, `:ignored`...), as
  libcluster's `Cluster.Strategy.connect_nodes/4` does; and
  `{:error, reason}` (not a list) when the lookup failed. A config built as
  a struct literal is validated first (`Caravan.Cluster.Config.normalize/1`).
  To look up without connecting, use `lookup_nodes/1`.
  """
  @spec find_nodes(Config.t()) :: :ok | {:error, [{node(), term()}]} | {:error, term()}
  def find_nodes(%Config{} = config) do
    config = Config.normalize(config)

    # A get_nodes client's [] is no nodes to the original, not a failure.
    with {:ok, nodes} <- legacy_empty(lookup_nodes(config)) do
      connected = MapSet.new(list_nodes(config))

      failed =
        nodes
        |> Enum.reject(&MapSet.member?(connected, &1))
        |> Enum.map(&{&1, connect_one(config, &1)})
        |> Enum.reject(&match?({_, true}, &1))

      if failed == [], do: :ok, else: {:error, failed}
    end
  end

  @doc """
  Asks DNS once, in the calling process, and returns the peers it names,
  this node excluded, connecting nothing.

  `{:error, reason}` when the lookup failed, and also when a legacy
  `get_nodes/1` or `get_nodes/2` client answered `[]`, since such a client
  cannot tell "no instances" from "DNS failed".
  """
  @spec lookup_nodes(Config.t()) :: {:ok, [node()]} | {:error, term()}
  def lookup_nodes(%Config{} = config) do
    with {:ok, %{nodes: nodes}} <- discover(Config.normalize(config), [], false), do: {:ok, nodes}
  end

  defp legacy_empty({:error, :empty_answer_from_legacy_client}), do: {:ok, []}
  defp legacy_empty(result), do: result

  defp connect_one(%Config{connect: {mod, fun, args}} = config, node) do
    started = System.monotonic_time()
    result = apply(mod, fun, args ++ [node])
    report_connect(config, node, result, System.monotonic_time() - started, "")
    result
  end

  # The peers DNS names (this node left out), and what the answer is
  # evidence of (see Caravan.Cluster.Membership). An answer that may have
  # been trimmed and lacks a node of `known` is asked again over TCP, which
  # is whole; `trimmed` then says how many targets UDP carried. With
  # `tcp_first` the first question goes over TCP.
  defp discover(config, known, tcp_first) do
    started = System.monotonic_time(:millisecond)

    with {:ok, answer} <- lookup(config, if(tcp_first, do: [transport: :tcp], else: [])) do
      left = config.dns_timeout - (System.monotonic_time(:millisecond) - started)
      {found, trimmed} = config |> found(answer) |> confirm(config, known, left)
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

  ## GenServer

  @impl GenServer
  def init(%Config{} = config) do
    Process.flag(:trap_exit, true)
    Logger.metadata(topology: config.topology)

    state = %{
      config: config,
      membership: Membership.new(),
      # How many targets a trimmed UDP answer carried, once one needed a TCP
      # confirmation: polls then ask over TCP first (one query, not two),
      # until the service is smaller than that again.
      udp_carries: nil,
      # Logged once each: names this node's name mode cannot reach, and an
      # empty answer (again only after a non-empty one).
      # This node's turn within the poll interval (Caravan.Cluster.Schedule).
      slot: Schedule.slot(Node.self(), []),
      warned_name_mode: false,
      empty_logged: false,
      lookup: nil,
      connecting: %{},
      # The peers of the last answer, for refill/1.
      found: []
    }

    {:ok, state, {:continue, :poll}}
  end

  @impl GenServer
  def handle_continue(:poll, state), do: {:noreply, poll(state)}

  @impl GenServer
  def handle_info(:poll, state), do: {:noreply, poll(state)}

  def handle_info({:lookup_done, pid, result}, %{lookup: pid} = state) do
    {:noreply, handle_lookup(result, %{state | lookup: nil})}
  end

  # A client that never returns: the poll fails, and the next one runs.
  def handle_info({:lookup_deadline, pid}, %{lookup: pid} = state) do
    Process.unlink(pid)
    Process.exit(pid, :kill)

    warn(
      state,
      "DNS lookup for #{inspect(state.config.query)} gave no answer within " <>
        "#{state.config.lookup_deadline} ms; abandoned, keeping every connected node"
    )

    {:noreply, %{state | lookup: nil}}
  end

  def handle_info({:connect_done, pid, node, result, duration}, state) do
    case Map.pop(state.connecting, pid) do
      {{^node, timer}, connecting} ->
        Process.cancel_timer(timer)

        {:noreply,
         state
         |> Map.put(:connecting, connecting)
         |> connected(node, result, duration)
         |> refill(node)}

      {nil, _} ->
        {:noreply, state}
    end
  end

  def handle_info({:connect_deadline, pid}, state) do
    case Map.pop(state.connecting, pid) do
      {{node, _timer}, connecting} ->
        Process.unlink(pid)
        Process.exit(pid, :kill)

        {:noreply,
         state
         |> Map.put(:connecting, connecting)
         |> connected(node, :timeout, nil)
         |> refill(node)}

      {nil, _} ->
        {:noreply, state}
    end
  end

  def handle_info({:EXIT, pid, reason}, %{lookup: pid} = state) when reason != :normal do
    warn(
      state,
      "DNS lookup for #{inspect(state.config.query)} crashed: #{Exception.format_exit(reason)}"
    )

    {:noreply, %{state | lookup: nil}}
  end

  def handle_info({:EXIT, pid, reason}, state) when reason != :normal do
    case Map.pop(state.connecting, pid) do
      {{node, timer}, connecting} ->
        Process.cancel_timer(timer)

        {:noreply,
         state
         |> Map.put(:connecting, connecting)
         |> connected(node, {:crash, reason}, nil)
         |> refill(node)}

      {nil, _} ->
        {:noreply, state}
    end
  end

  def handle_info(_other, state), do: {:noreply, state}

  ## Polling

  defp poll(%{lookup: nil, config: config} = state) do
    schedule_poll(state)
    parent = self()
    known = Membership.known(state.membership)
    tcp_first = state.udp_carries != nil

    pid =
      spawn_link(fn ->
        send(parent, {:lookup_done, self(), discover(config, known, tcp_first)})
      end)

    Process.send_after(self(), {:lookup_deadline, pid}, config.lookup_deadline)
    %{state | lookup: pid}
  end

  defp poll(state) do
    schedule_poll(state)
    debug(state, "previous lookup still running; skipping this poll")
    state
  end

  defp schedule_poll(%{config: config, slot: {slot, slots}}) do
    delay = Schedule.delay(System.os_time(:millisecond), config.poll_interval, slot, slots)
    Process.send_after(self(), :poll, delay)
  end

  # It cannot tell "no instances" from "DNS failed": nothing changes, and it
  # is said once, as an empty answer is.
  defp handle_lookup({:error, :empty_answer_from_legacy_client}, %{empty_logged: true} = state),
    do: state

  defp handle_lookup({:error, :empty_answer_from_legacy_client}, state) do
    info(
      state,
      "#{inspect(state.config.dns_client)} lists no peers for #{inspect(state.config.query)}; " <>
        "a get_nodes client cannot tell that from a failed lookup, so every connected node stays"
    )

    %{state | empty_logged: true}
  end

  defp handle_lookup({:error, reason}, state) do
    warn(
      state,
      "DNS lookup for #{inspect(state.config.query)} failed (#{describe(reason)}); " <>
        "keeping every connected node until DNS answers again"
    )

    state
  end

  defp handle_lookup(
         {:ok, %{nodes: found, evidence: evidence} = result},
         %{config: config} = state
       ) do
    debug(state, fn -> "found nodes #{inspect(found)} (#{describe_evidence(evidence)})" end)
    state = state |> warn_name_mode(result.unreachable) |> log_empty(result.targets)
    state = %{state | slot: Schedule.slot(Node.self(), found)}

    udp_carries =
      cond do
        result.trimmed != nil -> result.trimmed
        state.udp_carries != nil and result.targets < state.udp_carries -> nil
        true -> state.udp_carries
      end

    state = %{state | udp_carries: udp_carries}

    {membership, gone} =
      Membership.observe(state.membership, found, config.disconnect_after, evidence)

    state = %{state | membership: membership}
    disconnect(state, gone)
    connect(%{state | found: found}, found)
  end

  defp warn_name_mode(state, %{count: 0}), do: state
  defp warn_name_mode(%{warned_name_mode: true} = state, _), do: state

  defp warn_name_mode(state, %{count: count, example: example}) do
    {mode, fix} =
      if :net_kernel.longnames() == true,
        do:
          {"long names (--name), which need a host with a dot or an IP address",
           "start the nodes with --sname, or use node_host: :address so that peers are " <>
             "named after their IP addresses"},
        else:
          {"short names (--sname), which refuse a host with a dot or an IPv4 address",
           "start the nodes with --name #{state.config.node_sname}-<port>@<host> (as Nomad " <>
             "jobs do with the allocation's IP), or answer with hosts without dots"}

    warn(
      state,
      "#{count} peer(s) from DNS, such as #{inspect(example)}, cannot be reached: this node " <>
        "runs with #{mode}. They are skipped; #{fix}"
    )

    %{state | warned_name_mode: true}
  end

  defp log_empty(%{empty_logged: false, config: config} = state, 0) do
    {asked, flags} =
      case Caravan.DnsClient.Options.validate!(Keyword.take(config.dns_opts, [:nameservers])) do
        %{nameservers: :system} ->
          {"the system resolver, /etc/resolv.conf", ""}

        %{nameservers: servers} ->
          servers = Enum.map(servers, &nameserver_flag/1)
          {Enum.join(servers, ", "), Enum.map_join(servers, &" --nameserver #{&1}")}
      end

    info(
      state,
      "DNS lists no peers for #{inspect(config.query)} (asked #{asked}); check that the " <>
        "service is registered and healthy: mix caravan.lookup #{config.query}#{flags}"
    )

    %{state | empty_logged: true}
  end

  defp log_empty(state, 0), do: state
  defp log_empty(state, _targets), do: %{state | empty_logged: false}

  defp nameserver_flag({{_, _, _, _} = ip, port}), do: "#{:inet.ntoa(ip)}:#{port}"
  defp nameserver_flag({ip, port}), do: "[#{:inet.ntoa(ip)}]:#{port}"

  defp describe_evidence(%{complete: false}),
    do: "not known to be complete: no node counts as missing"

  defp describe_evidence(%{self_listed: true}), do: "complete"
  defp describe_evidence(_), do: "complete; this node not listed"

  ## Connecting

  # A finished attempt frees a slot for the peers the last answer listed
  # beyond connect_concurrency, at once rather than at the next poll (the
  # peer just tried waits for its backoff, and the next poll, as before).
  defp refill(state, node), do: connect(state, List.delete(state.found, node))

  defp connect(%{config: config} = state, found) do
    now = now_ms()
    connected_nodes = list_nodes(config)
    in_flight = for {_pid, {node, _}} <- state.connecting, do: node

    candidates =
      Membership.candidates(state.membership, found, connected_nodes, in_flight, Node.self(), now)

    room = max(config.connect_concurrency - map_size(state.connecting), 0)
    {now_batch, later} = Enum.split(candidates, room)

    if later != [] do
      debug(
        state,
        "#{length(later)} connect attempt(s) wait for a free slot (connect_concurrency)"
      )
    end

    Enum.reduce(now_batch, state, &start_connect(&2, &1))
  end

  defp start_connect(%{config: config} = state, node) do
    {mod, fun, args} = config.connect
    parent = self()

    pid =
      spawn_link(fn ->
        started = System.monotonic_time()
        result = apply(mod, fun, args ++ [node])
        send(parent, {:connect_done, self(), node, result, System.monotonic_time() - started})
      end)

    timer = Process.send_after(self(), {:connect_deadline, pid}, config.connect_timeout)
    %{state | connecting: Map.put(state.connecting, pid, {node, timer})}
  end

  defp connected(%{config: config} = state, node, result, duration) do
    outcome = if result == true, do: :ok, else: :error

    membership =
      Membership.connect_result(
        state.membership,
        node,
        outcome,
        now_ms(),
        config.poll_interval,
        config.max_backoff
      )

    suffix = " (#{Membership.failures(membership, node)} consecutive failure(s))"
    report_connect(config, node, result, duration, suffix)
    %{state | membership: membership}
  end

  defp report_connect(config, node, true, duration, _suffix) do
    telemetry([:libcluster, :connect_node, :ok], %{duration: duration}, %{
      node: node,
      topology: config.topology
    })

    log(:info, config, "connected to #{inspect(node)}")
  end

  defp report_connect(config, node, result, _duration, suffix) do
    telemetry([:libcluster, :connect_node, :error], %{}, %{
      node: node,
      topology: config.topology,
      reason: connect_failure_reason(result)
    })

    log(
      :warning,
      config,
      "unable to connect to #{inspect(node)}: #{describe_connect_failure(result, config)}" <>
        suffix
    )
  end

  defp connect_failure_reason(false), do: :unreachable
  defp connect_failure_reason(:ignored), do: :not_part_of_network
  defp connect_failure_reason(:timeout), do: :timeout
  defp connect_failure_reason(other), do: inspect(other)

  defp describe_connect_failure(false, _), do: "not reachable or refused"

  defp describe_connect_failure(:ignored, _),
    do: "not part of network (this node is not distributed)"

  defp describe_connect_failure(:timeout, config),
    do: "no handshake within connect_timeout (#{config.connect_timeout} ms)"

  defp describe_connect_failure(other, _), do: inspect(other)

  ## Disconnecting (libcluster's semantics: only listed nodes, never self)

  defp disconnect(_state, []), do: :ok

  defp disconnect(%{config: config} = state, gone) do
    {mod, fun, args} = config.disconnect
    connected = MapSet.new(list_nodes(config))

    for node <- gone, node != Node.self() do
      if MapSet.member?(connected, node) do
        started = System.monotonic_time()

        case apply(mod, fun, args ++ [node]) do
          true ->
            telemetry(
              [:libcluster, :disconnect_node, :ok],
              %{duration: System.monotonic_time() - started},
              %{
                node: node,
                topology: config.topology
              }
            )

            info(
              state,
              "disconnected from #{inspect(node)}: missing from #{config.disconnect_after} consecutive DNS answers"
            )

          other ->
            reason =
              case other do
                false -> :already_disconnected
                :ignored -> :not_part_of_network
                other -> inspect(other)
              end

            telemetry([:libcluster, :disconnect_node, :error], %{}, %{
              node: node,
              topology: config.topology,
              reason: reason
            })

            warn(state, "disconnect from #{inspect(node)} failed: #{inspect(reason)}")
        end
      else
        debug(state, "forgot #{inspect(node)}: gone from DNS and not connected")
      end
    end

    :ok
  end

  defp list_nodes(%Config{list_nodes: {mod, fun, args}}), do: apply(mod, fun, args)

  ## Lookups and names

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
    case Caravan.DnsClient.Options.validate!(Keyword.take(opts, [:nameservers])).nameservers do
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

  defp to_nodes(records, config) do
    {records, dropped} = Enum.split(records, config.max_nodes)

    if dropped != [] do
      log(
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
            log(:warning, config, "ignoring DNS record #{inspect(record, limit: 10)}: #{message}")
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
      log(
        :warning,
        config,
        "topology #{inspect(config.topology)} has created #{minted} node-name atoms, 80% of its " <>
          "max_node_names budget (#{budget}); past it new peers are refused. Atoms are never freed: " <>
          "if DNS is trustworthy, raise max_node_names"
      )

      telemetry([:caravan, :node_names, :near_limit], measurements, metadata)
    end

    if counts.refused > 0 do
      log(
        :error,
        config,
        "refused #{counts.refused} new node name(s): topology #{inspect(config.topology)} has already " <>
          "created #{minted} node-name atoms, its max_node_names budget (#{budget}). Atoms are " <>
          "never freed; if DNS is trustworthy, raise max_node_names"
      )

      telemetry(
        [:caravan, :node_names, :refused],
        Map.put(measurements, :count, counts.refused),
        metadata
      )
    end

    if counts.deferred > 0 do
      log(
        :warning,
        config,
        "#{counts.deferred} new node name(s) left for later polls: at most max_new_names " <>
          "(#{config.max_new_names}) are created per poll"
      )
    end
  end

  ## Logging and telemetry

  defp describe({reason, message}) when is_atom(reason) and is_binary(message),
    do: "#{reason}: #{message}"

  defp describe(reason), do: inspect(reason)

  defp debug(state, message), do: log(:debug, state.config, message)
  defp info(state, message), do: log(:info, state.config, message)
  defp warn(state, message), do: log(:warning, state.config, message)

  # libcluster's Cluster.Logger: the same prefix, and debug lines only when
  # `config :libcluster, debug: true` (or the original's `config :caravan,
  # debug: true`) is set.
  # A debug message may be a function, built only when it is logged.
  defp log(:debug, config, message) do
    if debug?(:libcluster) or debug?(:caravan) do
      log!(:debug, config, if(is_function(message), do: message.(), else: message))
    end

    :ok
  end

  defp log(level, config, message), do: log!(level, config, message)

  defp log!(level, %Config{topology: topology}, message) do
    Logger.log(level, "[libcluster:#{topology}] " <> message, topology: topology)
  end

  defp debug?(app), do: Application.get_env(app, :debug, false) not in [nil, false, "false"]

  # `:telemetry` is an optional, runtime-only dependency: called through
  # apply/3 so that compiling Caravan does not need it.
  defp telemetry(event, measurements, metadata) do
    if Code.ensure_loaded?(:telemetry) do
      apply(:telemetry, :execute, [event, measurements, metadata])
    end

    :ok
  end

  defp now_ms, do: System.monotonic_time(:millisecond)

  defp child_id([%{topology: topology}]) when is_atom(topology) and topology != nil,
    do: {__MODULE__, topology}

  defp child_id(opts) when is_list(opts),
    do: {__MODULE__, Keyword.get(opts, :topology, Keyword.get(opts, :name, :caravan))}

  defp child_id(_), do: __MODULE__
end

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

  How it behaves, option by option, is in the guide
  [Discovery and the strategy](discovery.md); in short:

    * Polls run at start, then every `poll_interval` at this node's own slot
      of it (`Caravan.Cluster.Schedule`). At most one lookup is in flight,
      killed after `:timeout` plus a second; the strategy answers throughout.
    * Peers are named in `Caravan.Cluster.Discovery`, within the name
      budgets of `Caravan.Cluster.NodeNames`, and connected in parallel
      (`connect_concurrency`, `connect_timeout`) through
      `Caravan.Cluster.Peers`; failing peers back off
      (`Caravan.Cluster.Membership`).
    * A peer is disconnected only after `disconnect_after` consecutive
      answers that are evidence of its absence: a possibly trimmed UDP
      answer is confirmed over TCP, and a failed lookup, an empty answer
      that leaves out this node, or unresolved targets remove nobody.
    * Logs and telemetry are libcluster's (`Caravan.Cluster.Log`), plus
      `[:caravan, :node_names, :near_limit | :refused]`.
  """

  use GenServer

  alias Caravan.Cluster.{Config, Discovery, Log, Membership, Peers, Schedule}

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
      connected = MapSet.new(Peers.list(config))

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
    with {:ok, %{nodes: nodes}} <- Discovery.discover(Config.normalize(config), [], false),
         do: {:ok, nodes}
  end

  defp legacy_empty({:error, :empty_answer_from_legacy_client}), do: {:ok, []}
  defp legacy_empty(result), do: result

  defp connect_one(config, node) do
    {result, duration} = Peers.connect(config, node)
    Peers.report_connect(config, node, result, duration, "")
    result
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
      # This node's turn within the poll interval (Caravan.Cluster.Schedule).
      slot: Schedule.slot(Node.self(), []),
      # Logged once each: names this node's name mode cannot reach, and an
      # empty answer (again only after a non-empty one).
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

  def handle_info({:connect_done, pid, _node, result, duration}, state),
    do: {:noreply, finish_connect(state, pid, result, duration)}

  def handle_info({:connect_deadline, pid}, state) do
    Process.unlink(pid)
    Process.exit(pid, :kill)
    {:noreply, finish_connect(state, pid, :timeout, nil)}
  end

  def handle_info({:EXIT, pid, reason}, %{lookup: pid} = state) when reason != :normal do
    warn(
      state,
      "DNS lookup for #{inspect(state.config.query)} crashed: #{Exception.format_exit(reason)}"
    )

    {:noreply, %{state | lookup: nil}}
  end

  def handle_info({:EXIT, pid, reason}, state) when reason != :normal,
    do: {:noreply, finish_connect(state, pid, {:crash, reason}, nil)}

  def handle_info(_other, state), do: {:noreply, state}

  ## Polling

  defp poll(%{lookup: nil, config: config} = state) do
    schedule_poll(state)
    parent = self()
    known = Membership.known(state.membership)
    tcp_first = state.udp_carries != nil

    pid =
      spawn_link(fn ->
        send(parent, {:lookup_done, self(), Discovery.discover(config, known, tcp_first)})
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
      "DNS lookup for #{inspect(state.config.query)} failed (#{Log.describe(reason)}); " <>
        "keeping every connected node until DNS answers again"
    )

    state
  end

  defp handle_lookup(
         {:ok, %{nodes: found, evidence: evidence} = result},
         %{config: config} = state
       ) do
    debug(state, fn ->
      "found nodes #{inspect(found)} (#{Discovery.describe_evidence(evidence)})"
    end)

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
    Peers.disconnect(config, gone)
    connect(%{state | found: found}, found)
  end

  defp warn_name_mode(state, %{count: 0}), do: state
  defp warn_name_mode(%{warned_name_mode: true} = state, _), do: state

  defp warn_name_mode(state, unreachable) do
    warn(state, Discovery.name_mode_warning(unreachable, state.config))
    %{state | warned_name_mode: true}
  end

  defp log_empty(%{empty_logged: false} = state, 0) do
    info(state, Discovery.empty_answer_message(state.config))
    %{state | empty_logged: true}
  end

  defp log_empty(state, 0), do: state
  defp log_empty(state, _targets), do: %{state | empty_logged: false}

  ## Connecting

  # A finished attempt frees a slot for the peers the last answer listed
  # beyond connect_concurrency, at once rather than at the next poll (the
  # peer just tried waits for its backoff, and the next poll, as before).
  defp refill(state, node), do: connect(state, List.delete(state.found, node))

  defp connect(%{config: config} = state, found) do
    now = now_ms()
    connected_nodes = Peers.list(config)
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
    parent = self()

    pid =
      spawn_link(fn ->
        {result, duration} = Peers.connect(config, node)
        send(parent, {:connect_done, self(), node, result, duration})
      end)

    timer = Process.send_after(self(), {:connect_deadline, pid}, config.connect_timeout)
    %{state | connecting: Map.put(state.connecting, pid, {node, timer})}
  end

  # An attempt ended (a result, its deadline, or a crash): its slot is free.
  defp finish_connect(state, pid, result, duration) do
    case Map.pop(state.connecting, pid) do
      {{node, timer}, connecting} ->
        Process.cancel_timer(timer)
        %{state | connecting: connecting} |> connected(node, result, duration) |> refill(node)

      {nil, _} ->
        state
    end
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
    Peers.report_connect(config, node, result, duration, suffix)
    %{state | membership: membership}
  end

  defp debug(state, message), do: Log.log(:debug, state.config, message)
  defp info(state, message), do: Log.log(:info, state.config, message)
  defp warn(state, message), do: Log.log(:warning, state.config, message)

  defp now_ms, do: System.monotonic_time(:millisecond)

  defp child_id([%{topology: topology}]) when is_atom(topology) and topology != nil,
    do: {__MODULE__, topology}

  defp child_id(opts) when is_list(opts),
    do: {__MODULE__, Keyword.get(opts, :topology, Keyword.get(opts, :name, :caravan))}

  defp child_id(_), do: __MODULE__
end

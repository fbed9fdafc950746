defmodule Caravan.Bench.FleetNode do
  @moduledoc """
  What the fleet benchmark runs on each of its nodes (they get this
  directory with `-pa`): a strategy, Caravan's or the libcluster-style
  baseline (`Caravan.Bench.LibclusterPoll`), and a watcher that records
  every nodeup and nodedown with the machine's clock
  (`System.os_time(:microsecond)`, shared by every VM on it), so that
  times are read after the fact, not by polling the nodes.
  """

  use GenServer

  @sup Caravan.Bench.FleetSup

  @doc """
  Starts the watcher and `kind` with `strategy` options: `:caravan`,
  `:baseline`, or `:floor` (no DNS: connects to every node of the list
  `strategy` at once, what this machine can do at best).
  """
  def start(kind, strategy) do
    Logger.configure(level: :error)
    stop()

    strategy_child =
      case kind do
        :caravan -> {Caravan.Cluster.DnsStrategy, strategy}
        :baseline -> {Caravan.Bench.LibclusterPoll, strategy}
        # The machine's floor: every peer (`strategy` is their names) at once.
        :floor -> {Task, fn -> Enum.each(strategy, &spawn(:net_kernel, :connect_node, [&1])) end}
      end

    {:ok, sup} =
      Supervisor.start_link([__MODULE__, strategy_child], strategy: :one_for_one, name: @sup)

    # Lives as long as the node's control process, not as long as this call.
    Process.unlink(sup)
    :ok
  end

  @doc "Starts only the watcher (a node without a strategy: a joiner the others find)."
  def watch do
    stop()
    {:ok, sup} = Supervisor.start_link([__MODULE__], strategy: :one_for_one, name: @sup)
    Process.unlink(sup)
    :ok
  end

  @doc "Stops the strategy and the watcher, and disconnects every node."
  def stop do
    if pid = Process.whereis(@sup), do: Supervisor.stop(pid)
    disconnect_all()
  end

  @doc "Disconnects every node."
  def disconnect_all, do: Enum.each(Node.list(), &:erlang.disconnect_node/1)

  @doc "The events so far, oldest first: `{os_time_us, :up | :down, node}`."
  def events, do: GenServer.call(__MODULE__, :events)

  @doc "This OS process's CPU time so far, every thread, in milliseconds."
  def cpu_ms do
    {ms, _} = :erlang.statistics(:runtime)
    ms
  end

  @doc """
  `connect`, `list_nodes` and `disconnect` MFAs for the per-node cost: every
  peer connects at once and stays connected, so a poll is a lookup and
  nothing else, as in a steady mesh too large to run here.
  """
  def pretend_connect(node) do
    :persistent_term.put({__MODULE__, :peers}, [node | pretend_list()])
    true
  end

  @doc "See `pretend_connect/1`: `nodes` are connected already."
  def pretend_peers(nodes), do: :persistent_term.put({__MODULE__, :peers}, nodes)

  @doc "See `pretend_connect/1`."
  def pretend_list, do: :persistent_term.get({__MODULE__, :peers}, [])

  @doc "See `pretend_connect/1`."
  def pretend_disconnect(node) do
    :persistent_term.put({__MODULE__, :peers}, List.delete(pretend_list(), node))
    true
  end

  @doc false
  def child_spec(_), do: %{id: __MODULE__, start: {__MODULE__, :start_link, []}}

  @doc false
  def start_link, do: GenServer.start_link(__MODULE__, nil, name: __MODULE__)

  @impl GenServer
  def init(nil) do
    :ok = :net_kernel.monitor_nodes(true)
    # Peers that connected before this watcher began (another node's
    # strategy may be first) count as up from now.
    {:ok, for(node <- Node.list(), do: {now(), :up, node})}
  end

  @impl GenServer
  def handle_call(:events, _from, events), do: {:reply, Enum.reverse(events), events}

  @impl GenServer
  def handle_info({:nodeup, node}, events), do: {:noreply, [{now(), :up, node} | events]}
  def handle_info({:nodedown, node}, events), do: {:noreply, [{now(), :down, node} | events]}

  defp now, do: System.os_time(:microsecond)
end

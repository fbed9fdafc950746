defmodule Caravan.Bench.SerialConnect do
  @moduledoc """
  The convergence baseline: connects made one at a time, as libcluster's
  `Cluster.Strategy.connect_nodes/4` makes them (it walks the list and calls
  `:net_kernel.connect_node/1` on each in turn, in the strategy's process).

  `Caravan.Cluster.DnsStrategy` is given `connect: {#{inspect(__MODULE__)},
  :connect, []}` and a `connect_timeout` longer than `net_setuptime`: each of
  its connect processes then waits in line here, and this one process runs
  the connects in the order the answer listed the peers, so a peer that
  accepts TCP and never completes the handshake holds every connect behind
  it for `net_setuptime` (7 s by default). Everything else (polling, naming,
  backoff) is the strategy's own, so the two runs differ only in that.
  """

  use GenServer

  @doc "Starts the one connecting process, registered under this module's name."
  def start_link(_opts \\ []), do: GenServer.start_link(__MODULE__, nil, name: __MODULE__)

  @doc false
  def child_spec(opts), do: %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}}

  @doc "Connects to `node` after every connect queued before it; `:net_kernel.connect_node/1`'s result."
  def connect(node), do: GenServer.call(__MODULE__, {:connect, node}, :infinity)

  @impl GenServer
  def init(nil), do: {:ok, nil}

  @impl GenServer
  def handle_call({:connect, node}, _from, state),
    do: {:reply, :net_kernel.connect_node(node), state}
end

defmodule Caravan.Bench.LibclusterPoll do
  @moduledoc """
  The fleet benchmark's baseline: the loop of libcluster 3.5's DNS
  strategies (`Cluster.Strategy.DNSPoll`, `Kubernetes.DNSSRV`), which cannot
  be installed here, asking the same SRV name and naming peers as
  `Caravan.Cluster.DnsStrategy` does with `node_host: :address`.

  Every poll, in this process: `:inet_res` asks the nameserver over UDP (no
  EDNS, as `:inet_res.getbyname/2` does: Consul then answers at most 3
  instances); a failed lookup is an empty list. Nodes in the last answer and
  not in this one are disconnected; then every listed node not connected is
  connected with `:net_kernel.connect_node/1`, one after the other (libcluster's
  `Cluster.Strategy.connect_nodes/4`); the next poll is scheduled after that.
  """

  use GenServer

  @doc "Options: `:query`, `:node_sname`, `:nameservers` (`[{ip, port}]`), `:poll_interval`."
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts)

  @impl GenServer
  def init(opts) do
    send(self(), :poll)
    {:ok, %{opts: Map.new(opts), known: MapSet.new()}}
  end

  @impl GenServer
  def handle_info(:poll, %{opts: opts} = state) do
    found = MapSet.new(lookup(opts))

    for node <- MapSet.difference(state.known, found), node in Node.list() do
      :erlang.disconnect_node(node)
    end

    failed =
      for node <- found,
          node != Node.self(),
          node not in Node.list(),
          :net_kernel.connect_node(node) != true,
          do: node

    Process.send_after(self(), :poll, opts.poll_interval)
    {:noreply, %{state | known: MapSet.difference(found, MapSet.new(failed))}}
  end

  defp lookup(opts) do
    :inet_res.lookup(String.to_charlist(opts.query), :in, :srv,
      nameservers: opts.nameservers,
      timeout: 1_000
    )
    |> Enum.flat_map(fn {_priority, _weight, port, target} ->
      case Caravan.Native.decode_consul_addr(to_string(target)) do
        nil -> []
        ip -> [:"#{opts.node_sname}-#{port}@#{:inet.ntoa(ip)}"]
      end
    end)
  end
end

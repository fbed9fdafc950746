# libcluster cannot be fetched here (hex.pm is unreachable), so the tests use
# doubles that mirror libcluster 3.5's contract exactly:
#
#   * `Cluster.Strategy.State` has the same fields and defaults as
#     lib/strategy/state.ex;
#   * `Caravan.Test.LibclusterSupervisor.child_spec/2` builds the initial
#     state and the child exactly as Cluster.Supervisor.get_configured_topologies/1
#     and build_initial_state/1 do: `start: {strategy, :start_link, [[state]]}`
#     with the default MFAs {:net_kernel, :connect_node, []},
#     {:erlang, :disconnect_node, []} and {:erlang, :nodes, [:connected]}.
#
# Only the struct is defined, never `Cluster.Strategy`, so Caravan still
# compiles as it would without libcluster.
defmodule Cluster.Strategy.State do
  @moduledoc false
  defstruct topology: nil,
            connect: nil,
            disconnect: nil,
            list_nodes: nil,
            meta: nil,
            config: []
end

defmodule Caravan.Test.LibclusterSupervisor do
  @moduledoc false

  @doc "The child libcluster's supervisor starts for one topology."
  def child_spec(topology, spec) do
    spec = [{:topology, topology} | spec]
    strategy = Keyword.fetch!(spec, :strategy)

    state = %Cluster.Strategy.State{
      topology: topology,
      connect: Keyword.get(spec, :connect, {:net_kernel, :connect_node, []}),
      disconnect: Keyword.get(spec, :disconnect, {:erlang, :disconnect_node, []}),
      list_nodes: Keyword.get(spec, :list_nodes, {:erlang, :nodes, [:connected]}),
      config: Keyword.get(spec, :config, []),
      meta: nil
    }

    %{id: state.topology, start: {strategy, :start_link, [[state]]}}
  end
end

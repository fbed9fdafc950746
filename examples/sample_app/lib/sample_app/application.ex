defmodule SampleApp.Application do
  @moduledoc """
  The sample app's supervision tree: libcluster's supervisor, running the
  topologies from `config/runtime.exs` (Caravan.Cluster.DnsStrategy there).

  Add your own children after it. Once the cluster has formed,
  `Node.list/0` shows the other nodes of the Nomad job.
  """

  use Application

  @impl true
  def start(_type, _args) do
    topologies = Application.get_env(:libcluster, :topologies, [])

    children = [
      {Cluster.Supervisor, [topologies, [name: SampleApp.ClusterSupervisor]]}
    ]

    Supervisor.start_link(children, strategy: :one_for_one, name: SampleApp.Supervisor)
  end
end

defmodule CaravanDemo.Member do
  @moduledoc """
  What each demo node runs (started with `elixir -e`): the strategy, a file
  holding the nodes it sees, and its stdin, whose end halts the node.
  """

  @doc """
  The node's whole life: starts `Caravan.Cluster.DnsStrategy` with
  `strategy`, rewrites `view_file` on every nodeup and nodedown, and halts
  when stdin ends; after a `keep` line it runs until killed.
  """
  @spec run(keyword(), Path.t()) :: no_return()
  def run(strategy, view_file) do
    Logger.configure(level: :info)

    {:ok, _} =
      Supervisor.start_link([{Caravan.Cluster.DnsStrategy, strategy}],
        strategy: :one_for_one,
        name: CaravanDemo.Supervisor
      )

    spawn_link(fn ->
      :ok = :net_kernel.monitor_nodes(true)
      write_view(view_file)
      watch(view_file)
    end)

    wait_for_eof()
  end

  defp watch(view_file) do
    receive do
      {change, _node} when change in [:nodeup, :nodedown] -> write_view(view_file)
    end

    watch(view_file)
  end

  # Written whole, then renamed: the demo never reads half a view.
  defp write_view(file) do
    tmp = file <> ".tmp"
    File.write!(tmp, Enum.map(Node.list(), &[Atom.to_string(&1), ?\n]))
    File.rename!(tmp, file)
  end

  defp wait_for_eof do
    case IO.read(:stdio, :line) do
      "keep\n" -> Process.sleep(:infinity)
      line when is_binary(line) -> wait_for_eof()
      _eof -> System.halt(0)
    end
  end
end

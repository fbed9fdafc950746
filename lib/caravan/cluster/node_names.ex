defmodule Caravan.Cluster.NodeNames do
  @moduledoc """
  Turns validated peer names into node atoms, within a lifetime budget.

  Names are built and validated in Rust (`caravan_core::peer_name`, through
  `Caravan.Native.peer_name/3`). Atoms are never garbage-collected, so a DNS
  server answering every poll with fresh names could otherwise fill the atom
  table and crash the VM. Each topology may therefore create at most
  `max_node_names` new atoms over the VM's life; names that already exist as
  atoms cost nothing. The count lives in a `:counters` reference in
  `:persistent_term`, so a restarted strategy does not get a fresh budget.
  """

  @doc """
  Returns the atom for the node name `name` (a binary built by
  `Caravan.Native.peer_name/3`), creating it only while `topology` has created
  fewer than `budget` atoms.
  """
  @spec to_node(String.t(), atom(), pos_integer()) :: {:ok, node()} | {:error, :budget_exhausted}
  def to_node(name, topology, budget) when is_binary(name) do
    {:ok, String.to_existing_atom(name)}
  rescue
    ArgumentError -> mint(name, topology, budget)
  end

  @doc "How many atoms `topology` has created so far."
  @spec minted(atom()) :: non_neg_integer()
  def minted(topology), do: :counters.get(counter(topology), 1)

  defp mint(name, topology, budget) do
    counter = counter(topology)

    if :counters.get(counter, 1) < budget do
      :counters.add(counter, 1, 1)
      {:ok, String.to_atom(name)}
    else
      {:error, :budget_exhausted}
    end
  end

  defp counter(topology) do
    key = {__MODULE__, topology}

    case :persistent_term.get(key, nil) do
      nil ->
        # Two strategies of one topology may race here; the loser's counter is
        # dropped, which at worst lets one extra name through.
        counter = :counters.new(1, [:atomics])
        :persistent_term.put(key, counter)
        counter

      counter ->
        counter
    end
  end
end

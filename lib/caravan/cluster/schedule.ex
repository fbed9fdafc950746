defmodule Caravan.Cluster.Schedule do
  @moduledoc """
  When the next poll runs. A fleet restarted at once would otherwise ask
  Consul at once, every interval: each node polls instead at its own slot of
  the interval, its rank among the nodes DNS lists (this node included), on
  the machine's clock, so `n` nodes that see the same answer poll
  `poll_interval / n` apart. A node DNS does not list yet takes a slot from
  a hash of its name.

  Its effect on the fleet's load is measured in the guide [Performance](performance.md).
  """

  @doc """
  Milliseconds from `now_ms` (`System.os_time(:millisecond)`) until slot
  `slot` of `slots` comes round: at least half an interval, less than one
  and a half, exactly one once the node is in its slot.

  ## Examples

      iex> Caravan.Cluster.Schedule.delay(10_000, 1_000, 0, 4)
      1000
      iex> Caravan.Cluster.Schedule.delay(10_000, 1_000, 1, 4)
      1250
      iex> Caravan.Cluster.Schedule.delay(10_250, 1_000, 1, 4)
      1000
      iex> Caravan.Cluster.Schedule.delay(10_900, 1_000, 1, 4)
      1350
  """
  @spec delay(integer(), pos_integer(), non_neg_integer(), pos_integer()) :: pos_integer()
  def delay(now_ms, interval, slot, slots) do
    target = div(slot * interval, slots)
    wait = Integer.mod(target - now_ms, interval)
    if wait < div(interval, 2), do: wait + interval, else: wait
  end

  @doc """
  This node's slot among `found` (the nodes DNS lists, this node left out):
  `{rank, count}` over the sorted names with `self` added, or a slot from a
  hash of `self` among 1,024 when nothing is listed.

  ## Examples

      iex> Caravan.Cluster.Schedule.slot(:"a-1@h", [:"a-3@h", :"a-2@h"])
      {0, 3}
      iex> Caravan.Cluster.Schedule.slot(:"a-3@h", [:"a-1@h", :"a-2@h"])
      {2, 3}
  """
  @spec slot(node(), [node()]) :: {non_neg_integer(), pos_integer()}
  def slot(self, []), do: {:erlang.phash2(self, 1024), 1024}

  def slot(self, found) do
    all = Enum.sort([self | found])
    {Enum.find_index(all, &(&1 == self)), length(all)}
  end
end

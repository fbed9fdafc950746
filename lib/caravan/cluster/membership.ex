defmodule Caravan.Cluster.Membership do
  @moduledoc """
  What `Caravan.Cluster.DnsStrategy` remembers between polls, and the
  decisions it takes from it. Pure data, no processes, no clock of its own.

    * **Pruning.** A node found by DNS is *known*. Each answer that is
      evidence of absence and lacks a known node counts one miss; an answer
      that lists it resets the count. At `disconnect_after` misses the node is
      dropped and returned for disconnecting. Failed lookups are never shown
      to this module, so they never count. An answer is evidence of absence
      only when it is complete (not a UDP answer that may have been trimmed,
      no unresolved target) and, once this node has been listed, lists this
      node again: an answer that is wrong about this node (an empty one while
      it runs, say) says nothing about the others.
    * **Connect order.** Peers never tried go first, in DNS order; peers whose
      connects failed follow, the one due longest first, so retries rotate and
      a healthy new peer is never starved by stalled ones.
    * **Backoff.** A failed connect attempt makes the peer wait before the next
      one: nothing after the first failure (it is retried at the next poll,
      or sooner when another attempt frees a slot),
      then `poll_interval * (2^(failures - 1) - 1)` milliseconds, capped at
      `max_backoff`.

  The guide [Reliability and threat model](reliability.md) lists the
  tests that hold it to this.
  """

  defstruct known: %{}, failures: %{}, self_seen: false

  @typedoc """
  Known nodes with their miss counts, failing peers with
  `{failures, retry_at_ms}`, and whether an answer ever listed this node.
  """
  @type t :: %__MODULE__{
          known: %{node() => non_neg_integer()},
          failures: %{node() => {pos_integer(), integer()}},
          self_seen: boolean()
        }

  @typedoc """
  What an answer is evidence of: `complete` (every instance is listed) and
  `self_listed` (this node is among them).
  """
  @type evidence :: %{complete: boolean(), self_listed: boolean()}

  @doc "An empty membership."
  @spec new() :: t()
  def new, do: %__MODULE__{}

  @doc """
  Records a successful answer listing `found` (this node left out), with
  what it is evidence of (default: complete, this node not listed). Returns
  the new membership and the known nodes that have now been missing from
  `disconnect_after` consecutive answers that are evidence of absence (see
  the moduledoc; `:never` prunes nothing).
  """
  @spec observe(t(), [node()], pos_integer() | :never, evidence()) :: {t(), [node()]}
  def observe(
        %__MODULE__{} = m,
        found,
        disconnect_after,
        evidence \\ %{complete: true, self_listed: false}
      ) do
    counts? = evidence.complete and (evidence.self_listed or not m.self_seen)
    m = %__MODULE__{m | self_seen: m.self_seen or evidence.self_listed}
    found_set = MapSet.new(found)

    {known, gone} =
      Enum.reduce(m.known, {%{}, []}, fn {node, misses}, {known, gone} ->
        cond do
          MapSet.member?(found_set, node) -> {Map.put(known, node, 0), gone}
          not counts? -> {Map.put(known, node, misses), gone}
          disconnect_after != :never and misses + 1 >= disconnect_after -> {known, [node | gone]}
          true -> {Map.put(known, node, misses + 1), gone}
        end
      end)

    known = Enum.reduce(found, known, &Map.put_new(&2, &1, 0))
    {%__MODULE__{m | known: known, failures: Map.drop(m.failures, gone)}, Enum.sort(gone)}
  end

  @doc """
  The nodes of `found` worth a connect attempt now: not this node, not
  already connected, not being connected, and not waiting out a backoff;
  never-tried peers first, then failing ones by how long they have been due.
  """
  @spec candidates(t(), [node()], Enumerable.t(), Enumerable.t(), node(), integer()) :: [node()]
  def candidates(%__MODULE__{} = m, found, connected, connecting, self_node, now_ms) do
    skip = MapSet.new(connected) |> MapSet.union(MapSet.new(connecting)) |> MapSet.put(self_node)

    found
    |> Enum.reject(fn node -> MapSet.member?(skip, node) or backing_off?(m, node, now_ms) end)
    |> Enum.sort_by(fn node ->
      case Map.fetch(m.failures, node) do
        {:ok, {_failures, retry_at}} -> {1, retry_at}
        :error -> {0, 0}
      end
    end)
  end

  @doc "Records the outcome of one connect attempt made at `now_ms`."
  @spec connect_result(t(), node(), :ok | :error, integer(), pos_integer(), non_neg_integer()) ::
          t()
  def connect_result(%__MODULE__{} = m, node, :ok, _now_ms, _poll_interval, _max_backoff) do
    %__MODULE__{m | failures: Map.delete(m.failures, node)}
  end

  def connect_result(%__MODULE__{} = m, node, :error, now_ms, poll_interval, max_backoff) do
    failures = m.failures |> Map.get(node, {0, now_ms}) |> elem(0) |> Kernel.+(1)
    delay = min(poll_interval * (Integer.pow(2, min(failures, 20) - 1) - 1), max_backoff)
    %__MODULE__{m | failures: Map.put(m.failures, node, {failures, now_ms + delay})}
  end

  @doc "Consecutive failed connect attempts to `node`."
  @spec failures(t(), node()) :: non_neg_integer()
  def failures(%__MODULE__{failures: failures}, node) do
    case Map.fetch(failures, node) do
      {:ok, {count, _}} -> count
      :error -> 0
    end
  end

  @doc "The known nodes, sorted."
  @spec known(t()) :: [node()]
  def known(%__MODULE__{known: known}), do: known |> Map.keys() |> Enum.sort()

  defp backing_off?(m, node, now_ms) do
    case Map.fetch(m.failures, node) do
      {:ok, {_, retry_at}} -> retry_at > now_ms
      :error -> false
    end
  end
end

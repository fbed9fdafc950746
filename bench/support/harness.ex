defmodule Caravan.Bench.Harness do
  @moduledoc """
  A small timing harness (benchee is a hex package and cannot be used).

  `measure/2` runs a function in batches after a warm-up and reports the
  median and p99 of the per-call time across batches, plus calls per second
  derived from the median. Figures are compared as ratios against a baseline
  measured in the same run, because the machines are shared and noisy.
  """

  @doc """
  Times `fun` (arity 0). Options: `:batch` calls per sample (default 1000),
  `:samples` (default 200), `:warmup` samples discarded first (default 20).
  Returns `%{median_ns:, p99_ns:, per_sec:}` per call.
  """
  def measure(fun, opts \\ []) do
    batch = Keyword.get(opts, :batch, 1000)
    samples = Keyword.get(opts, :samples, 200)
    warmup = Keyword.get(opts, :warmup, 20)

    for _ <- 1..warmup, do: run_batch(fun, batch)
    times = for _ <- 1..samples, do: run_batch(fun, batch) / batch
    summarize(times)
  end

  @doc """
  Times `caravan` and `baseline` (arity 0) the way `measure/2` does, with
  their batches interleaved (one of each in turn, warm-up included), so
  that load from other processes on a shared machine falls on both alike.
  Same options; returns `{caravan_summary, baseline_summary}`.
  """
  def compare(caravan, baseline, opts \\ []) do
    batch = Keyword.get(opts, :batch, 1000)
    samples = Keyword.get(opts, :samples, 200)
    warmup = Keyword.get(opts, :warmup, 20)

    for _ <- 1..warmup, do: {run_batch(caravan, batch), run_batch(baseline, batch)}

    {c, b} =
      Enum.unzip(
        for _ <- 1..samples do
          {run_batch(caravan, batch) / batch, run_batch(baseline, batch) / batch}
        end
      )

    {summarize(c), summarize(b)}
  end

  @doc "Median, p99 and rate of a list of per-operation times in nanoseconds."
  def summarize(times_ns) do
    sorted = Enum.sort(times_ns)
    median = percentile(sorted, 50)
    %{median_ns: median, p99_ns: percentile(sorted, 99), per_sec: 1.0e9 / max(median, 1.0e-3)}
  end

  @doc "The `p`th percentile (nearest rank) of a sorted list."
  def percentile(sorted, p) do
    n = length(sorted)
    Enum.at(sorted, min(n - 1, max(0, ceil(p / 100 * n) - 1)))
  end

  defp run_batch(fun, batch) do
    start = System.monotonic_time(:nanosecond)
    loop(fun, batch)
    System.monotonic_time(:nanosecond) - start
  end

  defp loop(_fun, 0), do: :ok

  defp loop(fun, n) do
    fun.()
    loop(fun, n - 1)
  end
end

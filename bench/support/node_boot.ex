defmodule Caravan.Bench.NodeBoot do
  @moduledoc """
  Code the benchmarks run on their nodes (they get this directory with
  `-pa`): what a node costs the OS.
  """

  @doc "What the node costs the OS: `%{threads:, rss_kib:}` from /proc."
  def cost do
    for _ <- 1..3, do: Enum.each(Process.list(), &:erlang.garbage_collect/1)
    pid = System.pid()
    threads = "/proc/#{pid}/task" |> File.ls!() |> length()

    [rss] =
      Regex.run(~r/VmRSS:\s+(\d+) kB/, File.read!("/proc/#{pid}/status"), capture: :all_but_first)

    %{threads: threads, rss_kib: String.to_integer(rss)}
  end
end

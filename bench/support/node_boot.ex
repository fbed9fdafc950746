defmodule Caravan.Bench.NodeBoot do
  @moduledoc """
  Code the benchmark runs on its nodes (they get this directory with `-pa`):
  the strategy under a supervisor, with or without the serial connector.
  """

  @doc "Starts `Caravan.Cluster.DnsStrategy` with `strategy` options; `serial?` puts connects in line."
  def strategy(strategy, serial?) do
    Logger.configure(level: :error)

    {children, strategy} =
      if serial? do
        {[Caravan.Bench.SerialConnect],
         Keyword.merge(strategy,
           connect: {Caravan.Bench.SerialConnect, :connect, []},
           connect_timeout: 600_000
         )}
      else
        {[], strategy}
      end

    {:ok, _} =
      Supervisor.start_link(children ++ [{Caravan.Cluster.DnsStrategy, strategy}],
        strategy: :one_for_one,
        name: Caravan.Bench.NodeSup
      )

    :ok
  end

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

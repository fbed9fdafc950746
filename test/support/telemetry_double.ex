# `:telemetry` comes with libcluster in users' projects but cannot be fetched
# here. This double mirrors telemetry 1.x's `execute/3` contract and forwards
# each event to the processes that `attach/1` registered, so tests can see
# exactly what a telemetry handler would receive.
defmodule :telemetry do
  @moduledoc false

  def attach(pid) do
    :persistent_term.put({__MODULE__, :handlers}, [pid | handlers()])

    ExUnit.Callbacks.on_exit(fn ->
      :persistent_term.put({__MODULE__, :handlers}, handlers() -- [pid])
    end)
  end

  def execute(event, measurements, metadata)
      when is_list(event) and is_map(measurements) and is_map(metadata) do
    for pid <- handlers(), do: send(pid, {:telemetry, event, measurements, metadata})
    :ok
  end

  defp handlers, do: :persistent_term.get({__MODULE__, :handlers}, [])
end

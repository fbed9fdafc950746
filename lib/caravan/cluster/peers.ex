defmodule Caravan.Cluster.Peers do
  @moduledoc """
  Where connects and disconnects happen: through the strategy's `connect`,
  `disconnect` and `list_nodes` MFAs, with libcluster's semantics, each
  logged and reported to telemetry as libcluster does
  (`[:libcluster, :connect_node | :disconnect_node, :ok | :error]`).
  """

  alias Caravan.Cluster.{Config, Log}

  @doc """
  Connects `node` through the config's `connect` MFA, in the calling
  process: its result (`true` on success) and how long it took, in native
  time units.
  """
  @spec connect(Config.t(), node()) :: {term(), integer()}
  def connect(%Config{connect: {mod, fun, args}}, node) do
    started = System.monotonic_time()
    result = apply(mod, fun, args ++ [node])
    {result, System.monotonic_time() - started}
  end

  @doc """
  Logs and reports (telemetry) one connect's `result`, as libcluster's
  `connect_nodes/4` does; `suffix` ends a failure's log line.
  """
  @spec report_connect(Config.t(), node(), term(), integer() | nil, String.t()) :: :ok
  def report_connect(config, node, true, duration, _suffix) do
    Log.telemetry([:libcluster, :connect_node, :ok], %{duration: duration}, %{
      node: node,
      topology: config.topology
    })

    Log.log(:info, config, "connected to #{inspect(node)}")
  end

  def report_connect(config, node, result, _duration, suffix) do
    Log.telemetry([:libcluster, :connect_node, :error], %{}, %{
      node: node,
      topology: config.topology,
      reason: connect_failure_reason(result)
    })

    Log.log(
      :warning,
      config,
      "unable to connect to #{inspect(node)}: #{describe_connect_failure(result, config)}" <>
        suffix
    )
  end

  defp connect_failure_reason(false), do: :unreachable
  defp connect_failure_reason(:ignored), do: :not_part_of_network
  defp connect_failure_reason(:timeout), do: :timeout
  defp connect_failure_reason(other), do: inspect(other)

  defp describe_connect_failure(false, _), do: "not reachable or refused"

  defp describe_connect_failure(:ignored, _),
    do: "not part of network (this node is not distributed)"

  defp describe_connect_failure(:timeout, config),
    do: "no handshake within connect_timeout (#{config.connect_timeout} ms)"

  defp describe_connect_failure(other, _), do: inspect(other)

  @doc """
  Disconnects the nodes of `gone` that are connected, never this node, as
  libcluster's `disconnect_nodes/4` does; a node that is not connected is
  only forgotten.
  """
  @spec disconnect(Config.t(), [node()]) :: :ok
  def disconnect(_config, []), do: :ok

  def disconnect(config, gone) do
    {mod, fun, args} = config.disconnect
    connected = MapSet.new(list(config))

    for node <- gone, node != Node.self() do
      if MapSet.member?(connected, node) do
        started = System.monotonic_time()

        case apply(mod, fun, args ++ [node]) do
          true ->
            Log.telemetry(
              [:libcluster, :disconnect_node, :ok],
              %{duration: System.monotonic_time() - started},
              %{
                node: node,
                topology: config.topology
              }
            )

            Log.log(
              :info,
              config,
              "disconnected from #{inspect(node)}: missing from #{config.disconnect_after} consecutive DNS answers"
            )

          other ->
            reason =
              case other do
                false -> :already_disconnected
                :ignored -> :not_part_of_network
                other -> inspect(other)
              end

            Log.telemetry([:libcluster, :disconnect_node, :error], %{}, %{
              node: node,
              topology: config.topology,
              reason: reason
            })

            Log.log(
              :warning,
              config,
              "disconnect from #{inspect(node)} failed: #{inspect(reason)}"
            )
        end
      else
        Log.log(:debug, config, "forgot #{inspect(node)}: gone from DNS and not connected")
      end
    end

    :ok
  end

  @doc "The connected nodes, from the config's `list_nodes` MFA."
  @spec list(Config.t()) :: [node()]
  def list(%Config{list_nodes: {mod, fun, args}}), do: apply(mod, fun, args)
end

defmodule Caravan.Cluster.Log do
  @moduledoc """
  The strategy's logs and telemetry, as libcluster writes them.

  Lines start `[libcluster:<topology>]`, as libcluster's `Cluster.Logger`
  writes them, and carry `topology` metadata. Debug lines are written only
  when `config :libcluster, debug: true` (or the original library's
  `config :caravan, debug: true`) is set; a debug message may be a function,
  built only then. Telemetry events are emitted when `:telemetry` is loaded
  (libcluster brings it).
  """

  require Logger

  alias Caravan.Cluster.Config

  @doc "Logs `message` at `level` for the config's topology."
  @spec log(Logger.level(), Config.t(), String.t() | fun()) :: :ok
  def log(:debug, config, message) do
    if debug?(:libcluster) or debug?(:caravan) do
      log!(:debug, config, if(is_function(message), do: message.(), else: message))
    end

    :ok
  end

  def log(level, config, message), do: log!(level, config, message)

  defp log!(level, %Config{topology: topology}, message) do
    Logger.log(level, "[libcluster:#{topology}] " <> message, topology: topology)
  end

  defp debug?(app), do: Application.get_env(app, :debug, false) not in [nil, false, "false"]

  @doc """
  Emits a telemetry event when `:telemetry` is loaded. It is an optional,
  runtime-only dependency: called through `apply/3`, so that compiling
  Caravan does not need it.
  """
  @spec telemetry([atom()], map(), map()) :: :ok
  def telemetry(event, measurements, metadata) do
    if Code.ensure_loaded?(:telemetry) do
      apply(:telemetry, :execute, [event, measurements, metadata])
    end

    :ok
  end

  @doc "A lookup error as a log line reads it: `reason: message`, or inspected."
  @spec describe(term()) :: String.t()
  def describe({reason, message}) when is_atom(reason) and is_binary(message),
    do: "#{reason}: #{message}"

  def describe(reason), do: inspect(reason)
end

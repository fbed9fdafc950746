defmodule Caravan.BootLog do
  # Logging for code the VM runs while it boots (the epmd module, the
  # distribution module), before Logger or any Elixir application, and even
  # before kernel's logger handlers are installed: until a real handler
  # exists (only logger's boot-time `simple` handler), events are buffered
  # and lost if the boot then fails, so the message goes straight to the
  # console instead. Elixir's Logger replaces kernel's `default` handler with
  # its own, so any handler but `simple` counts.
  @moduledoc false

  @doc false
  @spec log(:logger.level(), String.t()) :: :ok
  def log(level, message) when is_binary(message) do
    if Enum.any?(:logger.get_handler_ids(), &(&1 != :simple)) do
      :logger.log(level, ~c"~ts", [message], %{domain: [:caravan]})
    else
      :erlang.display_string(String.to_charlist(message <> "\n"))
      :ok
    end
  end
end

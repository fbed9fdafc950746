defmodule Caravan.Text do
  # Text as users and OTP hand it over (a binary, a charlist, an atom) made
  # one UTF-8 binary, for the NIFs, which read binaries. The one place
  # charlists are converted: node names (Caravan.Epmd, Caravan.Epmd.Client)
  # and nameserver entries (Caravan.DnsClient.Options).
  @moduledoc false

  @doc false
  @spec to_binary(term()) :: {:ok, binary()} | :error
  def to_binary(text) when is_binary(text), do: {:ok, text}
  def to_binary(text) when is_atom(text), do: {:ok, Atom.to_string(text)}

  def to_binary(text) when is_list(text) do
    case :unicode.characters_to_binary(text) do
      binary when is_binary(binary) -> {:ok, binary}
      _incomplete_or_error -> :error
    end
  rescue
    ArgumentError -> :error
  end

  def to_binary(_other), do: :error
end

defmodule Caravan.Epmd do
  @moduledoc """
  Where a node's distribution port comes from: its own name.

  The port is the decimal number at the end of the part before `@` (or of the
  whole name when there is no `@`); a dash before it is optional. A name with
  no trailing digits gets 4370. So `likes-4001@10.0.1.5` and `likes4001@h`
  listen on 4001, and `likes@h` on 4370.

  The rule lives in Rust (`native/caravan_core/src/node_name.rs`); this
  module converts the name and raises on bad input.

  Names are checked, never guessed at:

    * trailing digits must be a TCP port, 1..65535 (`app-0@h` and
      `app-99999@h` are errors);
    * leading zeros are rejected (`app-04001@h`): one port has one spelling,
      so two differently named nodes cannot claim the same port;
    * a name is at most 255 characters (node names are atoms), not empty,
      valid UTF-8, with text on both sides of a single `@`.
  """

  @typedoc "A node name: an atom such as `:\"app-4001@host\"`, or the same as a charlist or binary."
  @type name :: node() | charlist() | String.t()

  @doc """
  The distribution port of the node named `name`.

  Raises `ArgumentError`, naming the input, the rule and the fix, when the
  name carries no valid port or is not a name at all.

  ## Examples

      iex> Caravan.Epmd.dist_port(:"app-name3434@example.net")
      3434
      iex> Caravan.Epmd.dist_port(:"app-name-4834@example.net")
      4834
      iex> Caravan.Epmd.dist_port(~c"likes-4001")
      4001
      iex> Caravan.Epmd.dist_port("likes@10.0.1.5")
      4370
  """
  @spec dist_port(name()) :: :inet.port_number()
  def dist_port(name) when is_atom(name) and name not in [nil, true, false],
    do: name |> Atom.to_string() |> port!()

  def dist_port(name) when is_binary(name), do: port!(name)

  def dist_port(name) when is_list(name) do
    case charlist_to_binary(name) do
      {:ok, binary} ->
        port!(binary)

      :error ->
        raise ArgumentError,
              "expected a node name as a charlist of Unicode code points, got: " <>
                inspect(name, limit: 20, printable_limit: 100)
    end
  end

  def dist_port(other) do
    raise ArgumentError,
          "expected a node name as an atom, charlist or binary (such as :\"app-4001@host\"), got: " <>
            inspect(other, limit: 20, printable_limit: 100)
  end

  defp port!(binary) do
    case Caravan.Native.dist_port(binary) do
      port when is_integer(port) -> port
      {:error, _reason, message} -> raise ArgumentError, message
    end
  end

  defp charlist_to_binary(list) do
    case :unicode.characters_to_binary(list) do
      binary when is_binary(binary) -> {:ok, binary}
      _incomplete_or_error -> :error
    end
  rescue
    ArgumentError -> :error
  end
end

defmodule Caravan.Bench.JSON do
  @moduledoc """
  A tiny JSON encoder for `bench/results.json` (no JSON package can be
  installed: hex.pm is unreachable). Encodes maps (atom or string keys),
  lists, strings, atoms, integers, finite floats, `true`, `false` and `nil`.
  """

  @doc "The JSON text of `value`, indented by two spaces per level."
  @spec encode(term()) :: String.t()
  def encode(value), do: value |> encode(0) |> IO.iodata_to_binary()

  defp encode(nil, _), do: "null"
  defp encode(true, _), do: "true"
  defp encode(false, _), do: "false"
  defp encode(atom, _) when is_atom(atom), do: string(Atom.to_string(atom))
  defp encode(int, _) when is_integer(int), do: Integer.to_string(int)
  defp encode(float, _) when is_float(float), do: :erlang.float_to_binary(float, [:short])
  defp encode(text, _) when is_binary(text), do: string(text)
  defp encode([], _), do: "[]"
  defp encode(%{} = map, _) when map_size(map) == 0, do: "{}"

  defp encode(list, level) when is_list(list) do
    inner = Enum.map(list, &[indent(level + 1), encode(&1, level + 1)])
    ["[\n", Enum.intersperse(inner, ",\n"), "\n", indent(level), "]"]
  end

  defp encode(%{} = map, level) do
    inner =
      map
      |> Enum.map(fn {k, v} -> {to_string(k), v} end)
      |> Enum.sort()
      |> Enum.map(fn {k, v} -> [indent(level + 1), string(k), ": ", encode(v, level + 1)] end)

    ["{\n", Enum.intersperse(inner, ",\n"), "\n", indent(level), "}"]
  end

  defp indent(level), do: String.duplicate("  ", level)

  defp string(text) do
    escaped =
      for <<c::utf8 <- text>>, into: "" do
        case c do
          ?" -> "\\\""
          ?\\ -> "\\\\"
          ?\n -> "\\n"
          ?\r -> "\\r"
          ?\t -> "\\t"
          c when c < 0x20 -> "\\u" <> String.pad_leading(Integer.to_string(c, 16), 4, "0")
          c -> <<c::utf8>>
        end
      end

    [?", escaped, ?"]
  end
end

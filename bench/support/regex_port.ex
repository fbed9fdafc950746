defmodule Caravan.Bench.RegexPort do
  @moduledoc """
  The baseline for `Caravan.Epmd.dist_port/1`: the same rule written the way
  the original Elixir library did it, with a regex over the name string.
  Written fresh for the benchmark; not used by Caravan.
  """

  @port_regex ~r/(\d+)$/

  @doc "The distribution port of `name` (atom, charlist or binary), or raises."
  def dist_port(name) when is_atom(name), do: name |> Atom.to_string() |> from_string()
  def dist_port(name) when is_list(name), do: name |> List.to_string() |> from_string()
  def dist_port(name) when is_binary(name), do: from_string(name)

  defp from_string(name) do
    local = name |> String.split("@", parts: 2) |> hd()

    case Regex.run(@port_regex, local, capture: :all_but_first) do
      nil ->
        4370

      [digits] ->
        if String.starts_with?(digits, "0") and byte_size(digits) > 1,
          do: raise(ArgumentError, "leading zero")

        case String.to_integer(digits) do
          port when port in 1..65535 -> port
          _ -> raise ArgumentError, "not a port"
        end
    end
  end
end

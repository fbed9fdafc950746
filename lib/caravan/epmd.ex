defmodule Caravan.Epmd do
  @moduledoc """
  Where a node's distribution port comes from: its own name.

  The port is the decimal number at the end of the part before `@` (or of the
  whole name when there is no `@`); a dash before it is optional. A name with
  no trailing digits gets 4370. So `likes-4001@10.0.1.5` and `likes4001@h`
  listen on 4001, and `likes@h` on 4370.

  Remote shells and rpc helpers are the exception: `rem-<hex>-<name>`,
  `rpc-<hex>-<name>` and `remsh<hex>-<name>` carry their target's port, so
  they listen on an ephemeral one instead (`role/1`, `listen_port/1`).

  The rules live in Rust (`native/caravan_core/src/node_name.rs`); this
  module converts the name and raises on bad input. The modules the VM
  calls are `Caravan.Epmd.Client` (`-epmd_module`) and
  `Caravan.Epmd.Dist_dist` (`-proto_dist Elixir.Caravan.Epmd.Dist`).

  Names are checked, never guessed at:

    * trailing digits must be a TCP port, 1..65535 (`app-0@h` and
      `app-99999@h` are errors);
    * leading zeros are rejected (`app-04001@h`): one port has one spelling,
      so two differently named nodes cannot claim the same port;
    * a name is at most 255 characters (node names are atoms), not empty,
      valid UTF-8, with text on both sides of a single `@`.

  The guide [Distribution without epmd](distribution.md) covers where a
  node's port comes from, remote shells and rpc.
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
  def dist_port(name)
      when is_binary(name) or is_list(name) or
             (is_atom(name) and name not in [nil, true, false]) do
    name |> to_binary!() |> port!()
  end

  def dist_port(name), do: raise(ArgumentError, not_a_name(name))

  @doc """
  What the name `name` says about its node: `{:node, port}` for a node that
  listens on `port`, or `{:helper, target}` for a remote shell or rpc helper
  attached to the node named `target`.

  Helpers are what release tooling starts next to a running node:
  `rem-<id>-<target>` (`bin/app remote`), `rpc-<id>-<target>` (`bin/app rpc`)
  and `remsh<id>-<target>` (relx, rebar3), where `<id>` is 1 to 16 hex
  digits. Their names end in their target's digits, so they listen on an
  ephemeral port instead, and no peer looks them up by name.

  Raises `ArgumentError` as `dist_port/1` does.

  ## Examples

      iex> Caravan.Epmd.role(:"likes-4001@10.0.1.5")
      {:node, 4001}
      iex> Caravan.Epmd.role(:"rem-1a2b-likes-4001@10.0.1.5")
      {:helper, "likes-4001"}
      iex> Caravan.Epmd.role("rpc-gateway-4001@h")
      {:node, 4001}
  """
  @spec role(name()) :: {:node, :inet.port_number()} | {:helper, String.t()}
  def role(name) do
    case Caravan.Native.node_role(to_binary!(name)) do
      {:error, _reason, message} -> raise ArgumentError, message
      role -> role
    end
  end

  @doc """
  The port the node named `name` listens on: its name's port, or `0` (an
  ephemeral port) for a remote shell or rpc helper (see `role/1`).

  ## Examples

      iex> Caravan.Epmd.listen_port(:"likes-4001@10.0.1.5")
      4001
      iex> Caravan.Epmd.listen_port(:"rpc-03f9-likes-4001@10.0.1.5")
      0
  """
  @spec listen_port(name()) :: :inet.port_number()
  def listen_port(name) do
    case role(name) do
      {:node, port} -> port
      {:helper, _target} -> 0
    end
  end

  defp to_binary!(name) when is_atom(name) and name not in [nil, true, false],
    do: Atom.to_string(name)

  defp to_binary!(name) when is_binary(name), do: name

  defp to_binary!(name) when is_list(name) do
    case Caravan.Text.to_binary(name) do
      {:ok, binary} ->
        binary

      :error ->
        raise ArgumentError,
              "expected a node name as a charlist of Unicode code points, got: " <>
                inspect(name, limit: 20, printable_limit: 100)
    end
  end

  defp to_binary!(other), do: raise(ArgumentError, not_a_name(other))

  defp not_a_name(other) do
    "expected a node name as an atom, charlist or binary (such as :\"app-4001@host\"), got: " <>
      inspect(other, limit: 20, printable_limit: 100)
  end

  defp port!(binary), do: binary |> Caravan.Native.dist_port() |> port_result!()

  defp port_result!(port) when is_integer(port), do: port
  defp port_result!({:error, _reason, message}), do: raise(ArgumentError, message)
end

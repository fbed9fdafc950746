defmodule Caravan.Epmd.Client do
  @moduledoc """
  The `-epmd_module`: answers OTP's port-mapper questions from node names,
  with no epmd daemon.

      -proto_dist Elixir.Caravan.Epmd.Dist -start_epmd false -epmd_module Elixir.Caravan.Epmd.Client

  OTP asks this module where a node listens and where its peers listen. A
  node named `likes-4001@10.0.1.5` listens on 4001, and a peer named
  `likes-4002@10.0.1.6` is reached at 10.0.1.6 port 4002: the rules live in
  Rust (`Caravan.Epmd`). Because `listen_port_please/2` fixes the listen
  port, this module works with any `-proto_dist`: Caravan's own
  (`Caravan.Epmd.Dist_dist`), `inet_tcp`, `inet6_tcp` or `inet_tls`.

  ## Callbacks

  Every callback OTP 25 to 29 use (see `erl_epmd`; the same in all five):

    * `start_link/0` - nothing to run: `:ignore`.
    * `register_node/2,3` - records the name and the port actually bound,
      for `names/1`, and returns a random creation (see below). The family
      is `inet_tcp`/`inet6_tcp` on OTP 25 and `inet`/`inet6` from OTP 26;
      both are accepted.
    * `listen_port_please/2` - the port this node listens on: its name's
      port, or `0` (an ephemeral port, or `inet_dist_listen_min/max` when
      set) for remote shells and rpc helpers (`rem-<id>-<name>`,
      `rpc-<id>-<name>`, `remsh<id>-<name>`; see `Caravan.Epmd.role/1`).
      Without this, a remote shell attached to `app-4370` would try to
      listen on 4370 and fail with `eaddrinuse`.
    * `port_please/2,3` - `{:port, port, 6}` from the peer's name, or
      `:noport` for a helper name (helpers cannot be found by name) or a
      name that carries no valid port.
    * `address_please/3` - `{:ok, ip, port, 6}` in one step, so OTP skips
      `port_please`; see "Addresses" below.
    * `names/1` - `{:ok, [{name, port}]}`: what this node registered, when
      asked about this host; `{:error, :address}` for other hosts.

  ## Creation

  A node's creation tells its incarnations apart: pids of a node that
  restarted under the same name must not look alive. OTP >= 23 takes 32-bit
  creations; the ones handed out here are uniform over 4..2^32-1, drawn
  from the OS random source (net_kernel itself avoids 0..3: 0 marks a node
  that is not alive, 1..3 are what 2-bit-era modules return).

  ## Distribution version

  Version 6, the handshake of OTP 23 and later, which is
  `ERL_DIST_VER_LOW` and `ERL_DIST_VER_HIGH` in OTP 25's `dist.hrl`. OTP
  25's `dist_util` does not read the value at all (it always starts the
  version 6 handshake; a node answering 4, 5, 6 or 7 here connects the
  same). OTP 25's own `erl_epmd` answers 5 for `-erl_epmd_port` (it is built
  with `-Depmd_dist_low=5`), a leftover for OTP 22 peers, which OTP 25
  cannot talk to anyway. OTP 23 and 24 did read it: 5 made them start the
  old handshake, 6 the new one.

  ## Addresses

  `address_please/3` honours the family it is given (`:inet` or `:inet6`)
  and never blocks on anything it can answer itself:

    * an IP literal (`app-4001@10.0.1.5`, `app-4001@::1`) is parsed, not
      looked up;
    * a Consul address name (`app-4001@0a000105.addr.dc1.consul`) is
      decoded locally (`Caravan.Native.decode_consul_addr/1`);
    * any other host goes through `:inet.getaddr/2` (the hosts file, DNS or
      whatever `ERL_INETRC` configures).

  An address of the wrong family is `{:error, :eafnosupport}`, as
  `:inet.getaddr/2` answers for tuples. From OTP 25 this runs inside
  net_kernel (`select/1`), so the only slow path is a real name lookup.

  These functions are called by the VM while it boots, before Logger or any
  Elixir application has started: they read no application environment and
  log through Erlang's `:logger`.

  The guide [Distribution without epmd](distribution.md#what-the-epmd-module-answers)
  lists what each callback answers.
  """

  @dist_version 6
  @registration {__MODULE__, :registration}

  @typedoc "A node's local name (the part before `@`), as OTP passes it."
  @type name :: atom() | charlist() | String.t()

  @typedoc "A host as OTP passes it: a name or an IP address."
  @type host :: atom() | charlist() | :inet.ip_address()

  @typedoc "The family a distribution module works in; OTP 25 passes its driver module."
  @type family :: :inet | :inet6 | :inet_tcp | :inet6_tcp

  @doc "Nothing to start: there is no daemon to talk to."
  @spec start_link() :: :ignore
  def start_link, do: :ignore

  @doc "Same as `register_node(name, port, :inet)`."
  @spec register_node(name(), :inet.port_number()) :: {:ok, pos_integer()}
  def register_node(name, port), do: register_node(name, port, :inet)

  @doc """
  Records that this node, `name`, listens on `port` (for `names/1`) and
  returns a fresh random creation in 4..2^32-1.
  """
  @spec register_node(name(), :inet.port_number(), family() | atom()) :: {:ok, pos_integer()}
  def register_node(name, port, family) when is_integer(port) and port >= 0 do
    :persistent_term.put(@registration, {to_charlist!(name), port, normalize_family(family)})
    {:ok, creation()}
  end

  @doc """
  The port this node listens on, from its own name: `{:ok, port}`, or
  `{:ok, 0}` for a remote shell or rpc helper (an ephemeral port).

  A name that carries no valid port is logged and raises `ArgumentError`,
  naming the name, the rule and the fix: the node cannot start.
  """
  @spec listen_port_please(name(), host()) :: {:ok, :inet.port_number()}
  def listen_port_please(name, _host) do
    case role(name) do
      {:node, port} ->
        {:ok, port}

      {:helper, _target} ->
        {:ok, 0}

      {:error, message} ->
        Caravan.BootLog.log(:error, "Caravan: this node cannot listen: " <> message)
        raise ArgumentError, message
    end
  end

  @doc "Same as `port_please(name, host, :infinity)`."
  @spec port_please(name(), host()) :: {:port, :inet.port_number(), 6} | :noport
  def port_please(name, host), do: port_please(name, host, :infinity)

  @doc """
  The port the node `name` listens on, from its name, and the distribution
  version: `{:port, port, 6}`. Helper names and names with no valid port
  are `:noport`. Takes no time: `host` and `timeout` are not used.
  """
  @spec port_please(name(), host(), timeout()) :: {:port, :inet.port_number(), 6} | :noport
  def port_please(name, _host, _timeout) do
    case role(name) do
      {:node, port} ->
        {:port, port, @dist_version}

      {:helper, _target} ->
        :noport

      {:error, message} ->
        Caravan.BootLog.log(:warning, "Caravan: no port for node #{printable(name)}: #{message}")
        :noport
    end
  end

  @doc """
  The address and port of the node `name` on `host`, in the family
  `family`: `{:ok, ip, port, 6}`.

  Errors: `{:error, :noport}` for a helper name or a name with no valid
  port (logged), `{:error, :eafnosupport}` for an address of the other
  family, and whatever `:inet.getaddr/2` answers for a host it cannot
  resolve. Never raises.
  """
  @spec address_please(name(), host(), :inet | :inet6) ::
          {:ok, :inet.ip_address(), :inet.port_number(), 6} | {:error, term()}
  def address_please(name, host, family) do
    case role(name) do
      {:node, port} ->
        case resolve(host, family) do
          {:ok, ip} -> {:ok, ip, port, @dist_version}
          {:error, _} = error -> error
        end

      {:helper, _target} ->
        {:error, :noport}

      {:error, message} ->
        Caravan.BootLog.log(:warning, "Caravan: cannot reach node #{printable(name)}: #{message}")
        {:error, :noport}
    end
  end

  @doc """
  The nodes registered on `host`: this node's name and port when `host` is
  this host (its node host, hostname, `localhost`, a loopback address or an
  address of one of its interfaces), `{:ok, []}` if this node has not
  registered, and `{:error, :address}` for any other host, about which
  nothing is known without a port mapper.

  `:net_adm.names/0` calls this.
  """
  @spec names(host()) :: {:ok, [{charlist(), :inet.port_number()}]} | {:error, :address}
  def names(host) do
    if local_host?(host) do
      case :persistent_term.get(@registration, nil) do
        {name, port, _family} -> {:ok, [{name, port}]}
        nil -> {:ok, []}
      end
    else
      {:error, :address}
    end
  end

  # -- names -------------------------------------------------------------

  defp role(name) do
    case Caravan.Text.to_binary(name) do
      {:ok, binary} ->
        case Caravan.Native.node_role(binary) do
          {:error, _reason, message} -> {:error, message}
          role -> role
        end

      :error ->
        {:error, "expected a node name as an atom, charlist or binary, got: #{printable(name)}"}
    end
  end

  defp to_charlist!(name) when is_atom(name), do: Atom.to_charlist(name)
  defp to_charlist!(name) when is_list(name), do: name
  defp to_charlist!(name) when is_binary(name), do: :unicode.characters_to_list(name)

  defp normalize_family(:inet_tcp), do: :inet
  defp normalize_family(:inet6_tcp), do: :inet6
  defp normalize_family(family), do: family

  defp creation do
    case Caravan.Native.random_creation() do
      creation when is_integer(creation) ->
        creation

      {:error, _reason, message} ->
        Caravan.BootLog.log(
          :warning,
          "Caravan: #{message}; using a pseudo-random creation instead"
        )

        # 4..2^32-1, as net_kernel's own fallback.
        :rand.uniform(0xFFFFFFFF - 3) + 3
    end
  end

  # -- addresses ---------------------------------------------------------

  defp resolve(ip, family) when is_tuple(ip), do: same_family(ip, family)
  defp resolve(host, family) when is_atom(host), do: resolve(Atom.to_charlist(host), family)

  defp resolve(host, family) when is_list(host) do
    case literal(host) do
      {:ok, ip} -> same_family(ip, family)
      :error -> :inet.getaddr(host, family)
    end
  end

  defp resolve(host, family) when is_binary(host),
    do: resolve(:unicode.characters_to_list(host), family)

  defp resolve(_host, _family), do: {:error, :einval}

  # An address written in the host itself: an IP literal or a Consul
  # <hex>.addr.<dc>.consul name. Neither takes a query.
  defp literal(host) do
    case :inet.parse_strict_address(host) do
      {:ok, ip} ->
        {:ok, ip}

      {:error, _} ->
        with {:ok, binary} <- Caravan.Text.to_binary(host),
             ip when is_tuple(ip) <- Caravan.Native.decode_consul_addr(binary) do
          {:ok, ip}
        else
          _ -> :error
        end
    end
  end

  defp same_family({_, _, _, _} = ip, :inet), do: {:ok, ip}
  defp same_family({_, _, _, _, _, _, _, _} = ip, :inet6), do: {:ok, ip}
  defp same_family(_ip, _family), do: {:error, :eafnosupport}

  # -- names/1: is a host this host? --------------------------------------

  defp local_host?(host) when is_tuple(host), do: local_ip?(host)
  defp local_host?(host) when is_atom(host), do: local_host?(Atom.to_charlist(host))

  defp local_host?(host) when is_list(host) do
    case :inet.parse_strict_address(host) do
      {:ok, ip} -> local_ip?(ip)
      {:error, _} -> lowercase(host) in local_names()
    end
  end

  defp local_host?(host) when is_binary(host),
    do: local_host?(:unicode.characters_to_list(host))

  defp local_host?(_host), do: false

  defp local_names do
    {:ok, hostname} = :inet.gethostname()

    with_domain =
      case :inet_db.res_option(:domain) do
        [] -> []
        domain -> [hostname ++ ~c"." ++ domain]
      end

    own =
      case :string.split(Atom.to_charlist(node()), ~c"@") do
        [_name, node_host] -> [node_host]
        _ -> []
      end

    Enum.map([~c"localhost", hostname | with_domain ++ own], &lowercase/1)
  end

  defp lowercase(chars), do: :string.lowercase(chars)

  defp local_ip?({127, _, _, _}), do: true
  defp local_ip?({0, 0, 0, 0, 0, 0, 0, 1}), do: true

  defp local_ip?(ip) do
    case :inet.getifaddrs() do
      {:ok, interfaces} ->
        Enum.any?(interfaces, fn {_name, opts} -> {:addr, ip} in opts end)

      {:error, _} ->
        false
    end
  end

  # -- logging ---------------------------------------------------------------

  defp printable(term), do: :io_lib.format(~c"~tP", [term, 10]) |> IO.chardata_to_string()
end

defmodule Caravan.Epmd.Dist_dist do
  @moduledoc """
  The `-proto_dist Elixir.Caravan.Epmd.Dist` module: OTP's own distribution
  transport, with errors that say what went wrong.

  OTP appends `_dist` to the `-proto_dist` value, so
  `-proto_dist Elixir.Caravan.Epmd.Dist` loads this module. Every callback
  is forwarded to an underlying OTP module, `:inet_tcp_dist` unless chosen
  otherwise (below). The listen port follows the node's name because the
  underlying module asks the epmd module (`Caravan.Epmd.Client`) for it, so
  use both flags:

      -proto_dist Elixir.Caravan.Epmd.Dist -start_epmd false -epmd_module Elixir.Caravan.Epmd.Client

  What this module adds over naming the OTP module directly: a node that
  cannot listen says which node, which port and why, instead of a bare
  `eaddrinuse`:

      Caravan: node likes-4001@10.0.1.5 cannot listen on port 4001: address
      already in use (eaddrinuse). Another process holds that port ...

  and the transport can be chosen by one flag that works before any
  application starts.

  ## Choosing the transport: `-caravan_dist`

  An `init` argument, read when the VM starts distribution (it is an
  emulator flag, so it works in `vm.args`, `--erl "..."`, `ERL_FLAGS` and
  `ELIXIR_ERL_OPTIONS`; no application environment is involved):

  | flag | underlying module |
  |---|---|
  | (none) or `-caravan_dist inet_tcp` | `:inet_tcp_dist` (IPv4) |
  | `-caravan_dist inet6_tcp` | `:inet6_tcp_dist` (IPv6) |
  | `-caravan_dist inet_tls` | `:inet_tls_dist` (TLS over IPv4; needs `:ssl` and `-ssl_dist_optfile`) |
  | `-caravan_dist inet6_tls` | `:inet6_tls_dist` (TLS over IPv6) |

  When given more than once, the last one wins. Any other value stops the
  node with an error that lists these. Running OTP's modules directly
  (`-proto_dist inet6_tcp`, `-proto_dist inet_tls`) with
  `Caravan.Epmd.Client` works as well.

  ## Callbacks

  `listen/1,2`, `accept/1`, `accept_connection/5`, `setup/5`, `close/1`,
  `select/1`, `address/0,1` (used with `-dist_listen false`), `setopts/2`,
  `getopts/2`, `childspecs/0` and `is_node_name/1`. Optional callbacks the
  underlying module lacks answer as net_kernel does without them:
  `{:error, :enotsup}` for `setopts/2`/`getopts/2`, `{:ok, []}` for
  `childspecs/0`.

  IPv6 and TLS are in the guide [Distribution without epmd](distribution.md);
  TLS in production in [Running on Nomad + Consul](nomad-consul.md).
  """

  @transports [
    {~c"inet_tcp", :inet_tcp_dist},
    {~c"inet6_tcp", :inet6_tcp_dist},
    {~c"inet_tls", :inet_tls_dist},
    {~c"inet6_tls", :inet6_tls_dist}
  ]
  @cache {__MODULE__, :underlying}

  @doc """
  The OTP module every callback is forwarded to, as chosen by
  `-caravan_dist` (default `:inet_tcp_dist`).

  Raises `ArgumentError` naming the value and the choices when
  `-caravan_dist` names no known transport or its module cannot be loaded.
  """
  @spec underlying() :: module()
  def underlying do
    case fetch_underlying() do
      {:ok, module} ->
        module

      {:error, message} ->
        log_error(message)
        raise ArgumentError, message
    end
  end

  @doc "Listens for this node, `name` on `host`; see the module doc for errors."
  @spec listen(atom(), charlist()) :: {:ok, {term(), tuple(), integer()}} | {:error, term()}
  def listen(name, host) do
    with {:ok, module} <- fetch_underlying(),
         {:ok, port} <- name_port(name) do
      warn_unless_caravan_epmd()

      result =
        if function_exported?(module, :listen, 2),
          do: module.listen(name, host),
          else: module.listen(name)

      case result do
        {:ok, _} = ok ->
          ok

        {:error, reason} ->
          message = listen_error(name, host, port, reason)
          log_error(message)
          {:error, {reason, String.to_charlist(message)}}
      end
    else
      {:error, message} ->
        log_error(message)
        {:error, String.to_charlist(message)}
    end
  end

  @doc "Same as `listen/2` on this host (`:inet.gethostname/0`)."
  @spec listen(atom()) :: {:ok, {term(), tuple(), integer()}} | {:error, term()}
  def listen(name) do
    {:ok, host} = :inet.gethostname()
    listen(name, host)
  end

  @doc "Starts accepting connections on `listen` (forwarded)."
  @spec accept(term()) :: pid()
  def accept(listen), do: underlying().accept(listen)

  @doc "Takes over an accepted connection for net_kernel (forwarded)."
  @spec accept_connection(pid(), term(), node(), [node()], non_neg_integer()) :: pid()
  def accept_connection(accept_pid, socket, my_node, allowed, setup_time),
    do: underlying().accept_connection(accept_pid, socket, my_node, allowed, setup_time)

  @doc "Connects to `node` (forwarded; the port comes from `Caravan.Epmd.Client`)."
  @spec setup(node(), atom(), node(), :longnames | :shortnames, non_neg_integer()) :: pid()
  def setup(node, type, my_node, long_or_short_names, setup_time),
    do: underlying().setup(node, type, my_node, long_or_short_names, setup_time)

  @doc "Closes the listen socket (forwarded)."
  @spec close(term()) :: :ok
  def close(listen), do: underlying().close(listen)

  @doc "Whether this transport can reach `node` (forwarded)."
  @spec select(node()) :: boolean()
  def select(node), do: underlying().select(node)

  @doc "This node's address record when it does not listen (`-dist_listen false`; forwarded)."
  @spec address() :: tuple()
  def address, do: underlying().address()

  @doc "`address/0` for `host`, as OTP 26+ asks first (forwarded to `address/1` or `address/0`)."
  @spec address(charlist()) :: tuple()
  def address(host) do
    module = underlying()

    if function_exported?(module, :address, 1),
      do: module.address(host),
      else: module.address()
  end

  @doc "Sets socket options on the listen socket (forwarded, or `{:error, :enotsup}`)."
  @spec setopts(term(), [term()]) :: :ok | {:error, term()}
  def setopts(listen, opts), do: optional(:setopts, [listen, opts], {:error, :enotsup})

  @doc "Reads socket options of the listen socket (forwarded, or `{:error, :enotsup}`)."
  @spec getopts(term(), [atom()]) :: {:ok, [term()]} | {:error, term()}
  def getopts(listen, opts), do: optional(:getopts, [listen, opts], {:error, :enotsup})

  @doc "Child specs the transport runs under kernel (TLS has some; forwarded, or `{:ok, []}`)."
  @spec childspecs() :: {:ok, [Supervisor.child_spec() | tuple()]}
  def childspecs, do: optional(:childspecs, [], {:ok, []})

  @doc "Whether `node` is a valid node name for this transport (forwarded)."
  @spec is_node_name(term()) :: boolean()
  def is_node_name(node) do
    module = underlying()

    if function_exported?(module, :is_node_name, 1),
      do: module.is_node_name(node),
      else: :dist_util.is_node_name(node)
  end

  defp optional(fun, args, default) do
    module = underlying()

    if function_exported?(module, fun, length(args)),
      do: apply(module, fun, args),
      else: default
  end

  # -- the underlying module ------------------------------------------------

  defp fetch_underlying do
    case :persistent_term.get(@cache, nil) do
      nil ->
        with {:ok, module} <- choose(:init.get_argument(:caravan_dist)),
             {:module, ^module} <- load(module) do
          :persistent_term.put(@cache, module)
          {:ok, module}
        end

      module ->
        {:ok, module}
    end
  end

  defp choose(:error), do: {:ok, :inet_tcp_dist}

  defp choose({:ok, values}) do
    case List.last(values) do
      [value | _] ->
        case List.keyfind(@transports, value, 0) do
          {_, module} ->
            {:ok, module}

          nil ->
            {:error,
             "-caravan_dist #{value} names no transport Caravan knows; use one of " <>
               "#{choices()} (for example -caravan_dist inet6_tcp), or leave the flag out for inet_tcp"}
        end

      [] ->
        {:error,
         "-caravan_dist was given without a value; use one of #{choices()}, " <>
           "or leave the flag out for inet_tcp"}
    end
  end

  defp choices, do: Enum.map_join(@transports, ", ", fn {name, _} -> name end)

  defp load(module) do
    case Code.ensure_loaded(module) do
      {:module, ^module} ->
        {:module, module}

      {:error, reason} ->
        {:error,
         "the distribution module #{module} chosen by -caravan_dist could not be loaded " <>
           "(#{reason}); TLS transports need the :ssl application on the code path " <>
           "(in a release: extra_applications: [:ssl])"}
    end
  end

  # The listen port follows the name only through Caravan's epmd module.
  # net_kernel:epmd_module/0 answers for -epmd_module and, from OTP 27 (not 26), for
  # the kernel parameter epmd_module too (and raises when both are given).
  defp warn_unless_caravan_epmd do
    case epmd_module() do
      Caravan.Epmd.Client ->
        :ok

      other ->
        Caravan.BootLog.log(
          :warning,
          "Caravan: -proto_dist Elixir.Caravan.Epmd.Dist runs with the epmd module #{inspect(other)}, " <>
            "so the listen port and peers' ports do not come from node names; add " <>
            "-epmd_module Elixir.Caravan.Epmd.Client (OTP 27 and later: or -kernel epmd_module 'Elixir.Caravan.Epmd.Client')"
        )
    end
  end

  defp epmd_module do
    :net_kernel.epmd_module()
  rescue
    error -> {:invalid, Exception.message(error)}
  end

  # -- errors -----------------------------------------------------------------

  defp name_port(name) do
    case Caravan.Native.node_role(to_string(name)) do
      {:node, port} -> {:ok, port}
      {:helper, _target} -> {:ok, 0}
      {:error, _reason, message} -> {:error, "Caravan: this node cannot listen: " <> message}
    end
  end

  defp listen_error(name, host, port, reason) do
    where =
      case :application.get_env(:kernel, :inet_dist_use_interface) do
        {:ok, ip} -> " on #{:inet.ntoa(ip)}"
        :undefined -> ""
      end

    what = if port == 0, do: "an ephemeral port#{where}", else: "port #{port}#{where}"

    "Caravan: node #{name}@#{host} cannot listen on #{what}: #{cause(reason)}" <>
      fix(reason, port)
  end

  defp cause(reason) when is_atom(reason) do
    case :inet.format_error(reason) do
      ~c"unknown POSIX error" ++ _ -> "#{reason}"
      text -> "#{text} (#{reason})"
    end
  end

  defp cause(reason), do: :io_lib.format(~c"~tP", [reason, 10]) |> IO.chardata_to_string()

  defp fix(:eaddrinuse, 0),
    do: ". Every port in inet_dist_listen_min..inet_dist_listen_max is taken; widen the range."

  defp fix(:eaddrinuse, port),
    do:
      ". Another process holds that port (see `ss -ltnp 'sport = :#{port}'`): stop it, " <>
        "or give this node a name ending in a free port, as in \"app-4371@host\"."

  defp fix(:eaddrnotavail, _port),
    do:
      ". The address is not on this host: check -kernel inet_dist_use_interface and the node's host."

  defp fix(:eacces, _port),
    do: ". Ports below 1024 need privileges: name the node after a port above 1023."

  defp fix(_reason, _port), do: "."

  defp log_error(message), do: Caravan.BootLog.log(:error, message)
end

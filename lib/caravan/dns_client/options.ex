defmodule Caravan.DnsClient.Options do
  @moduledoc """
  The options of a DNS lookup: defaults, `config :caravan, :dns`, and checks.

  Every `Caravan.DnsClient` implementation takes the same options. Each comes
  from the call's `opts`, else from the application environment, else from
  the default:

      # config/runtime.exs
      config :caravan, :dns,
        nameservers: ["127.0.0.1:8600"],
        timeout: 2_000

  | option | default | meaning |
  |---|---|---|
  | `:nameservers` | `:system` | `:system` or `[]` (the nameservers in `/etc/resolv.conf`, read at each lookup) or a list of 1 to 64 nameservers, in order of preference |
  | `:timeout` | `5000` | milliseconds for the whole lookup: every attempt, the TCP retry, address lookups (1..600000) |
  | `:attempts` | `2` | how many queries are sent (1..16): the next goes out `timeout / attempts` after the last, or at once after a failed one, in turn to each nameserver; a reply to any of them is taken until `:timeout` |
  | `:transport` | `:udp` | `:udp` (EDNS with a 4096-byte payload, retried over TCP when the answer is truncated) or `:tcp` (always; for Consul without `dns_config.enable_truncate`, which trims UDP answers without saying so) |
  | `:resolve_addresses` | `false` | look up A/AAAA records for targets that arrived with no address (no glue, not a Consul `.addr.` name) |
  | `:max_records` | `1024` | SRV records kept; more are dropped and logged (1..65535) |

  A nameserver is an IP address with an optional port (53 when left out),
  in any of these forms:

    * `"127.0.0.1:8600"`, `"127.0.0.1"`, `"[::1]:8600"`, `"[::1]"`
    * `{"127.0.0.1", 8600}`, `{"10.0.183.34", "8700"}`, `{"::1", 8600}`
    * `{{127, 0, 0, 1}, 8600}`, `{{0, 0, 0, 0, 0, 0, 0, 1}, 8600}`

  Charlists are accepted wherever a string is. Names are refused (asking
  for a nameserver's address would need a nameserver), and so is an IPv6
  string with a port but no brackets (`"::1:8600"` is itself an address).

  The parsing and range checks live in Rust (`caravan_core::dns::nameserver`
  and `caravan_core::dns::options`); this module merges the sources and
  raises `ArgumentError` naming the key, the value and what was expected.

  See also the guide [Discovery and the strategy](discovery.md#the-dns-client).
  """

  @defaults [
    nameservers: :system,
    timeout: 5000,
    attempts: 2,
    transport: :udp,
    resolve_addresses: false,
    max_records: 1024
  ]

  @typedoc "A nameserver as given by the user (see the module documentation)."
  @type nameserver ::
          String.t()
          | charlist()
          | {String.t() | charlist() | :inet.ip_address(), :inet.port_number() | String.t()}

  @typedoc "A lookup option."
  @type option ::
          {:nameservers, :system | [nameserver()]}
          | {:timeout, pos_integer()}
          | {:attempts, pos_integer()}
          | {:transport, :udp | :tcp}
          | {:resolve_addresses, boolean()}
          | {:max_records, pos_integer()}

  @typedoc "Validated options: nameservers as `{ip_tuple, port}`."
  @type t :: %{
          nameservers: :system | [{:inet.ip_address(), :inet.port_number()}],
          timeout: pos_integer(),
          attempts: pos_integer(),
          transport: :udp | :tcp,
          resolve_addresses: boolean(),
          max_records: pos_integer()
        }

  @doc "The defaults, before `config :caravan, :dns` and the call's options."
  @spec defaults() :: [option()]
  def defaults, do: @defaults

  @doc """
  Merges the defaults, `config :caravan, :dns` and `opts` (in that order of
  precedence, lowest first) and checks the result.

  Raises `ArgumentError` for an unknown key, a value of the wrong type or
  range, or a malformed nameserver (naming the entry as written).
  """
  @spec validate!([option()]) :: t()
  def validate!(opts) when is_list(opts) do
    config = Application.get_env(:caravan, :dns, [])
    config = known!(config, "config :caravan, :dns")
    opts = known!(opts, "options")
    merged = @defaults |> Keyword.merge(config) |> Keyword.merge(opts)

    options = %{
      nameservers: nameservers!(merged[:nameservers]),
      timeout: integer!(merged, :timeout, "a number of milliseconds"),
      attempts: integer!(merged, :attempts, "a number of attempts"),
      transport: transport!(merged[:transport]),
      resolve_addresses: boolean!(merged, :resolve_addresses),
      max_records: integer!(merged, :max_records, "a number of records")
    }

    case Caravan.Native.dns_check_options(options) do
      :ok -> options
      {:error, :bad_option, message} -> raise ArgumentError, message
    end
  end

  def validate!(other) do
    raise ArgumentError,
          "expected DNS lookup options as a keyword list, got: #{inspect(other, limit: 20)}"
  end

  @doc false
  # Shared by the clients' `lookup/2` for a query that is not a string.
  @spec not_a_query!(term()) :: no_return()
  def not_a_query!(query) do
    raise ArgumentError,
          "expected the DNS query to be a string such as \"likes-dist.service.consul\", got: " <>
            inspect(query, limit: 20)
  end

  defp known!(opts, where) do
    unless Keyword.keyword?(opts) do
      raise ArgumentError,
            "expected #{where} to be a keyword list, got: #{inspect(opts, limit: 20)}"
    end

    case Keyword.keys(opts) -- Keyword.keys(@defaults) do
      [] ->
        opts

      unknown ->
        raise ArgumentError,
              "unknown DNS option(s) #{inspect(Enum.uniq(unknown))} in #{where}; " <>
                "the options are #{inspect(Keyword.keys(@defaults))}"
    end
  end

  defp integer!(opts, key, what), do: typed!(opts, key, &is_integer/1, "an integer (#{what})")
  defp boolean!(opts, key), do: typed!(opts, key, &is_boolean/1, "true or false")

  defp typed!(opts, key, valid?, expected) do
    value = Keyword.fetch!(opts, key)

    if valid?.(value) do
      value
    else
      raise ArgumentError,
            "expected #{inspect(key)} to be #{expected}, got: #{inspect(value, limit: 20)}"
    end
  end

  defp transport!(transport) when transport in [:udp, :tcp], do: transport

  defp transport!(other) do
    raise ArgumentError,
          "expected :transport to be :udp or :tcp, got: #{inspect(other, limit: 20)}"
  end

  defp nameservers!(:system), do: :system
  # The original library's default, and its way to say "the system resolver".
  defp nameservers!([]), do: :system

  defp nameservers!([c | _] = list) when is_integer(c) do
    raise ArgumentError,
          "expected :nameservers to be a list of nameservers, got a single one: " <>
            "#{inspect(list, limit: 20)}; wrap it in a list, as in [#{inspect(list, limit: 20)}]"
  end

  defp nameservers!([_ | _] = list), do: Enum.map(list, &nameserver!/1)

  defp nameservers!(other) do
    raise ArgumentError,
          "expected :nameservers to be :system or a list of nameservers " <>
            "such as [\"127.0.0.1:8600\"], got: #{inspect(other, limit: 20)}"
  end

  defp nameserver!(entry) do
    case Caravan.Native.dns_nameserver(to_binaries(entry)) do
      {ip, port} ->
        {ip, port}

      {:error, :bad_nameserver, message} ->
        raise ArgumentError,
              "invalid DNS nameserver #{inspect(entry, limit: 20, printable_limit: 100)} " <>
                "in :nameservers: #{message}"
    end
  end

  # Charlists become binaries, so "127.0.0.1:8600" and '127.0.0.1:8600' are
  # one form to the NIF. Anything else passes through for the NIF to judge.
  defp to_binaries({host, port}), do: {charlist_to_binary(host), charlist_to_binary(port)}
  defp to_binaries(entry), do: charlist_to_binary(entry)

  defp charlist_to_binary(list) when is_list(list) do
    case Caravan.Text.to_binary(list) do
      {:ok, binary} -> binary
      :error -> list
    end
  end

  defp charlist_to_binary(other), do: other
end

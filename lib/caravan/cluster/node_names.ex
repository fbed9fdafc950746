defmodule Caravan.Cluster.NodeNames do
  @moduledoc """
  Where a DNS record becomes a peer's node name, and that name an atom,
  within a lifetime budget.

  `name/3` picks the host part (`node_host: :target` or `:address`) and has
  Rust build and validate `<node_sname>-<port>@<host>`
  (`caravan_core::peer_name`, through `Caravan.Native.peer_name/3`). Atoms are never garbage-collected, so a DNS
  server answering every poll with fresh names could otherwise fill the atom
  table and crash the VM. Each topology may therefore create at most
  `max_node_names` new atoms over the VM's life; names that already exist as
  atoms cost nothing. The count lives in a `:counters` reference in
  `:persistent_term`, so a restarted strategy does not get a fresh budget.

  The threat model is in the guide [Reliability and threat model](reliability.md#threat-model).
  """

  @doc """
  The node name a record gives, as a binary: `<sname>-<port>@<host>`, where
  the host is the SRV target (`:target`) or an IP address (`:address`: the
  record's first address, else the address a Consul `.addr.` target
  encodes). `{:error, message}` when the record cannot name a node.

  ## Examples

      iex> record = %{port: 4001, host: "0a000105.addr.dc1.consul", addresses: []}
      iex> Caravan.Cluster.NodeNames.name(record, "likes", :address)
      {:ok, "likes-4001@10.0.1.5"}
      iex> Caravan.Cluster.NodeNames.name(record, "likes", :target)
      {:ok, "likes-4001@0a000105.addr.dc1.consul"}
  """
  @spec name(map(), String.t(), :target | :address) :: {:ok, String.t()} | {:error, String.t()}
  def name(%{port: port} = record, sname, node_host) when is_integer(port) and port in 1..65535 do
    with {:ok, host} <- host(record, node_host) do
      case Caravan.Native.peer_name(sname, port, host) do
        name when is_binary(name) -> {:ok, name}
        {:error, _reason, message} -> {:error, message}
      end
    end
  end

  def name(%{port: port}, _sname, _node_host),
    do: {:error, "port #{inspect(port)} is not a TCP port"}

  def name(record, _sname, _node_host),
    do: {:error, "not a record: #{inspect(record, limit: 10)}"}

  defp host(%{host: host}, :target) when is_binary(host), do: {:ok, host}
  defp host(%{addresses: [address | _]}, :address), do: {:ok, address}

  defp host(%{host: host}, :address) when is_binary(host) do
    case Caravan.Native.decode_consul_addr(host) do
      nil ->
        {:error, "node_host is :address but the answer carries no address for #{inspect(host)}"}

      ip ->
        {:ok, ip}
    end
  end

  defp host(record, _node_host), do: {:error, "no usable host in #{inspect(record, limit: 10)}"}

  @doc """
  Returns the atom for the node name `name` (a binary built by
  `Caravan.Native.peer_name/3`). A name that is already an atom costs
  nothing; a new one is created only when `new?` (else `{:error, :not_yet}`)
  and while `topology` has created fewer than `budget` atoms.
  """
  @spec to_node(String.t(), atom(), pos_integer(), boolean()) ::
          {:ok, node()} | {:error, :budget_exhausted | :not_yet}
  def to_node(name, topology, budget, new? \\ true) when is_binary(name) do
    {:ok, String.to_existing_atom(name)}
  rescue
    ArgumentError -> if new?, do: mint(name, topology, budget), else: {:error, :not_yet}
  end

  @doc """
  Whether this node's distribution can reach a peer named `name` (a binary
  from `name/3`), given its name mode (`:net_kernel.longnames/0`: `true`,
  `false`, or `:ignored` when it is not distributed) and its transport's
  address family (`family/0`). OTP's rule (`inet_tcp_dist:splitnode/3`):
  short names (`--sname`) refuse a host with a dot, such as an IPv4 address
  or `a.node.dc1.consul`; long names (`--name`) refuse a host without one,
  unless it is an address of the transport's family (so an IPv6 address
  only over IPv6 distribution).

  ## Examples

      iex> Caravan.Cluster.NodeNames.reachable?("likes-4001@10.0.1.5", false, :inet)
      false
      iex> Caravan.Cluster.NodeNames.reachable?("likes-4001@10.0.1.5", true, :inet)
      true
      iex> Caravan.Cluster.NodeNames.reachable?("likes-4001@worker-3", true, :inet)
      false
      iex> Caravan.Cluster.NodeNames.reachable?("likes-4001@fd00::5", true, :inet6)
      true
      iex> Caravan.Cluster.NodeNames.reachable?("likes-4001@fd00::5", true, :inet)
      false
  """
  @spec reachable?(String.t(), boolean() | :ignored, :inet | :inet6) :: boolean()
  def reachable?(_name, :ignored, _family), do: true

  def reachable?(name, longnames, family) do
    [_, host] = String.split(name, "@", parts: 2)
    dotted = String.contains?(host, ".")

    cond do
      not longnames ->
        not dotted

      dotted ->
        true

      family == :inet6 ->
        match?({:ok, _}, :inet.parse_ipv6strict_address(String.to_charlist(host)))

      true ->
        false
    end
  end

  @doc """
  The address family of this node's distribution: `:inet6` when
  `-caravan_dist` or `-proto_dist` names an IPv6 transport, else `:inet`.
  """
  @spec family() :: :inet | :inet6
  def family do
    flags =
      for flag <- [:caravan_dist, :proto_dist],
          {:ok, values} <- [:init.get_argument(flag)],
          do: values

    # Each flag's values: one list of words per occurrence.
    if flags |> Enum.concat() |> Enum.concat() |> Enum.any?(&List.starts_with?(&1, ~c"inet6")),
      do: :inet6,
      else: :inet
  end

  @doc "How many atoms `topology` has created so far."
  @spec minted(atom()) :: non_neg_integer()
  def minted(topology), do: :counters.get(counter(topology), 1)

  defp mint(name, topology, budget) do
    counter = counter(topology)

    if :counters.get(counter, 1) < budget do
      :counters.add(counter, 1, 1)
      {:ok, String.to_atom(name)}
    else
      {:error, :budget_exhausted}
    end
  end

  defp counter(topology) do
    key = {__MODULE__, topology}

    case :persistent_term.get(key, nil) do
      nil ->
        # Two strategies of one topology may race here; the loser's counter is
        # dropped, which at worst lets one extra name through.
        counter = :counters.new(1, [:atomics])
        :persistent_term.put(key, counter)
        counter

      counter ->
        counter
    end
  end
end

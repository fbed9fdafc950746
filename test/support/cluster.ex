defmodule Caravan.Test.Cluster do
  @moduledoc """
  Clusters of real nodes running `Caravan.Cluster.DnsStrategy` against a
  real DNS server, for integration tests (built on `Caravan.Test.Nodes` and
  `Caravan.Test.Dnsmasq`).

      dns = Dnsmasq.start!(Cluster.records(@query, members))
      nodes = Cluster.start_members!(members, dns, poll_interval: 300)
      Cluster.await_mesh!(nodes)

  A member is `{name, ip}`: the node is started as `-name <name>`, bound to
  `ip` (`inet_dist_use_interface`), so several members may share one port
  on different loopback addresses, as Nomad allocations do. `records/3`
  lists members the way Consul does: `.addr.` targets with A glue
  (`node_host: :address`), or `.node.` targets resolved through an
  `ERL_INETRC` file (`node_host: :target`, see `inetrc!/2`).
  """

  alias Caravan.Test.{DnsServer, Nodes}

  @doc """
  `count` members named `app-<port>@127.0.0.<i>` from `127.0.0.<first_ip>`
  on: one port, one loopback address each (the Nomad shape).
  """
  def loopback_members(port, count, first_ip \\ 2) do
    for i <- 0..(count - 1),
        do: {"app-#{port}@127.0.0.#{first_ip + i}", {127, 0, 0, first_ip + i}}
  end

  @doc "The SRV records Consul would serve for `members`."
  def records(query, members, node_host \\ :address) do
    Enum.flat_map(members, fn {name, ip} ->
      port = Caravan.Epmd.dist_port(name)

      case node_host do
        :address -> DnsServer.addr_instance(query, ip, port)
        :target -> [{:srv, query, host_of(name), port}, {:a, host_of(name), ip}]
      end
    end)
  end

  @doc """
  Starts one member with the strategy in a supervision tree on the node.
  `strategy` holds `Caravan.Cluster.DnsStrategy` options; `query`,
  `node_sname` (from the name) and the nameserver of `dns` are filled in.
  `opts` go to `Caravan.Test.Nodes.start!/1` (`:erl`, `:env`, ...).
  """
  def start_member!({name, ip}, dns, strategy, opts \\ []) do
    Nodes.start!(member_opts({name, ip}, dns, strategy, opts))
  end

  @doc "Starts several members in parallel; see `start_member!/4`."
  def start_members!(members, dns, strategy, opts \\ []) do
    Nodes.start_all!(Enum.map(members, &member_opts(&1, dns, strategy, opts)))
  end

  @doc """
  The `Caravan.Test.Nodes.start!/1` options `start_member!/4` uses, for
  starting members with different options (a network namespace each) in
  parallel with `Caravan.Test.Nodes.start_all!/1`.
  """
  def member_opts({name, ip}, dns, strategy, opts \\ []) do
    [sname | _] = String.split(name, "@")
    node_sname = String.replace(sname, ~r/-\d+$/, "")

    strategy =
      Keyword.merge(
        [node_sname: node_sname, nameservers: [DnsServer.nameserver(dns)], timeout: 1_000],
        strategy
      )

    {erl, opts} = Keyword.pop(opts, :erl, [])

    Keyword.merge(
      [
        name: name,
        erl:
          [
            "-kernel",
            "inet_dist_use_interface",
            ip |> Tuple.to_list() |> Enum.join(",") |> then(&"{#{&1}}")
          ] ++ erl,
        boot: quote(do: Caravan.Test.Cluster.boot_strategy(unquote(strategy)))
      ],
      opts
    )
  end

  @doc false
  # Runs on the node: the strategy under a supervisor that lives as long as
  # the node's control process.
  def boot_strategy(strategy) do
    Logger.configure(level: :info)
    children = [{Caravan.Cluster.DnsStrategy, strategy}]

    {:ok, _} =
      Supervisor.start_link(children, strategy: :one_for_one, name: Caravan.Test.ClusterSup)

    :ok
  end

  @doc "The nodes `node` is connected to, sorted."
  def visible(node), do: node |> Nodes.eval!("Node.list()") |> Enum.sort()

  @doc """
  Waits until every node in `nodes` sees exactly the others (and
  `extra`); returns the milliseconds it took. Raises with what each node
  saw when `timeout` passes.
  """
  def await_mesh!(nodes, timeout \\ 15_000, extra \\ []) do
    started = System.monotonic_time(:millisecond)

    try do
      Nodes.wait_until(fn -> meshed?(nodes, extra) end, timeout, 25)
    rescue
      e in RuntimeError ->
        seen = for n <- nodes, do: {n.name, safe_visible(n)}

        reraise RuntimeError,
                "no full mesh within #{timeout} ms; each node saw: #{inspect(seen)} (#{Exception.message(e)})",
                __STACKTRACE__
    end

    System.monotonic_time(:millisecond) - started
  end

  @doc "True when every node in `nodes` sees exactly the others and `extra`."
  def meshed?(nodes, extra \\ []) do
    names = Enum.map(nodes, & &1.name)

    Enum.all?(nodes, fn node ->
      safe_visible(node) == Enum.sort(List.delete(names, node.name) ++ extra)
    end)
  end

  defp safe_visible(node) do
    case Nodes.eval(node, "Node.list()") do
      {:ok, list} -> Enum.sort(list)
      {:error, _} -> :unreachable
    end
  end

  @doc """
  A TCP listener on `ip:port` that accepts connections and never says a
  word: a peer stuck before the distribution handshake. Closed when the
  calling test ends.
  """
  def stalled_peer!(ip, port) do
    pid = Caravan.Test.StalledPeer.start!(ip, port)
    ExUnit.Callbacks.on_exit(fn -> Caravan.Test.StalledPeer.stop(pid) end)
    pid
  end

  @doc "The host part of a node name."
  def host_of(name), do: name |> to_string() |> String.split("@") |> List.last()
end

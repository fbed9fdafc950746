defmodule Caravan.Test.Netns do
  @moduledoc """
  "Hosts" as Linux network namespaces on a private bridge, for partition
  tests. Needs root and iproute2 (`scripts/setup` installs it).

      net = Caravan.Test.Netns.setup!(3)
      # net.bridge_ip: {10, 223, n, 254}, reachable from every host
      # net.hosts: [%{netns: "cvf<n>-h1", ip: {10, 223, n, 1}, link: "cvf<n>h1"}, ...]
      Caravan.Test.Netns.link_down(host)   # cut it off
      Caravan.Test.Netns.link_up(host)     # heal

  Each host is a namespace with its loopback up and one veth interface,
  `eth0`, holding `10.223.<n>.<i>/24`. The other end of each veth is
  attached to a bridge, `cvf<n>br`, in the test VM's namespace, holding
  `10.223.<n>.254/24`, so a DNS server listening there
  (`Caravan.Test.Dnsmasq.start!(records, address: net.bridge_ip)`) serves
  every host. The namespaces have no default route, so they reach nothing
  beyond the subnet, and nothing is NATed: traffic stays between the
  namespaces and the bridge.

  The subnet is the first `10.223.<n>.0/24` that no address or route on the
  machine uses (so the bridge never takes over a real network's traffic;
  TEST-NET-1, 192.0.2.0/24, is not used: some machines, this CI's included,
  really use it), claimed by creating the bridge: link names are unique, so
  test runs in parallel (other worktrees) each get their own.

  `link_down/1` sets the bridge side of a host's veth down: the host keeps
  its address and route but every packet to or from it is dropped, as when
  a cable is pulled or a switch port dies.

  Everything is removed when the test ends (`ExUnit.Callbacks.on_exit/2`),
  pass or fail. A network left by a test VM that was killed is removed by
  the next `setup!/1`: each bridge's alias names the OS pid that owns it.
  `setup!/1` raises, naming the command and its output, when namespaces
  cannot be created: a partition test must fail there, not skip.
  """

  @prefix "cvf"

  @typedoc "One host: its namespace, its address and the bridge side of its link."
  @type host :: %{netns: String.t(), ip: :inet.ip4_address(), link: String.t()}

  @typedoc "The network: the bridge, its address and the hosts."
  @type t :: %{bridge: String.t(), bridge_ip: :inet.ip4_address(), hosts: [host()]}

  @doc "Creates `count` hosts (at most 9) on a fresh bridge; removed when the test ends."
  @spec setup!(pos_integer()) :: t()
  def setup!(count) when count in 1..9 do
    remove_stale()
    n = claim_subnet!(0)
    tag = "#{@prefix}#{n}"
    net = %{bridge: tag <> "br", bridge_ip: {10, 223, n, 254}, hosts: []}
    ExUnit.Callbacks.on_exit({__MODULE__, tag}, fn -> teardown(tag, count) end)

    ip!(~w(addr add 10.223.#{n}.254/24 dev #{net.bridge}))
    ip!(~w(link set #{net.bridge} up))

    hosts =
      for i <- 1..count do
        ns = "#{tag}-h#{i}"
        link = "#{tag}h#{i}"
        peer = "#{tag}p#{i}"
        ip!(~w(netns add #{ns}))
        ip!(~w(link add #{link} type veth peer name #{peer}))
        ip!(~w(link set #{peer} netns #{ns}))
        ip!(~w(-n #{ns} link set #{peer} name eth0))
        ip!(~w(-n #{ns} addr add 10.223.#{n}.#{i}/24 dev eth0))
        ip!(~w(-n #{ns} link set lo up))
        ip!(~w(-n #{ns} link set eth0 up))
        ip!(~w(link set #{link} master #{net.bridge}))
        ip!(~w(link set #{link} up))
        %{netns: ns, ip: {10, 223, n, i}, link: link}
      end

    %{net | hosts: hosts}
  end

  # The first 10.223.<n>.0/24 that no address or route uses, claimed by
  # creating the bridge cvf<n>br: link names are unique, so two test VMs
  # never claim the same subnet. The bridge's alias names its owner.
  defp claim_subnet!(n) when n > 255 do
    raise "cannot build the test network: every 10.223.<n>.0/24 is in use on this machine " <>
            "or claimed by another test run (bridges #{@prefix}<n>br)"
  end

  defp claim_subnet!(n) do
    if subnet_in_use?(n) do
      claim_subnet!(n + 1)
    else
      case ip(~w(link add #{@prefix}#{n}br type bridge)) do
        {_, 0} ->
          ip!(["link", "set", "#{@prefix}#{n}br", "alias", "caravan-test pid #{System.pid()}"])
          n

        {out, _} ->
          if out =~ "File exists",
            do: claim_subnet!(n + 1),
            else: ip!(~w(link add #{@prefix}#{n}br type bridge))
      end
    end
  end

  defp subnet_in_use?(n) do
    prefix = "10.223.#{n}."
    {addrs, _} = ip(~w(-o -4 addr show))
    {routes, _} = ip(~w(-4 route show table all))
    String.contains?(addrs, prefix) or String.contains?(routes, prefix)
  end

  @doc """
  Gives `host` its own `/etc/resolv.conf`, naming `nameserver` (an IPv4
  address; port 53, the only one resolv.conf can name): `ip netns exec`
  bind-mounts `/etc/netns/<netns>/resolv.conf` over `/etc/resolv.conf` for
  what it runs, so the system resolver of a node started in `host` asks
  `nameserver` and nothing else. Removed with the network.
  """
  @spec resolv_conf!(host(), :inet.ip4_address()) :: :ok
  def resolv_conf!(%{netns: netns}, nameserver) do
    dir = Path.join("/etc/netns", netns)
    File.mkdir_p!(dir)
    File.write!(Path.join(dir, "resolv.conf"), "nameserver #{:inet.ntoa(nameserver)}\n")
  end

  @doc "Cuts `host` off: the bridge side of its link goes down."
  @spec link_down(host()) :: :ok
  def link_down(%{link: link}), do: ip!(~w(link set #{link} down))

  @doc "Heals `host`: the bridge side of its link comes back up."
  @spec link_up(host()) :: :ok
  def link_up(%{link: link}), do: ip!(~w(link set #{link} up))

  defp teardown(tag, count) do
    # Deleting a namespace deletes its end of the veth, and with it the pair.
    for i <- 1..count, do: ip(~w(netns del #{tag}-h#{i}))
    for i <- 1..count, do: File.rm_rf!("/etc/netns/#{tag}-h#{i}")
    for i <- 1..count, do: ip(~w(link del #{tag}h#{i}))
    ip(~w(link del #{tag}br))
    :ok
  end

  # Networks left by a test VM that was killed: bridges whose owner (their
  # alias) is no longer running, with their namespaces and veths.
  defp remove_stale do
    {out, _} = ip(~w(-o link show type bridge))

    for [_, n, pid] <-
          Regex.scan(~r/^\d+: #{@prefix}(\d+)br:.*alias caravan-test pid (\d+)/m, out),
        not File.exists?("/proc/#{pid}") do
      {links, _} = ip(~w(-o link show))
      count = length(Regex.scan(~r/^\d+: #{@prefix}#{n}h\d@/m, links))
      teardown("#{@prefix}#{n}", max(count, 9))
    end

    :ok
  end

  defp ip(args) do
    case System.find_executable("ip") do
      nil -> {"ip (iproute2) is not installed; run scripts/setup", 127}
      ip -> System.cmd(ip, args, stderr_to_stdout: true)
    end
  end

  defp ip!(args) do
    case ip(args) do
      {_, 0} ->
        :ok

      {out, status} ->
        raise "cannot build the test network: `ip #{Enum.join(args, " ")}` exited with " <>
                "#{status}: #{String.trim(out)}. Partition tests need network namespaces " <>
                "(root, or CAP_NET_ADMIN and CAP_SYS_ADMIN, and iproute2); they fail rather " <>
                "than skip without them"
    end
  end
end

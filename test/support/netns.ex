defmodule Caravan.Test.Netns do
  @moduledoc """
  "Hosts" as Linux network namespaces on a private bridge, for partition
  tests. Needs root and iproute2 (`scripts/setup` installs it).

      net = Caravan.Test.Netns.setup!(3)
      # net.bridge_ip: {10, 223, 0, 254}, reachable from every host
      # net.hosts: [%{netns: "cvf…-h1", ip: {10, 223, 0, 1}, link: "cvf…h1"}, ...]
      Caravan.Test.Netns.link_down(net, host)   # cut it off
      Caravan.Test.Netns.link_up(net, host)     # heal

  Each host is a namespace with its loopback up and one veth interface,
  `eth0`, holding `10.223.0.<i>/24`. The other end of each veth is attached
  to a bridge in the test VM's namespace holding `10.223.0.254/24`, so a DNS
  server listening
  there (`Caravan.Test.Dnsmasq.start!(records, address: net.bridge_ip)`)
  serves every host. Nothing is routed beyond the bridge: no default route,
  no forwarding, no NAT; traffic stays between the namespaces and the bridge.
  `setup!/1` refuses to start when the machine already has an address or a
  route in `10.223.0.0/24` (TEST-NET-1, 192.0.2.0/24, is not used: some
  machines, this CI's included, really use it), so the bridge never takes
  over a real network's traffic.

  `link_down/2` sets the bridge side of a host's veth down: the host keeps
  its address and route but every packet to or from it is dropped, as when
  a cable is pulled or a switch port dies.

  Everything is removed when the test ends (`ExUnit.Callbacks.on_exit/2`),
  pass or fail; namespaces left by a VM that was killed are removed by the
  next `setup!/1` (they carry the `cvf` prefix, used by nothing else).
  `setup!/1` raises, naming the command and its output, when namespaces
  cannot be created: a partition test must fail there, not skip.
  """

  @prefix "cvf"
  @subnet {10, 223, 0}

  @typedoc "One host: its namespace, its address and the bridge side of its link."
  @type host :: %{netns: String.t(), ip: :inet.ip4_address(), link: String.t()}

  @typedoc "The network: the bridge, its address and the hosts."
  @type t :: %{bridge: String.t(), bridge_ip: :inet.ip4_address(), hosts: [host()]}

  @doc "Creates `count` hosts (at most 9) on a fresh bridge; removed when the test ends."
  @spec setup!(pos_integer()) :: t()
  def setup!(count) when count in 1..9 do
    remove_stale()
    refute_subnet_in_use!()
    tag = @prefix <> Integer.to_string(:erlang.phash2(make_ref(), 0xFFFF), 16)
    {a, b, c} = @subnet
    net = %{bridge: tag <> "br", bridge_ip: {a, b, c, 254}, hosts: []}
    ExUnit.Callbacks.on_exit({__MODULE__, tag}, fn -> teardown(tag, count) end)

    ip!(~w(link add #{net.bridge} type bridge))
    ip!(~w(addr add #{a}.#{b}.#{c}.254/24 dev #{net.bridge}))
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
        ip!(~w(-n #{ns} addr add #{a}.#{b}.#{c}.#{i}/24 dev eth0))
        ip!(~w(-n #{ns} link set lo up))
        ip!(~w(-n #{ns} link set eth0 up))
        ip!(~w(link set #{link} master #{net.bridge}))
        ip!(~w(link set #{link} up))
        %{netns: ns, ip: {a, b, c, i}, link: link}
      end

    %{net | hosts: hosts}
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
    for i <- 1..count, do: ip(~w(link del #{tag}h#{i}))
    ip(~w(link del #{tag}br))
    :ok
  end

  # Namespaces, veths and bridges with our prefix left by a killed test VM.
  defp remove_stale do
    {out, _} = ip(~w(netns list))

    for line <- String.split(out, "\n", trim: true),
        [ns | _] = String.split(line),
        String.starts_with?(ns, @prefix),
        do: ip(~w(netns del #{ns}))

    {out, _} = ip(~w(-o link show))

    for [_, name] <- Regex.scan(~r/^\d+: (#{@prefix}[0-9A-F]+(?:br|h\d))[@:]/m, out),
        do: ip(~w(link del #{name}))

    :ok
  end

  defp refute_subnet_in_use! do
    {a, b, c} = @subnet
    prefix = "#{a}.#{b}.#{c}."
    {addrs, _} = ip(~w(-o -4 addr show))
    {routes, _} = ip(~w(-4 route show table all))

    clash =
      (String.split(addrs, "\n") ++ String.split(routes, "\n"))
      |> Enum.filter(&String.contains?(&1, prefix))

    if clash != [] do
      raise "cannot build the test network: #{prefix}0/24 is already in use on this machine " <>
              "(#{Enum.join(clash, "; ")}); free it or change @subnet in #{__ENV__.file}"
    end
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

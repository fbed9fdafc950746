defmodule Caravan.NativeReloadTest do
  # Reloading and unloading Caravan.Native, on a real node in its own OS
  # process (a crash there must not take the test VM with it). The node is a
  # Caravan node, so its distribution uses the NIF throughout. Port 24600.
  use ExUnit.Case, async: true

  alias Caravan.Test.{Nodes, RawDnsServer}

  @moduletag :distribution
  @moduletag timeout: 90_000

  @service "likes-dist.service.consul"

  test "reloading the NIF's module twice, then deleting it, leaves a node that answers" do
    answer =
      &RawDnsServer.response(&1, [{@service, :srv, {1, 1, 4001, ~c"n1.node.dc1.consul"}}], [])

    ns = RawDnsServer.nameserver(RawDnsServer.start!(answer: answer))
    node = Nodes.start!(sname: "reload-24600")

    # Everything the NIF does, once: a name rule, a lookup on the runtime
    # thread, and the runtime's thread count.
    check = """
    port = Caravan.Native.dist_port("a-4001@h")
    answer = Caravan.DnsClient.lookup(#{inspect(@service)}, nameservers: [ns], timeout: 5_000)

    threads =
      for t <- File.ls!("/proc/self/task"),
          {:ok, comm} <- [File.read("/proc/self/task/\#{t}/comm")],
          String.trim(comm) == "caravan-dns",
          do: t

    {port, answer, threads, node()}
    """

    assert {4001, {:ok, [%{host: "n1.node.dc1.consul", port: 4001}]}, [thread], name} =
             Nodes.eval!(node, check, binding: [ns: ns])

    assert name == node.name

    # Reload twice: purge + load_file, as r/1 does. Each new instance of the
    # module loads the library again on its first call.
    for round <- 1..2 do
      assert {:module, Caravan.Native} =
               Nodes.eval!(node, """
               :code.purge(Caravan.Native)
               :code.load_file(Caravan.Native)
               """)

      assert {4001, {:ok, [_]}, [^thread], ^name} = Nodes.eval!(node, check, binding: [ns: ns]),
             "round #{round}: calls work after a reload, on the same runtime thread"
    end

    # Unload: delete and purge. The next call loads the module again (the
    # node runs in interactive mode) and the library with it.
    assert Nodes.eval!(node, """
           {:code.delete(Caravan.Native), :code.purge(Caravan.Native),
            :code.is_loaded(Caravan.Native)}
           """) == {true, false, false}

    assert {4001, {:ok, [_]}, [^thread], ^name} = Nodes.eval!(node, check, binding: [ns: ns])
    assert Nodes.eval!(node, "Caravan.Native.load_error()") == nil

    # Distribution still works through the reloaded NIF: a second node
    # connects to it.
    other = Nodes.start!(sname: "reload-24601")
    assert Nodes.eval!(other, "Node.ping(peer)", binding: [peer: name]) == :pong
    refute Nodes.output(node) =~ ~r/Segmentation|core dumped|Upgrade not supported/
  end
end

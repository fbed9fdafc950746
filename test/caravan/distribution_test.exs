defmodule Caravan.DistributionTest do
  # Real nodes (OS processes) with Caravan's flags, on loopback, no epmd.
  # Ports 21000-21099 (this suite owns 21000-21999).
  use ExUnit.Case, async: true

  alias Caravan.Test.Nodes

  @moduletag :distribution
  @moduletag timeout: 120_000

  setup do
    Nodes.refute_epmd!()
    {:ok, hostname} = :inet.gethostname()
    {:ok, host: List.to_string(hostname)}
  end

  describe "three nodes with the seed's flags and --sname" do
    setup do
      nodes =
        Nodes.start_all!([
          [sname: "a-21001"],
          [sname: "b-21002"],
          [sname: "c-21003"]
        ])

      {:ok, nodes: nodes}
    end

    test "each listens on the port its name carries", %{nodes: nodes} do
      for {node, port} <- Enum.zip(nodes, [21001, 21002, 21003]) do
        assert Nodes.listening(node) == [{{0, 0, 0, 0}, port}]
      end
    end

    test "they connect pairwise and call each other with :erpc", %{nodes: nodes} do
      for a <- nodes, b <- nodes, a != b do
        assert Nodes.rpc!(a, Node, :connect, [b.name]) == true
        assert Nodes.rpc!(a, :erpc, :call, [b.name, :erlang, :node, []]) == b.name
      end

      for node <- nodes do
        expected = nodes |> Enum.map(& &1.name) |> List.delete(node.name) |> Enum.sort()
        assert Enum.sort(Nodes.rpc!(node, Node, :list, [])) == expected
      end
    end

    test ":net_adm.names/0 shows the node's own entry", %{nodes: nodes} do
      for {node, port} <- Enum.zip(nodes, [21001, 21002, 21003]) do
        [local, _host] = node.name |> Atom.to_charlist() |> :string.split(~c"@")
        assert Nodes.rpc!(node, :net_adm, :names, []) == {:ok, [{local, port}]}
      end
    end

    test "a restarted node gets a new creation, so its old pids are dead", %{nodes: [a, b, _]} do
      creation = Nodes.rpc!(a, :erlang, :system_info, [:creation])
      assert creation >= 4
      old_init = Nodes.rpc!(b, :erpc, :call, [a.name, :erlang, :whereis, [:init]])
      assert Nodes.rpc!(b, :erpc, :call, [a.name, :erlang, :is_process_alive, [old_init]])

      Nodes.stop(a)
      a = Nodes.start!(sname: "a-21001")

      assert Nodes.rpc!(a, :erlang, :system_info, [:creation]) != creation
      Nodes.wait_until(fn -> Nodes.rpc!(b, Node, :ping, [a.name]) == :pong end)
      refute Nodes.rpc!(b, :erpc, :call, [a.name, :erlang, :is_process_alive, [old_init]])
    end

    test "rpc and remote-shell helpers named after a node reach it without taking its port",
         %{nodes: [a | _], host: host} do
      # Named like `bin/app rpc` and relx's remsh nodes: their names end in
      # a-21001's port, so without the helper rule they would fail with
      # eaddrinuse.
      for helper <- ["rpc-1a2b-a-21001", "remsh1f2e3d4c-a-21001"] do
        erl = Enum.join(Nodes.seed_flags() ++ ["-pa", Nodes.caravan_ebin()], " ")

        process =
          Nodes.spawn!("elixir", [
            "--erl",
            erl,
            "--sname",
            helper,
            "--hidden",
            "--cookie",
            "caravan-test",
            "--rpc-eval",
            "a-21001@#{host}",
            ~S|IO.puts("answered by #{node()}")|
          ])

        {status, output} = Nodes.wait_for_exit(process)
        assert status == 0, output
        assert output =~ "answered by a-21001@#{host}"
      end

      assert Nodes.listening(a) == [{{0, 0, 0, 0}, 21001}]
    end
  end

  test "three nodes share one port on 127.0.0.2, .3 and .4 and form a mesh (the Nomad shape)" do
    nodes =
      Nodes.start_all!(
        for last <- 2..4 do
          [
            name: "app-21050@127.0.0.#{last}",
            erl: ["-kernel", "inet_dist_use_interface", "{127,0,0,#{last}}"]
          ]
        end
      )

    for {node, last} <- Enum.zip(nodes, 2..4) do
      assert Nodes.listening(node) == [{{127, 0, 0, last}, 21050}]
    end

    [first | others] = nodes
    for other <- others, do: assert(Nodes.rpc!(first, Node, :ping, [other.name]) == :pong)

    # global connects the others to each other: a full mesh.
    for node <- nodes do
      expected = nodes |> Enum.map(& &1.name) |> List.delete(node.name) |> Enum.sort()
      Nodes.wait_until(fn -> Enum.sort(Nodes.rpc!(node, Node, :list, [])) == expected end)
    end

    [_, second, third] = nodes
    assert Nodes.rpc!(second, :erpc, :call, [third.name, :erlang, :node, []]) == third.name
  end

  @tag :tmp_dir
  test "IPv6 nodes connect: Caravan's module over inet6_tcp and OTP's inet6_tcp", %{
    tmp_dir: tmp_dir
  } do
    # v6.caravan.test resolves to ::1 through this file only.
    inetrc = Path.join(tmp_dir, "inetrc")

    File.write!(inetrc, """
    {host, {0,0,0,0,0,0,0,1}, ["v6.caravan.test"]}.
    {lookup, [file, native]}.
    """)

    env = [{"ERL_INETRC", inetrc}]

    [caravan, otp] =
      Nodes.start_all!([
        [name: "v6a-21040@v6.caravan.test", env: env, erl: ~w(-caravan_dist inet6_tcp)],
        [
          name: "v6b-21041@v6.caravan.test",
          env: env,
          caravan: false,
          erl: ~w(-proto_dist inet6_tcp -epmd_module Elixir.Caravan.Epmd.Client)
        ]
      ])

    assert Nodes.rpc!(caravan, Caravan.Epmd.Dist_dist, :underlying, []) == :inet6_tcp_dist
    assert Nodes.listening(caravan) == [{{0, 0, 0, 0, 0, 0, 0, 0}, 21040}]
    assert Nodes.listening(otp) == [{{0, 0, 0, 0, 0, 0, 0, 0}, 21041}]

    for {from, to} <- [{caravan, otp}, {otp, caravan}] do
      assert Nodes.rpc!(from, Node, :ping, [to.name]) == :pong
      {:ok, info} = Nodes.rpc!(from, :net_kernel, :node_info, [to.name])
      {:net_address, {ip, _port}, _host, :tcp, :inet6} = info[:address]
      assert ip == {0, 0, 0, 0, 0, 0, 0, 1}
    end
  end

  test "a node with the wrong cookie is refused, and the refusal is logged" do
    [good, bad] =
      Nodes.start_all!([
        [name: "good-21060@127.0.0.1"],
        [name: "bad-21061@127.0.0.1", cookie: "not-the-cookie"]
      ])

    assert Nodes.rpc!(bad, Node, :ping, [good.name]) == :pang
    assert Nodes.rpc!(good, Node, :ping, [bad.name]) == :pang
    assert Nodes.rpc!(good, Node, :list, [:connected]) == []
    assert Nodes.rpc!(bad, Node, :list, [:connected]) == []

    # And logged, by the node that was called, naming the caller.
    for {called, caller} <- [{good, bad}, {bad, good}] do
      Nodes.wait_for_output(
        called,
        "[error] ** Connection attempt from node #{inspect(caller.name)} rejected. " <>
          "Invalid challenge reply. **",
        5_000
      )
    end
  end

  test "Caravan's distribution module warns when the epmd module is not Caravan's" do
    # -erl_epmd_port lets OTP's erl_epmd work without a daemon.
    node =
      Nodes.start!(
        sname: "warn-21098",
        caravan: false,
        erl: ~w(-proto_dist Elixir.Caravan.Epmd.Dist -erl_epmd_port 21098)
      )

    assert Nodes.output(node) =~
             "runs with the epmd module :erl_epmd, so the listen port and peers' ports do not come from node names"
  end

  describe "a node that cannot listen stops with an error naming node, port and cause" do
    test "when its port is taken" do
      _holder = Nodes.start!(name: "holder-21071@127.0.0.1")

      {:error, {:exited, status, output}} = Nodes.start(name: "clash-21071@127.0.0.1")

      assert status != 0
      assert output =~ "clash-21071@127.0.0.1"
      assert output =~ "port 21071"
      assert output =~ "address already in use (eaddrinuse)"
    end

    test "when its name carries no port" do
      {:error, {:exited, status, output}} = Nodes.start(name: "app-99999@127.0.0.1")

      assert status != 0
      assert output =~ ~s("app-99999")
      assert output =~ "not a TCP port (1..65535)"
    end

    test "when -caravan_dist names no transport" do
      {:error, {:exited, status, output}} =
        Nodes.start(name: "app-21072@127.0.0.1", erl: ~w(-caravan_dist udp))

      assert status != 0
      assert output =~ "-caravan_dist udp names no transport"
      assert output =~ "inet_tcp, inet6_tcp, inet_tls, inet6_tls"
    end
  end
end

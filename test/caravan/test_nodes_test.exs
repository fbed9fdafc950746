defmodule Caravan.TestNodesTest do
  # The harness other suites build on (Caravan.Test.Nodes): boot code,
  # errors, and that no OS process outlives its test. Ports 21900-21909.
  use ExUnit.Case, async: true

  alias Caravan.Test.Nodes

  @moduletag :distribution
  @moduletag timeout: 60_000

  test "boot code runs after app_env is set, in a process that outlives it" do
    node =
      Nodes.start!(
        sname: "boot-21900",
        app_env: [demo: [greeting: "hello"]],
        boot:
          quote do
            {:ok, _} =
              Agent.start_link(fn -> Application.get_env(:demo, :greeting) end, name: :demo)
          end
      )

    assert Nodes.eval!(node, "Agent.get(:demo, & &1)") == "hello"
    assert Nodes.eval!(node, "node()") == node.name
    assert Nodes.eval!(node, "a + b", binding: [a: 1, b: 2]) == 3
  end

  test "a failing boot fails the start, with the error" do
    assert {:error, {:boot_failed, message, _output}} =
             Nodes.start(sname: "boot-21901", boot: ~s|raise "no config"|)

    assert message =~ "no config"
  end

  test "a VM that refuses its flags fails the start with its status and what it printed" do
    # The emulator writes this to stderr, which the harness folds into the output.
    assert {:error, {:exited, status, output}} = Nodes.start(erl: ~w(+sbt bogus))
    assert status != 0
    assert output =~ "scheduler bind type 'bogus'"
  end

  test "errors on the node come back; eval! raises them" do
    node = Nodes.start!([])
    assert node.name == nil

    assert {:error, {:error, %ArgumentError{}, formatted}} =
             Nodes.eval(node, ~s|raise ArgumentError, "bad"|)

    assert formatted =~ "(ArgumentError) bad"
    assert {:error, {:throw, :up, _}} = Nodes.eval(node, "throw(:up)")

    assert_raise RuntimeError, ~r/error on node running "1 \/ 0"/, fn ->
      Nodes.eval!(node, "1 / 0")
    end
  end

  test "stop kills the node and what it spawned, even in sessions of their own" do
    node = Nodes.start!([])
    # Port programs run under erl_child_setup, in a session of their own.
    sleeper =
      Nodes.eval!(
        node,
        ~s|{:os_pid, pid} = Port.open({:spawn, "sleep 600"}, []) \|> Port.info(:os_pid); pid|
      )

    assert File.exists?("/proc/#{sleeper}")
    assert Nodes.stop(node) == :killed
    Nodes.wait_until(fn -> not File.exists?("/proc/#{sleeper}") end)
    refute File.exists?("/proc/#{node.os_pid}")
  end

  test "a node whose test process died is gone, and so is one whose stdin closed" do
    test = self()

    owner =
      spawn(fn ->
        send(test, {:node, Nodes.start!(cleanup: false)})
        Process.sleep(:infinity)
      end)

    assert_receive {:node, node}, 30_000
    Process.exit(owner, :kill)
    Nodes.wait_until(fn -> not File.exists?("/proc/#{node.os_pid}") end)

    # Killing the server brutally skips its cleanup: the port closes, and the
    # node halts on end of input by itself.
    other = Nodes.start!(cleanup: false)
    Process.unlink(other.server)
    Process.exit(other.server, :kill)
    Nodes.wait_until(fn -> not File.exists?("/proc/#{other.os_pid}") end)
  end
end

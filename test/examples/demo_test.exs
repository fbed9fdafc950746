defmodule Caravan.Examples.DemoTest do
  # Runs the demo the way a user does (`scripts/demo`, a subprocess: it
  # builds examples/demo, an app depending on Caravan by path, and runs
  # `mix demo` there), then checks that nothing it started is left.
  # Ports 23000-23999.
  use ExUnit.Case, async: false

  alias Caravan.Test.Nodes

  @moduletag :demo
  @moduletag timeout: 180_000

  @root Path.expand("../..", __DIR__)

  setup do
    Nodes.refute_epmd!()
    :ok
  end

  defp demo(args) do
    Nodes.spawn!(Path.join(@root, "scripts/demo"), args, label: "scripts/demo")
  end

  defp demo_status(args), do: args |> demo() |> Nodes.wait_for_exit(90_000)

  # Every process whose command line mentions `pattern` (beam nodes carry
  # their name, dnsmasq its config directory), but this VM.
  defp processes_matching(pattern) do
    for entry <- File.ls!("/proc"),
        String.match?(entry, ~r/^\d+$/),
        entry != System.pid(),
        {:ok, cmdline} <- [File.read("/proc/#{entry}/cmdline")],
        String.contains?(cmdline, pattern),
        do: {entry, String.replace(cmdline, <<0>>, " ")}
  end

  defp work_dir(output) do
    [_, dir] = Regex.run(~r/found through DNS \((\/\S+caravan-demo-[^)\s]+)\)/, output)
    dir
  end

  defp assert_nothing_left(output, port) do
    dir = work_dir(output)

    # The processes are gone before the demo exits; allow for /proc to catch up.
    Nodes.wait_until(
      fn -> processes_matching(dir) == [] and processes_matching("-#{port}@127.0.0.") == [] end,
      15_000
    )

    refute File.exists?(dir), "the demo left its directory #{dir}"
  end

  test "3 nodes: mesh, a node leaves, DNS outage, a node joins; PASS and exit 0, nothing left" do
    {status, output} = demo_status(["--nodes", "3", "--port", "23101"])

    assert status == 0, output
    assert [verdict] = Regex.run(~r/^PASS: .*$/m, output), output

    assert verdict =~
             ~r/^PASS: 3 epmd-less nodes meshed through DNS in [\d.]+ s, dropped a removed node in [\d.]+ s, kept every connection through [\d.]+ s of DNS outage, and took in a new node in [\d.]+ s \([\d.]+ s in all\)$/

    # Not a terminal: the tables are printed once each, without ANSI codes.
    refute output =~ "\e["

    for step <- [
          "1/4 3 nodes start",
          "2/4 app-23101@127.0.0.3 leaves",
          "3/4 DNS is down",
          "4/4 DNS is back and lists a new node, app-23101@127.0.0.4"
        ] do
      assert output =~ ~r/^step #{Regex.escape(step)}.*\[[\d.]+ s, done\]$/m, output
    end

    # The last table: the new node (.4) and the two that stayed see each other.
    assert output =~ ~r/^app-23101@127\.0\.0\.4\s+x\s+x\s+-$/m
    assert output =~ ~r/DNS: DOWN; failed polls \.1: \d+ \.2: \d+/

    assert_nothing_left(output, 23101)
  end

  test "SIGTERM mid-run (what scripts/demo sends on Ctrl-C) stops everything, exit 130" do
    proc = demo(["--nodes", "2", "--port", "23111"])
    Nodes.wait_for_output(proc, "DNS: dnsmasq on", 60_000)
    # The nodes are being started: let them come up.
    Nodes.wait_until(fn -> processes_matching("-23111@127.0.0.2") != [] end, 10_000)

    System.cmd("kill", ["-TERM", "#{proc.os_pid}"])
    {status, output} = Nodes.wait_for_exit(proc, 30_000)

    assert status == 130, output
    assert output =~ ~r/^FAIL: interrupted/m
    assert_nothing_left(output, 23111)
  end

  test "--keep leaves the cluster running; the printed remote shell and stop commands work" do
    {status, output} = demo_status(["--nodes", "2", "--port", "23131", "--keep"])

    dir = work_dir(output)
    [_, stop] = Regex.run(~r/^  (kill -- [-\d ]+; rm -rf \S+)$/m, output)
    # Whatever happens below, the kept processes go when the test ends.
    on_exit(fn -> System.cmd("sh", ["-c", stop], stderr_to_stdout: true) end)

    assert status == 0, output
    assert output =~ ~r/^PASS: /m
    [_, remsh] = Regex.run(~r/^  (iex --erl .* --remsh app-23131@127\.0\.0\.1)$/m, output)
    assert remsh =~ ~r/--name rem-[0-9a-f]+-app-23131@127\.0\.0\.1 /
    assert processes_matching("app-23131@127.0.0.1") != []
    assert processes_matching(dir) != []

    # IEx ignores --remsh unless stdin is a terminal: `script` gives it one.
    # A terminal type too: with TERM unset or dumb, IEx's ^G misbehaves.
    shell =
      Nodes.spawn!("script", ["-qfec", remsh, "/dev/null"],
        env: [{"TERM", "xterm"}],
        label: "remote shell"
      )

    Nodes.wait_for_output(shell, "iex(app-23131@127.0.0.1)", 60_000)
    Nodes.send_input(shell, ~s|IO.puts("sees " <> inspect(Node.list()))\r|)
    Nodes.wait_for_output(shell, ~s|sees [:"app-23131@127.0.0.3"]|)
    # Ctrl-G, then q: quits the shell's own node, not the demo's.
    Nodes.send_input(shell, "\a")
    Nodes.wait_for_output(shell, "User switch command")
    Nodes.send_input(shell, "q\r")
    assert {0, _} = Nodes.wait_for_exit(shell)
    assert processes_matching("app-23131@127.0.0.1") != []

    assert {_, 0} = System.cmd("sh", ["-c", stop], stderr_to_stdout: true)
    assert_nothing_left(output, 23131)
  end

  test "bad arguments name the argument, the rule and the fix, and start nothing" do
    for {args, message} <- [
          {["--nodes", "1"], ~r/--nodes must be a whole number from 2 to 16.*got: 1/s},
          {["--nodes", "four"], ~r/invalid value for --nodes: "four", expected a whole number/},
          {["--port", "80"], ~r/--port must be a TCP port from 1024 to 65535.*got: 80/s},
          {["--node", "3"], ~r/unknown option --node/},
          {["now"], ~r/unexpected argument\(s\) now/}
        ] do
      {status, output} = demo_status(args)
      assert status != 0, output
      assert output =~ message
      assert output =~ "usage: scripts/demo [--nodes N] [--port PORT] [--keep]"
      refute output =~ "Caravan demo:"
    end
  end

  test "a port in use on one of the nodes' addresses is named before anything starts" do
    {:ok, busy} = :gen_tcp.listen(23121, ip: {127, 0, 0, 3})
    on_exit(fn -> :gen_tcp.close(busy) end)

    {status, output} = demo_status(["--nodes", "2", "--port", "23121"])
    assert status != 0, output

    assert output =~
             ~r/127\.0\.0\.3:23121 is not free \(address already in use\).*ss -ltnp 'sport = :23121'.*--port/s

    refute output =~ "Caravan demo:"
  end
end

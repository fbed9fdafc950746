defmodule Caravan.IexCommandTest do
  # The README's command, run from the project root after `mix compile`:
  #
  #   iex --erl "-proto_dist Elixir.Caravan.Epmd.Dist -start_epmd false \
  #     -epmd_module Elixir.Caravan.Epmd.Client -pa _build/dev/lib/caravan/ebin" \
  #     --sname node3434 -S mix
  #
  # with MIX_ENV=test and _build/test (what this test run compiled), a port
  # in this suite's range, and IEx reading its input from a pipe. Ports
  # 21080-21081.
  use ExUnit.Case, async: true

  alias Caravan.Test.{Nodes, SampleApp}

  @moduletag :distribution
  @moduletag timeout: 120_000

  test "iex -S mix with the README's flags starts a node on its name's port that reaches peers" do
    Nodes.refute_epmd!()
    {:ok, hostname} = :inet.gethostname()
    peer = Nodes.start!(sname: "peer-21081")

    erl = Enum.join(Nodes.seed_flags() ++ ["-pa", "_build/test/lib/caravan/ebin"], " ")

    iex =
      Nodes.spawn!(
        "iex",
        ["--erl", erl, "--sname", "iex-21080", "--cookie", "caravan-test", "-S", "mix"],
        cd: SampleApp.root(),
        env: [{"MIX_ENV", "test"}, {"ELIXIR_ERL_OPTIONS", nil}, {"ERL_CRASH_DUMP_SECONDS", "0"}],
        label: "iex -S mix"
      )

    Nodes.wait_for_output(iex, "iex(iex-21080@#{hostname})", 60_000)
    # The distribution listens on the port from the name; anything else is on
    # loopback (Elixir 1.18's Mix opens a socket there for its own pub/sub).
    {dist, others} = Enum.split_with(Nodes.listening(iex), &match?({_, 21080}, &1))
    assert dist == [{{0, 0, 0, 0}, 21080}]
    assert Enum.all?(others, &match?({{127, _, _, _}, _}, &1)), inspect(others)

    # -S mix loaded the project.
    Nodes.send_input(iex, ~s|IO.puts("project: \#{Mix.Project.config()[:app]}")\n|)
    Nodes.wait_for_output(iex, "project: caravan")

    Nodes.send_input(iex, ~s|IO.puts("ping: \#{Node.ping(:"peer-21081@#{hostname}")}")\n|)
    Nodes.wait_for_output(iex, "ping: pong")

    # Erlang's ~p: IEx's inspect writes charlists differently across releases.
    Nodes.send_input(iex, ~s|:io.format("names: ~p~n", [:net_adm.names()])\n|)
    Nodes.wait_for_output(iex, ~s|names: {ok,[{"iex-21080",21080}]}|)

    assert Nodes.rpc!(peer, Node, :list, []) == [:"iex-21080@#{hostname}"]
    Nodes.send_input(iex, "System.halt()\n")
    assert {0, _} = Nodes.wait_for_exit(iex)
    Nodes.refute_epmd!()
  end
end

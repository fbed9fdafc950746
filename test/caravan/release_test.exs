defmodule Caravan.ReleaseTest do
  # A `mix release` of a throwaway app that depends on Caravan by path,
  # configured as guides/distribution.md says (rel/vm.args.eex, rel/remote.vm.args.eex,
  # rel/env.sh.eex): it boots without epmd, and `bin/sample rpc` and
  # `bin/sample remote` reach it. Port 21090.
  use ExUnit.Case, async: true

  alias Caravan.Test.{Nodes, SampleApp}

  @moduletag :distribution
  @moduletag :release
  @moduletag timeout: 300_000

  @node "sample-21090@127.0.0.1"

  # The release recipe of guides/distribution.md, verbatim.
  @vm_args """
  ## Caravan: distribution without epmd. The port comes from the node name.
  -proto_dist Elixir.Caravan.Epmd.Dist
  -start_epmd false
  -epmd_module Elixir.Caravan.Epmd.Client
  """

  setup do
    dir = SampleApp.tmp_dir!("release")
    caravan = SampleApp.copy_caravan!(Path.join(dir, "caravan"), nif: :copy)

    app =
      SampleApp.write!(Path.join(dir, "sample"), %{
        "mix.exs" => """
        defmodule Sample.MixProject do
          use Mix.Project

          def project do
            [
              app: :sample,
              version: "0.1.0",
              deps: [{:caravan, path: #{inspect(caravan)}}],
              releases: [sample: [include_executables_for: [:unix], cookie: "caravan-release-test"]]
            ]
          end

          def application, do: [mod: {Sample.Application, []}, extra_applications: [:logger]]
        end
        """,
        "lib/sample.ex" => """
        defmodule Sample do
          def hello, do: "hello from \#{node()} on port \#{Caravan.Epmd.dist_port(node())}"
        end

        defmodule Sample.Application do
          use Application
          def start(_type, _args), do: Supervisor.start_link([], strategy: :one_for_one)
        end
        """,
        "rel/vm.args.eex" => @vm_args,
        "rel/remote.vm.args.eex" => @vm_args,
        "rel/env.sh.eex" => """
        #!/bin/sh
        # The node's name carries its port: Nomad would give
        # sample-${NOMAD_HOST_PORT_dist}@${NOMAD_IP_dist}.
        export RELEASE_DISTRIBUTION=name
        export RELEASE_NODE=#{@node}
        """
      })

    {output, status} = SampleApp.mix(app, ["release", "--overwrite"], env: [{"MIX_ENV", "prod"}])
    assert status == 0, output

    {:ok, bin: Path.join(app, "_build/prod/rel/sample/bin/sample")}
  end

  test "the release boots without epmd; rpc and remote reach it", %{bin: bin} do
    Nodes.refute_epmd!()

    server = Nodes.spawn!(bin, ["start"], label: "bin/sample start")
    Nodes.wait_until(fn -> Nodes.listening(server) == [{{0, 0, 0, 0}, 21090}] end, 60_000)
    Nodes.refute_epmd!()

    # bin/sample rpc runs a hidden node rpc-<hex>-sample-21090@127.0.0.1.
    rpc = Nodes.spawn!(bin, ["rpc", "IO.puts(Sample.hello())"], label: "bin/sample rpc")
    {status, output} = Nodes.wait_for_exit(rpc, 60_000)
    assert status == 0, output
    assert output =~ "hello from #{@node} on port 21090"

    # bin/sample remote runs iex --remsh as rem-<hex>-sample-21090@127.0.0.1.
    # IEx ignores --remsh unless stdin is a terminal, so `script` gives it a
    # pseudo-terminal; the test types into it. A terminal type too: with
    # TERM unset or dumb, IEx's line editing and ^G misbehave.
    remote =
      Nodes.spawn!("script", ["-qfec", "#{bin} remote", "/dev/null"],
        env: [{"TERM", "xterm"}],
        label: "bin/sample remote"
      )

    Nodes.wait_for_output(remote, "iex(#{@node})", 60_000)
    Nodes.send_input(remote, ~s|IO.puts("remote shell on " <> Atom.to_string(node()))\r|)
    Nodes.wait_for_output(remote, "remote shell on #{@node}")
    Nodes.send_input(remote, ~s|IO.puts("helpers " <> inspect(Node.list(:hidden)))\r|)

    output =
      Nodes.wait_for_output(remote, ~r/helpers \[:"rem-[0-9a-f]+-sample-21090@127\.0\.0\.1"\]/)

    refute output =~ "eaddrinuse"
    # Ctrl-G, then q: quits the shell's own node, not the release.
    Nodes.send_input(remote, "\a")
    Nodes.wait_for_output(remote, "User switch command")
    Nodes.send_input(remote, "q\r")
    assert {0, _} = Nodes.wait_for_exit(remote)

    # And the release stops through rpc as well.
    stop = Nodes.spawn!(bin, ["stop"], label: "bin/sample stop")
    assert {0, _} = Nodes.wait_for_exit(stop, 60_000)
    assert {0, _} = Nodes.wait_for_exit(server, 60_000)
  end
end

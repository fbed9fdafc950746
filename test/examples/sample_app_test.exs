defmodule Caravan.Examples.SampleAppTest do
  # examples/sample_app: its release templates and runtime config, and their
  # agreement with examples/nomad/caravan.nomad.hcl. The app itself needs
  # libcluster from hex.pm, which this build machine cannot reach, so it is not
  # compiled here; its files are read the way Mix, OTP and sh read them.
  use ExUnit.Case, async: false

  @moduletag :examples

  @root Path.expand("../..", __DIR__)
  @app Path.join(@root, "examples/sample_app")
  @job Path.join(@root, "examples/nomad/caravan.nomad.hcl")
  @checker Path.join(@root, "test/examples/check_nomad_job.py")
  @release %{name: :sample_app, version: "0.1.0"}

  setup do
    dir = Path.join(System.tmp_dir!(), "caravan-sample-app-#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    {:ok, dir: dir}
  end

  # Renders a rel/*.eex template the way `mix release` does.
  defp render(template, dir) do
    rendered = Path.join(dir, Path.basename(template, ".eex"))
    File.write!(rendered, EEx.eval_file(Path.join(@app, template), assigns: [release: @release]))
    rendered
  end

  describe "rel/vm.args.eex and rel/remote.vm.args.eex" do
    for template <- ["rel/vm.args.eex", "rel/remote.vm.args.eex"] do
      test "#{template} gives the VM Caravan's three flags, each once, as OTP reads them",
           %{dir: dir} do
        args_file = render(unquote(template), dir)

        # erl parses the file itself; without -name no distribution starts.
        {output, 0} =
          System.cmd("erl", [
            "-args_file",
            args_file,
            "-noshell",
            "-eval",
            ~S"""
            Get = fun(K) -> io_lib:format("~p", [init:get_argument(K)]) end,
            [io:format("~s=~s~n", [K, Get(K)]) || K <- [proto_dist, start_epmd, epmd_module, name, sname, setcookie]],
            halt().
            """
          ])

        assert output =~ ~s(proto_dist={ok,[["Elixir.Caravan.Epmd.Dist"]]})
        assert output =~ ~s(start_epmd={ok,[["false"]]})
        assert output =~ ~s(epmd_module={ok,[["Elixir.Caravan.Epmd.Client"]]})
        # The release scripts set these from RELEASE_* variables.
        assert output =~ "name=error"
        assert output =~ "sname=error"
        assert output =~ "setcookie=error"
      end
    end

    test "the flags are the ones README.md tells users to pass" do
      readme = File.read!(Path.join(@root, "README.md"))

      assert readme =~
               "-proto_dist Elixir.Caravan.Epmd.Dist -start_epmd false -epmd_module Elixir.Caravan.Epmd.Client"
    end
  end

  describe "rel/env.sh.eex" do
    @nomad_vars ~w(NOMAD_ALLOC_ID NOMAD_HOST_PORT_dist NOMAD_PORT_dist RELEASE_NODE RELEASE_DISTRIBUTION)

    # Sources the rendered env.sh under `set -e`, as bin/sample_app does.
    defp source_env_sh(dir, env) do
      env_sh = render("rel/env.sh.eex", dir)
      cleared = Enum.map(@nomad_vars, &{&1, nil})

      System.cmd(
        "sh",
        [
          "-c",
          ~S(set -e; . "$1"; echo "RELEASE_DISTRIBUTION=$RELEASE_DISTRIBUTION"),
          "sh",
          env_sh
        ],
        env: cleared ++ env,
        stderr_to_stdout: true
      )
    end

    @good [
      {"NOMAD_ALLOC_ID", "5f0c6e4e-0000-4000-8000-000000000000"},
      {"NOMAD_HOST_PORT_dist", "24567"},
      {"NOMAD_PORT_dist", "24567"},
      {"RELEASE_NODE", "sample-app-24567@10.0.1.5"}
    ]

    test "selects long names, outside Nomad", %{dir: dir} do
      assert {"RELEASE_DISTRIBUTION=name\n", 0} = source_env_sh(dir, [])
    end

    test "accepts a node named after the host port that is also the port inside", %{dir: dir} do
      assert {"RELEASE_DISTRIBUTION=name\n", 0} = source_env_sh(dir, @good)
    end

    test "refuses to boot when the port inside differs from the host port (no to = -1)",
         %{dir: dir} do
      {output, status} =
        source_env_sh(
          dir,
          List.keystore(@good, "NOMAD_PORT_dist", 0, {"NOMAD_PORT_dist", "4369"})
        )

      assert status == 1
      assert output =~ "NOMAD_PORT_dist=4369 differs from NOMAD_HOST_PORT_dist=24567"
      assert output =~ "Set `to = -1` on port \"dist\""
    end

    for node <- ["sample-app-24568@10.0.1.5", "sample-app-124567@10.0.1.5", "sample-app", ""] do
      test "refuses RELEASE_NODE=#{inspect(node)} for host port 24567", %{dir: dir} do
        env = List.keystore(@good, "RELEASE_NODE", 0, {"RELEASE_NODE", unquote(node)})
        {output, status} = source_env_sh(dir, env)

        assert status == 1
        assert output =~ ~s(RELEASE_NODE="#{unquote(node)}" does not end in -24567@<address>)
      end
    end

    test "refuses to boot under Nomad without a port labelled dist", %{dir: dir} do
      {output, status} = source_env_sh(dir, List.keydelete(@good, "NOMAD_HOST_PORT_dist", 0))

      assert status == 1

      assert output =~
               ~s(NOMAD_HOST_PORT_dist is not set: give the job's group network a port labelled "dist")
    end
  end

  describe "config/runtime.exs" do
    defp topology(nameserver) do
      previous = System.get_env("CARAVAN_NAMESERVER")

      try do
        if nameserver,
          do: System.put_env("CARAVAN_NAMESERVER", nameserver),
          else: System.delete_env("CARAVAN_NAMESERVER")

        config = Config.Reader.read!(Path.join(@app, "config/runtime.exs"), env: :prod)

        config
        |> Keyword.fetch!(:libcluster)
        |> Keyword.fetch!(:topologies)
        |> Keyword.fetch!(:caravan)
      after
        if previous,
          do: System.put_env("CARAVAN_NAMESERVER", previous),
          else: System.delete_env("CARAVAN_NAMESERVER")
      end
    end

    test "runs Caravan's strategy, naming peers by address" do
      topology = topology(nil)

      assert topology[:strategy] == Caravan.Cluster.DnsStrategy
      assert topology[:config][:node_host] == :address
      assert topology[:config][:nameservers] == ["127.0.0.1:8600"]
    end

    test "asks the nameserver given in CARAVAN_NAMESERVER" do
      assert topology("10.0.1.5:8600")[:config][:nameservers] == ["10.0.1.5:8600"]
    end

    test "agrees with the Nomad job: service name, node names, nameserver" do
      {output, 0} = System.cmd("python3", [@checker, @job, "--facts"], stderr_to_stdout: true)

      facts =
        for "fact." <> line <- String.split(output, "\n"), into: %{} do
          [key, value] = String.split(line, "=", parts: 2)
          {key, value}
        end

      config = topology(nil)[:config]

      # Peers are queried under the job's service name...
      assert config[:query] == facts["service"] <> ".service.consul"
      # ...and named the way the job names its nodes.
      assert config[:node_sname] == facts["node_prefix"]
      # The job points the strategy at the client's Consul agent, since
      # 127.0.0.1 inside the bridge namespace is the allocation's own.
      assert facts["env.CARAVAN_NAMESERVER"] == "${attr.unique.network.ip-address}:8600"
    end
  end

  describe "mix.exs" do
    test "depends on Caravan at the repository root and on libcluster" do
      deps =
        Path.join(@app, "mix.exs")
        |> File.read!()
        |> Code.string_to_quoted!()
        |> Macro.prewalk([], fn
          {name, opts} = node, acc when is_atom(name) and is_list(opts) ->
            {node, [{name, opts} | acc]}

          {name, req} = node, acc when is_atom(name) and is_binary(req) ->
            {node, [{name, req} | acc]}

          node, acc ->
            {node, acc}
        end)
        |> elem(1)

      assert {:caravan, opts} = List.keyfind(deps, :caravan, 0)
      assert Path.expand(Keyword.fetch!(opts, :path), @app) == @root
      assert {:libcluster, "~> 3." <> _} = List.keyfind(deps, :libcluster, 0)
    end
  end
end

defmodule Caravan.LocalRecipeTest do
  # The README's "Try it locally" run word for word from a fresh `mix new`
  # app: its blocks are read from README.md (the <!-- recipe:NAME --> marks)
  # and run as written, with one change: the dependency is a path to a copy
  # of Caravan's package files (hex.pm is not reachable here), with the NIF
  # already built. The recipe's fixed ports: 8600 (dnsmasq), 4001-4003.
  use ExUnit.Case, async: false

  alias Caravan.Test.{Nodes, SampleApp}

  @moduletag :path_dependency
  @moduletag timeout: 300_000

  @readme Path.expand("../../README.md", __DIR__)

  # The fenced block after `<!-- recipe:name -->`.
  defp block(name) do
    [_, body] =
      Regex.run(
        ~r/<!-- recipe:#{Regex.escape(name)} -->\n```[a-z]*\n(.*?)```/s,
        File.read!(@readme)
      )

    body
  end

  defp lines(name), do: name |> block() |> String.split("\n", trim: true)

  test "the README's local recipe gives a 3-node mesh" do
    for port <- [8600, 4001, 4002, 4003] do
      assert {:ok, socket} = :gen_tcp.listen(port, ip: {127, 0, 0, 1}),
             "the recipe's port #{port} is in use"

      :gen_tcp.close(socket)
    end

    # The shipped config is the README's.
    assert File.read!(Path.join(SampleApp.root(), "examples/dnsmasq/consul.conf")) ==
             block("consul.conf")

    dir = SampleApp.tmp_dir!("recipe")
    caravan = SampleApp.copy_caravan!(Path.join(dir, "caravan"), nif: :copy)
    env = [{"MIX_ENV", nil}, {"ERL_CRASH_DUMP_SECONDS", "0"}]

    ["mix new likes --sup", "cd likes"] = lines("shell")
    {out, 0} = System.cmd("mix", ~w(new likes --sup), cd: dir, stderr_to_stdout: true, env: env)
    app = Path.join(dir, "likes")
    assert out =~ "lib/likes/application.ex"

    # "Add {:caravan, "~> 1.1"} to deps": as a path, here.
    edit!(Path.join(app, "mix.exs"), ~r/defp deps do\n    \[\n/, fn head ->
      head <> "      {:caravan, path: #{inspect(caravan)}},\n"
    end)

    edit!(
      Path.join(app, "lib/likes/application.ex"),
      ~r/    children = \[\n.*?\n    \]\n/s,
      fn _ ->
        block("children")
      end
    )

    File.write!(Path.join(app, "consul.conf"), block("consul.conf"))

    [dnsmasq, build, lookup | iex_lines] = lines("run")
    assert length(iex_lines) == 3

    dns = sh!(dnsmasq, app, env, "dnsmasq")
    Nodes.wait_for_output(dns, "using only locally-known addresses for consul", 10_000)

    {out, 0} = System.cmd("sh", ["-c", build], cd: app, stderr_to_stdout: true, env: env)
    refute out =~ "cargo build"

    {out, 0} = System.cmd("sh", ["-c", lookup], cd: app, stderr_to_stdout: true, env: env)

    for port <- 4001..4003, do: assert(out =~ "likes-#{port}@127.0.0.1")

    # One after the other: the first creates ~/.erlang.cookie if it is missing.
    nodes =
      for {line, port} <- Enum.zip(iex_lines, 4001..4003) do
        node = sh!(line, app, env, "likes-#{port}")
        Nodes.wait_for_output(node, "iex(likes-#{port}@127.0.0.1)", 60_000)
        {node, port}
      end

    for {node, port} <- nodes do
      others = for p <- 4001..4003, p != port, do: :"likes-#{p}@127.0.0.1"

      Nodes.wait_until(
        fn ->
          marker = "peers-#{System.unique_integer([:positive])}"
          Nodes.send_input(node, ~s|IO.puts("#{marker}=" <> inspect(Enum.sort(Node.list())))\n|)
          out = Nodes.wait_for_output(node, marker <> "=")
          out =~ "#{marker}=#{inspect(others)}"
        end,
        10_000,
        200
      )
    end

    for {node, _} <- nodes do
      Nodes.send_input(node, "System.halt()\n")
      assert {0, _} = Nodes.wait_for_exit(node)
    end
  end

  defp sh!(line, dir, env, label),
    do: Nodes.spawn!("sh", ["-c", "exec " <> line], cd: dir, env: env, label: label)

  defp edit!(path, pattern, fun) do
    text = File.read!(path)
    assert text =~ pattern, "#{path} has no #{inspect(pattern)}:\n#{text}"
    File.write!(path, Regex.replace(pattern, text, fn match -> fun.(match) end, global: false))
  end
end

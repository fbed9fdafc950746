defmodule Caravan.PathDependencyTest do
  # Users consume caravan as a `path:` (or git) dependency. This builds a
  # throwaway app that depends on a pristine copy of caravan (no priv/native),
  # so the dependency's own `mix compile` must run cargo, install the NIF and
  # let the app call into it.
  use ExUnit.Case, async: false

  @moduletag :path_dependency
  @moduletag timeout: 600_000

  @root Path.expand("../..", __DIR__)

  setup do
    dir = Path.join(System.tmp_dir!(), "caravan-pathdep-#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    {:ok, dir: dir}
  end

  test "an app depending on caravan by path builds the NIF and calls it", %{dir: dir} do
    caravan = Path.join(dir, "caravan")
    copy_sources(caravan)
    refute File.exists?(Path.join(caravan, "priv/native/libcaravan_nif.so"))

    app = Path.join(dir, "consumer")
    File.mkdir_p!(Path.join(app, "lib"))

    File.write!(Path.join(app, "mix.exs"), """
    defmodule Consumer.MixProject do
      use Mix.Project
      def project, do: [app: :consumer, version: "0.1.0", deps: [{:caravan, path: #{inspect(caravan)}}]]
    end
    """)

    File.write!(Path.join(app, "lib/consumer.ex"), """
    defmodule Consumer do
      def port, do: Caravan.Epmd.dist_port(:"consumer-4711@10.0.1.5")
    end
    """)

    {output, status} =
      System.cmd("mix", ["run", "-e", "IO.puts(\"port=\#{Consumer.port()}\")"],
        cd: app,
        stderr_to_stdout: true,
        # Share the cargo target dir so registry crates are not rebuilt.
        env: [{"MIX_ENV", "dev"}, {"CARGO_TARGET_DIR", Path.join(@root, "target")}]
      )

    assert status == 0, output
    assert output =~ "caravan: cargo build --release -p caravan_nif"
    assert output =~ "port=4711"
    assert File.exists?(Path.join(caravan, "priv/native/libcaravan_nif.so"))

    # A second run finds the NIF up to date and does not run cargo again.
    {output, 0} =
      System.cmd("mix", ["run", "-e", "IO.puts(Consumer.port())"],
        cd: app,
        stderr_to_stdout: true,
        env: [{"MIX_ENV", "dev"}, {"CARGO_TARGET_DIR", Path.join(@root, "target")}]
      )

    refute output =~ "cargo build"
    assert output =~ "4711"
  end

  test "a cargo failure fails mix compile with cargo's error", %{dir: dir} do
    caravan = Path.join(dir, "caravan")
    copy_sources(caravan)
    lib_rs = Path.join(caravan, "native/caravan_nif/src/lib.rs")
    File.write!(lib_rs, File.read!(lib_rs) <> "\nfn broken( {}\n")

    {output, status} =
      System.cmd("mix", ["compile"],
        cd: caravan,
        stderr_to_stdout: true,
        env: [{"MIX_ENV", "dev"}, {"CARGO_TARGET_DIR", Path.join(@root, "target")}]
      )

    assert status != 0
    assert output =~ "failed with exit status"
    assert output =~ "error"
    refute File.exists?(Path.join(caravan, "priv/native/libcaravan_nif.so"))
  end

  defp copy_sources(dest) do
    {files, 0} =
      System.cmd("git", ["ls-files", "--cached", "--others", "--exclude-standard"], cd: @root)

    for file <- String.split(files, "\n", trim: true),
        String.starts_with?(file, ["lib/", "native/", "mix/", "priv/"]) or
          file in ["mix.exs", "Cargo.toml", "Cargo.lock", ".formatter.exs"],
        File.regular?(Path.join(@root, file)) do
      target = Path.join(dest, file)
      File.mkdir_p!(Path.dirname(target))
      File.cp!(Path.join(@root, file), target)
    end
  end
end

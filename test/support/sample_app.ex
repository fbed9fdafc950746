defmodule Caravan.Test.SampleApp do
  @moduledoc """
  Throwaway Mix projects that depend on a copy of Caravan by path, the way
  users consume it, for tests that build them (`mix compile`, `mix release`).

      dir = SampleApp.tmp_dir!("release")            # removed when the test ends
      caravan = SampleApp.copy_caravan!(Path.join(dir, "caravan"), nif: :copy)
      app = SampleApp.write!(Path.join(dir, "sample"), %{"mix.exs" => ..., "lib/sample.ex" => ...})
      {output, 0} = SampleApp.mix(app, ["release"], env: [{"MIX_ENV", "prod"}])
  """

  @root Path.expand("../..", __DIR__)

  @doc "Caravan's project root (the checkout under test)."
  @spec root() :: Path.t()
  def root, do: @root

  @doc """
  A fresh directory under the system tmp dir, removed when the test ends
  (`ExUnit.Callbacks.on_exit/2`; call from a test or setup).
  """
  @spec tmp_dir!(String.t()) :: Path.t()
  def tmp_dir!(prefix) do
    dir = Path.join(System.tmp_dir!(), "caravan-#{prefix}-#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    ExUnit.Callbacks.on_exit(fn -> File.rm_rf!(dir) end)
    dir
  end

  @doc """
  Copies the files Caravan's package ships (`package_files/0`) to `dest`,
  as a user's `deps/caravan` would hold them; returns `dest`.

  Options: `:nif` - `:none` (default) leaves out the built NIF, so the
  copy's `mix compile` must run cargo; `:copy` copies the NIF built for this
  checkout, after the sources so it is newer than all of them, and the copy
  builds without cargo (for tests about something else than building).
  """
  @spec copy_caravan!(Path.t(), keyword()) :: Path.t()
  def copy_caravan!(dest, opts \\ []) do
    opts = Keyword.validate!(opts, nif: :none)
    Enum.each(package_files(), &copy!(&1, dest))

    case opts[:nif] do
      :none -> :ok
      :copy -> copy!("priv/native/libcaravan_nif.so", dest)
    end

    dest
  end

  @doc """
  The files of Caravan's package, relative to the root: `package[:files]`
  in `mix.exs`, each directory expanded to the regular files under it, as
  Hex expands them. Raises if an entry names nothing.
  """
  @spec package_files() :: [Path.t()]
  def package_files do
    Mix.Project.config()[:package][:files]
    |> Enum.flat_map(fn entry ->
      path = Path.join(@root, entry)

      cond do
        File.regular?(path) ->
          [entry]

        File.dir?(path) ->
          for file <- Path.wildcard(Path.join(path, "**"), match_dot: true),
              File.regular?(file),
              do: Path.relative_to(file, @root)

        true ->
          raise "package[:files] in mix.exs lists #{entry}, which does not exist"
      end
    end)
    |> Enum.sort()
  end

  @doc "Writes `files` (`%{relative_path => contents}`) under `dir`; returns `dir`."
  @spec write!(Path.t(), %{Path.t() => iodata()}) :: Path.t()
  def write!(dir, files) do
    for {path, contents} <- files do
      target = Path.join(dir, path)
      File.mkdir_p!(Path.dirname(target))
      File.write!(target, contents)
    end

    dir
  end

  @doc """
  Runs `mix args` in `dir`: `{output, status}` (stderr included). Options:
  `:env` (default `MIX_ENV=dev`), added to `CARGO_TARGET_DIR` pointing at
  this checkout's `target/`, so registry crates are not rebuilt.
  """
  @spec mix(Path.t(), [String.t()], keyword()) :: {String.t(), non_neg_integer()}
  def mix(dir, args, opts \\ []) do
    opts = Keyword.validate!(opts, env: [])

    env =
      %{"MIX_ENV" => "dev", "CARGO_TARGET_DIR" => Path.join(@root, "target")}
      |> Map.merge(Map.new(opts[:env], fn {k, v} -> {to_string(k), v} end))
      |> Map.to_list()

    System.cmd("mix", args, cd: dir, stderr_to_stdout: true, env: env)
  end

  defp copy!(file, dest) do
    target = Path.join(dest, file)
    File.mkdir_p!(Path.dirname(target))
    File.cp!(Path.join(@root, file), target)
  end
end

defmodule Mix.Tasks.Compile.CaravanNative do
  @moduledoc """
  Builds Caravan's NIF (`native/caravan_nif`) with cargo and copies it to
  `priv/native/`, where `Caravan.Native` loads it from.

  It runs as the first of Caravan's compilers, also when Caravan is a `path:`
  or `git:` dependency. Cargo runs only when a Rust source or Cargo file is
  newer than the built library (or with `--force`); its output is shown as it
  comes, and a cargo failure fails `mix compile` with cargo's errors.

  Environment:

    * `CARGO` - the cargo executable (default: `cargo` on `PATH`).
    * `CARGO_TARGET_DIR` - honoured as cargo honours it (default: `target/`
      in Caravan's root).
  """
  use Mix.Task.Compiler

  @root Path.expand("..", __DIR__)
  @crate "caravan_nif"

  @doc "The path the built NIF is copied to, without its `.so` suffix."
  @spec destination() :: Path.t()
  def destination, do: Path.join([@root, "priv", "native", "lib" <> @crate])

  @impl Mix.Task.Compiler
  def run(args) do
    {opts, _, _} = OptionParser.parse(args, switches: [force: :boolean])
    dest = destination() <> ".so"

    if opts[:force] || Mix.Utils.stale?(sources(), [dest]) do
      build!(dest)
      # Mix links priv/ into _build before compilers run, and only if it
      # exists then; a package or fresh copy may come without one.
      Mix.Project.build_structure()
      {:ok, []}
    else
      {:noop, []}
    end
  end

  @impl Mix.Task.Compiler
  def clean do
    File.rm(destination() <> ".so")
    :ok
  end

  defp sources do
    Path.wildcard(Path.join(@root, "native/**/*.rs")) ++
      Path.wildcard(Path.join(@root, "native/*/Cargo.toml")) ++
      Enum.filter(
        [Path.join(@root, "Cargo.toml"), Path.join(@root, "Cargo.lock")],
        &File.exists?/1
      )
  end

  defp build!(dest) do
    cargo = System.get_env("CARGO", "cargo")

    executable =
      System.find_executable(cargo) ||
        Mix.raise(
          "Caravan needs cargo to build its NIF, and #{inspect(cargo)} is not on PATH. " <>
            "Install the Rust toolchain (rustup.rs), or set CARGO to cargo's path, then run `mix compile` again."
        )

    args = ["build", "--release", "-p", @crate]
    Mix.shell().info("==> caravan: cargo #{Enum.join(args, " ")}")

    case stream_cargo(executable, args) do
      {0, _errors} ->
        install!(built_library(), dest)

      {status, errors} ->
        Mix.raise(
          "cargo #{Enum.join(args, " ")} failed with exit status #{status} in #{@root}:\n" <>
            Enum.join(errors, "\n")
        )
    end
  end

  # Runs cargo with its output echoed line by line; returns the exit status and
  # the lines that carry errors, for the failure message.
  defp stream_cargo(executable, args) do
    port =
      Port.open({:spawn_executable, executable}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        {:line, 4096},
        {:args, args},
        {:cd, @root}
      ])

    collect(port, [], [])
  end

  defp collect(port, partial, errors) do
    receive do
      {^port, {:data, {:noeol, chunk}}} ->
        collect(port, [partial | chunk], errors)

      {^port, {:data, {:eol, chunk}}} ->
        line = IO.iodata_to_binary([partial | chunk])
        IO.puts(line)
        errors = if error_line?(line), do: [line | errors], else: errors
        collect(port, [], errors)

      {^port, {:exit_status, status}} ->
        {status, Enum.reverse(errors)}
    end
  end

  defp error_line?(line) do
    String.starts_with?(line, ["error", "  -->", "warning: unused manifest"]) or
      String.contains?(line, "could not compile")
  end

  defp built_library do
    target_dir = System.get_env("CARGO_TARGET_DIR") || Path.join(@root, "target")
    base = Path.join([Path.expand(target_dir, @root), "release", "lib" <> @crate])

    Enum.find([base <> ".so", base <> ".dylib"], &File.exists?/1) ||
      Mix.raise("cargo succeeded but #{base}.so (or .dylib) is missing; check CARGO_TARGET_DIR")
  end

  # Copy through a temporary file and rename, so a running VM that has the old
  # library mapped is never handed a half-written file.
  defp install!(built, dest) do
    File.mkdir_p!(Path.dirname(dest))
    tmp = dest <> ".tmp"
    File.cp!(built, tmp)
    File.rename!(tmp, dest)
    Mix.shell().info("==> caravan: installed #{Path.relative_to(dest, @root)}")
  end
end

defmodule Caravan.PackageTest do
  # What the package ships (package[:files] in mix.exs) must hold every file
  # the build reads and every file the docs link to. The build itself, from a
  # copy of exactly those files, is test/caravan/path_dependency_test.exs.
  use ExUnit.Case, async: true

  alias Caravan.Test.SampleApp

  @root SampleApp.root()

  setup_all do
    {:ok, files: MapSet.new(SampleApp.package_files())}
  end

  test "holds every Rust target the NIF build compiles, with its manifest", %{files: files} do
    {json, 0} =
      System.cmd("cargo", ["metadata", "--format-version", "1", "--no-deps", "--offline"],
        cd: @root
      )

    manifests = for [_, path] <- Regex.scan(~r/"manifest_path":"([^"]+)"/, json), do: path

    # Library, cdylib and build-script targets (not tests, benches or examples).
    sources =
      for [_, kinds, path] <-
            Regex.scan(~r/\{"kind":\[([^\]]*)\][^{}]*?"src_path":"([^"]+)"/, json),
          Enum.any?(~w("lib" "cdylib" "custom-build"), &String.contains?(kinds, &1)),
          do: path

    assert length(manifests) == 2
    assert length(sources) >= 3

    for path <- ["Cargo.toml", "Cargo.lock" | Enum.map(manifests ++ sources, &relative/1)] do
      assert path in files, "#{path} is read by the build but not in package[:files]"
    end

    # Every module file beside a target's root file goes too.
    for source <- sources,
        file <- Path.wildcard(Path.join(Path.dirname(source), "**/*.rs")) do
      assert relative(file) in files, "#{relative(file)} is not in package[:files]"
    end
  end

  test "holds the Mix compiler that mix.exs loads", %{files: files} do
    required =
      Regex.scan(~r/Code\.require_file\("([^"]+)"/, File.read!(Path.join(@root, "mix.exs")))

    assert required != []

    for [_, path] <- required do
      assert path in files, "mix.exs loads #{path}, which is not in package[:files]"
    end
  end

  test "holds every doc extra and every local file the docs link to", %{files: files} do
    extras = Mix.Project.config()[:docs][:extras]
    assert "README.md" in extras

    for doc <- extras do
      assert doc in files, "docs extra #{doc} is not in package[:files]"
    end

    for doc <- extras,
        Path.extname(doc) == ".md",
        [_, target] <- Regex.scan(~r/\]\(([^)#\s]+)[^)]*\)/, File.read!(Path.join(@root, doc))),
        not String.contains?(target, "://") do
      # Relative to the linking doc: guides/ link to ../README.md.
      path = target |> Path.expand(Path.join(@root, Path.dirname(doc))) |> relative()
      assert path in files, "#{doc} links to #{target}, which is not in package[:files]"
    end
  end

  test "every guide ships, is a doc extra in the Guides group, and the README links to it",
       %{files: files} do
    docs = Mix.Project.config()[:docs]
    readme = File.read!(Path.join(@root, "README.md"))
    guides = @root |> Path.join("guides/*.md") |> Path.wildcard() |> Enum.map(&relative/1)

    assert guides != []

    for guide <- guides do
      assert guide in files, "#{guide} is not in package[:files]"
      assert guide in docs[:extras], "#{guide} is not in docs[:extras]"
      assert guide in docs[:groups_for_extras][:Guides], "#{guide} is not in the Guides group"
      assert readme =~ "](#{guide})", "README.md does not link to #{guide}"
    end
  end

  test "ships no build output, and the licence the crates declare", %{files: files} do
    refute Enum.any?(
             files,
             &String.starts_with?(&1, ["_build/", "target/", "priv/native/", "deps/"])
           )

    assert "LICENSE" in files

    assert File.read!(Path.join(@root, "LICENSE")) =~
             "Apache License\n                           Version 2.0"

    assert Mix.Project.config()[:package][:licenses] == ["Apache-2.0"]
    assert File.read!(Path.join(@root, "Cargo.toml")) =~ ~s(license = "Apache-2.0")
  end

  defp relative(path), do: Path.relative_to(path, @root)
end

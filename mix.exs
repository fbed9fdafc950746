# The NIF is built by a Mix compiler of Caravan's own: hex.pm (and so the
# rustler and elixir_make packages) cannot be used.
unless Code.ensure_loaded?(Mix.Tasks.Compile.CaravanNative) do
  Code.require_file("mix/compile.caravan_native.ex", __DIR__)
end

defmodule Caravan.MixProject do
  use Mix.Project

  # 1.1.0 once it is a drop-in for the original caravan 1.0 (see the CHANGELOG).
  @version "1.1.0-dev"
  @source_url "https://github.com/caravan-beam/caravan"
  @guides ~w(distribution discovery nomad-consul reliability performance development)
          |> Enum.map(&"guides/#{&1}.md")

  def project do
    [
      app: :caravan,
      version: @version,
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      compilers: [:caravan_native | Mix.compilers()],
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: [],
      description:
        "Erlang distribution on Nomad + Consul: no epmd, cluster formation from Consul DNS.",
      test_coverage: [ignore_modules: [Caravan.Native]],
      source_url: @source_url,
      package: package(),
      docs: docs()
    ]
  end

  # Exactly what a user's build needs (the Mix compiler, the Rust workspace)
  # and the docs the README links to; test/caravan/package_test.exs checks it.
  defp package do
    [
      licenses: ["Apache-2.0"],
      links: %{"GitHub" => @source_url, "Changelog" => "#{@source_url}/blob/main/CHANGELOG.md"},
      files: ~w(
        lib mix mix.exs .formatter.exs
        Cargo.toml Cargo.lock
        native/caravan_core/Cargo.toml native/caravan_core/src
        native/caravan_nif/Cargo.toml native/caravan_nif/build.rs native/caravan_nif/src
        README.md guides ARCHITECTURE.md CHANGELOG.md LICENSE bench/mesh.svg
      )
    ]
  end

  defp docs do
    [
      main: "readme",
      source_ref: "v#{@version}",
      extras: ["README.md" | @guides] ++ ["ARCHITECTURE.md", "CHANGELOG.md", "LICENSE"],
      groups_for_extras: [
        Guides: ["README.md" | @guides] ++ ["ARCHITECTURE.md"],
        About: ["CHANGELOG.md", "LICENSE"]
      ],
      groups_for_modules: [
        Distribution: [Caravan.Epmd, Caravan.Epmd.Client, Caravan.Epmd.Dist_dist],
        Discovery: [Caravan.DnsClient, Caravan.DnsClient.InetRes, Caravan.DnsClient.Options],
        "Cluster formation": [
          Caravan.Cluster.DnsStrategy,
          Caravan.Cluster.Config,
          Caravan.Cluster.Discovery,
          Caravan.Cluster.Peers,
          Caravan.Cluster.Membership,
          Caravan.Cluster.NodeNames,
          Caravan.Cluster.Schedule,
          Caravan.Cluster.Log
        ],
        "Mix tasks": [Mix.Tasks.Caravan.Lookup]
      ]
    ]
  end

  def application do
    [extra_applications: [:logger]]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]
end

defmodule SampleApp.MixProject do
  use Mix.Project

  def project do
    [
      app: :sample_app,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      deps: deps(),
      releases: [
        sample_app: [
          include_executables_for: [:unix],
          # :tar also writes _build/prod/sample_app-0.1.0.tar.gz, the artifact
          # examples/nomad/caravan.nomad.hcl downloads (variable release_url).
          steps: [:assemble, :tar]
        ]
      ]
    ]
  end

  def application do
    [
      extra_applications: [:logger],
      mod: {SampleApp.Application, []}
    ]
  end

  defp deps do
    [
      # This example lives inside Caravan's repository. In your own app, point
      # at Caravan with `git:` or a `path:` of your own. The NIF is built by
      # Caravan's Mix compiler, so cargo must be on PATH when you compile.
      {:caravan, path: "../.."},
      # libcluster (hex.pm) supervises Caravan.Cluster.DnsStrategy.
      {:libcluster, "~> 3.3"}
    ]
  end
end

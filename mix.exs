# The NIF is built by a Mix compiler of Caravan's own: hex.pm (and so the
# rustler and elixir_make packages) cannot be used.
unless Code.ensure_loaded?(Mix.Tasks.Compile.CaravanNative) do
  Code.require_file("mix/compile.caravan_native.ex", __DIR__)
end

defmodule Caravan.MixProject do
  use Mix.Project

  @version "0.1.0"

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
      test_coverage: [ignore_modules: [Caravan.Native]]
    ]
  end

  def application do
    [extra_applications: [:logger]]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]
end

defmodule CaravanDemo.MixProject do
  use Mix.Project

  # Caravan's demo, as an app of its own that depends on Caravan by path:
  # `scripts/demo` (from the repository root) runs `mix demo` here.
  def project do
    [
      app: :caravan_demo,
      version: "0.1.0",
      elixir: "~> 1.14",
      deps: [{:caravan, path: "../.."}],
      # The DNS server is the test suite's own dnsmasq fixture, not a copy.
      elixirc_paths: [
        "lib"
        | Enum.map(~w(dns_server dnsmasq), &Path.expand("../../test/support/#{&1}.ex", __DIR__))
      ],
      # The fixture's start!/3 runs under ExUnit, which the demo never calls.
      xref: [exclude: [ExUnit.Callbacks]]
    ]
  end

  def application, do: [extra_applications: [:logger]]
end

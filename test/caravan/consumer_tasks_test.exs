defmodule Caravan.ConsumerTasksTest do
  # A fresh app that depends on Caravan, as a user's does: every Caravan
  # task that `mix help` lists there works there, and the demo (an app of
  # its own, examples/demo) is not among them.
  use ExUnit.Case, async: true

  alias Caravan.Test.{DnsServer, Dnsmasq, SampleApp}

  @moduletag timeout: 300_000
  @service "likes-dist.service.consul"

  setup_all do
    dir = SampleApp.tmp_dir!("consumer")
    caravan = SampleApp.copy_caravan!(Path.join(dir, "caravan"), nif: :copy)

    app =
      SampleApp.write!(Path.join(dir, "consumer"), %{
        "mix.exs" => """
        defmodule Consumer.MixProject do
          use Mix.Project
          def project, do: [app: :consumer, version: "0.1.0", deps: [{:caravan, path: #{inspect(caravan)}}]]
        end
        """
      })

    {output, status} = SampleApp.mix(app, ["compile"])
    assert status == 0, output
    %{app: app}
  end

  test "mix help lists only caravan.lookup, and it works from the app", %{app: app} do
    {help, 0} = SampleApp.mix(app, ["help"])
    listed = for [_, task] <- Regex.scan(~r/^mix (\S*caravan\S*|demo)\s/m, help), do: task
    assert listed == ["caravan.lookup"], help

    ns =
      Dnsmasq.nameserver(Dnsmasq.start!(DnsServer.addr_instance(@service, {127, 0, 0, 2}, 4001)))

    {output, status} =
      SampleApp.mix(app, ["caravan.lookup", @service, "--nameserver", ns, "--node-sname", "likes"])

    assert status == 0, output
    assert output =~ "#{@service}: 1 target(s) from #{ns} over udp"
    assert output =~ ~r/^likes-4001@7f000002\.addr\.dc1\.consul$/m
  end
end

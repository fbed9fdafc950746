defmodule Caravan.PathDependencyTest do
  # Users consume caravan as a package, a `path:` or a git dependency. This
  # builds a throwaway app that depends on a copy of exactly the files the
  # package ships (package[:files], no priv/native), so the dependency's own
  # `mix compile` must run cargo, install the NIF and let the app call into it.
  use ExUnit.Case, async: false

  alias Caravan.Test.{DnsServer, Dnsmasq, SampleApp}

  @moduletag :path_dependency
  @moduletag timeout: 600_000

  setup do
    {:ok, dir: SampleApp.tmp_dir!("pathdep")}
  end

  test "an app depending on the package's files builds the NIF and calls it", %{dir: dir} do
    caravan = SampleApp.copy_caravan!(Path.join(dir, "caravan"))
    refute File.exists?(Path.join(caravan, "priv/native/libcaravan_nif.so"))

    dns =
      Dnsmasq.start!(DnsServer.addr_instance("consumer-dist.service.consul", {10, 0, 1, 5}, 4711))

    app =
      SampleApp.write!(Path.join(dir, "consumer"), %{
        "mix.exs" => """
        defmodule Consumer.MixProject do
          use Mix.Project
          def project, do: [app: :consumer, version: "0.1.0", deps: [{:caravan, path: #{inspect(caravan)}}]]
        end
        """,
        "lib/consumer.ex" => """
        defmodule Consumer do
          def port, do: Caravan.Epmd.dist_port(:"consumer-4711@10.0.1.5")

          def peers(nameserver) do
            {:ok, targets} =
              Caravan.DnsClient.lookup("consumer-dist.service.consul", nameservers: [nameserver])

            Enum.map(targets, &{&1.port, &1.addresses})
          end
        end
        """
      })

    code = """
    IO.puts("port=\#{Consumer.port()}")
    IO.puts("peers=\#{inspect(Consumer.peers(#{inspect(Dnsmasq.nameserver(dns))}))}")
    """

    # SampleApp.mix/3 shares the cargo target dir so registry crates are not rebuilt.
    {output, status} = SampleApp.mix(app, ["run", "-e", code])

    assert status == 0, output
    assert output =~ "caravan: cargo build --release -p caravan_nif"
    assert output =~ "port=4711"
    assert output =~ "peers=[{4711, [{10, 0, 1, 5}]}]"
    assert File.exists?(Path.join(caravan, "priv/native/libcaravan_nif.so"))

    # A second run finds the NIF up to date and does not run cargo again.
    {output, 0} = SampleApp.mix(app, ["run", "-e", "IO.puts(Consumer.port())"])

    refute output =~ "cargo build"
    assert output =~ "4711"
  end

  test "a cargo failure fails mix compile with cargo's error", %{dir: dir} do
    caravan = SampleApp.copy_caravan!(Path.join(dir, "caravan"))
    lib_rs = Path.join(caravan, "native/caravan_nif/src/lib.rs")
    File.write!(lib_rs, File.read!(lib_rs) <> "\nfn broken( {}\n")

    {output, status} = SampleApp.mix(caravan, ["compile"])

    assert status != 0
    assert output =~ "failed with exit status"
    assert output =~ "error"
    refute File.exists?(Path.join(caravan, "priv/native/libcaravan_nif.so"))
  end
end

defmodule Mix.Tasks.Caravan.LookupTest do
  use ExUnit.Case, async: true

  import ExUnit.CaptureIO

  alias Caravan.Test.{DnsServer, Dnsmasq, RawDnsServer}

  @service "likes-dist.service.consul"

  setup do
    records =
      List.flatten([
        DnsServer.addr_instance(@service, {127, 0, 0, 2}, 4001),
        DnsServer.addr_instance(@service, {127, 0, 0, 3}, 4002),
        DnsServer.node_instance(@service, "node1", {127, 0, 1, 1}, 4003)
      ])

    %{ns: Dnsmasq.nameserver(Dnsmasq.start!(records))}
  end

  test "prints the answer as a table, and the node names with --node-sname", %{ns: ns} do
    out =
      capture_io(fn ->
        Mix.Tasks.Caravan.Lookup.run([@service, "--nameserver", ns, "--node-sname", "likes"])
      end)

    assert out =~ "#{@service}: 3 target(s) from #{ns} over udp"
    assert out =~ ~r/^PRIORITY  WEIGHT  PORT  TARGET\s+ADDRESSES$/m
    assert out =~ ~r/^1\s+1\s+4001\s+7f000002\.addr\.dc1\.consul\s+127\.0\.0\.2$/m
    assert out =~ ~r/^1\s+1\s+4003\s+node1\.node\.dc1\.consul\s+127\.0\.1\.1$/m
    # Without --node-host: what the strategy's default (node_host: :target) builds.
    assert out =~ "Node names (node_sname: \"likes\", node_host: :target):"
    assert out =~ ~r/^likes-4001@7f000002\.addr\.dc1\.consul$/m
    assert out =~ ~r/^likes-4003@node1\.node\.dc1\.consul$/m
  end

  test "--node-host address names peers by address, as node_host: :address does", %{ns: ns} do
    out =
      capture_io(fn ->
        Mix.Tasks.Caravan.Lookup.run([
          @service,
          "--nameserver",
          ns,
          "--node-sname",
          "likes",
          "--node-host",
          "address"
        ])
      end)

    assert out =~ "Node names (node_sname: \"likes\", node_host: :address):"
    assert out =~ ~r/^likes-4001@127\.0\.0\.2$/m
    assert out =~ ~r/^likes-4002@127\.0\.0\.3$/m
    assert out =~ ~r/^likes-4003@127\.0\.1\.1$/m
  end

  test "--node-host accepts only target or address", %{ns: ns} do
    assert_raise Mix.Error, ~r/--node-host must be target or address, got: ip/, fn ->
      Mix.Tasks.Caravan.Lookup.run([@service, "--nameserver", ns, "--node-host", "ip"])
    end
  end

  test "an invalid --node-sname is refused once, before any lookup, as the strategy refuses it",
       %{ns: ns} do
    out =
      capture_io(fn ->
        error =
          assert_raise Mix.Error, fn ->
            Mix.Tasks.Caravan.Lookup.run([@service, "--nameserver", ns, "--node-sname", "my.app"])
          end

        assert error.message =~ ~s(invalid --node-sname: node_sname "my.app" is not usable)
        assert error.message =~ "such as \"likes-service\""
      end)

    # No table, no rows: nothing was looked up.
    assert out == ""
  end

  test "--tcp queries over TCP", %{ns: ns} do
    out =
      capture_io(fn -> Mix.Tasks.Caravan.Lookup.run([@service, "--nameserver", ns, "--tcp"]) end)

    assert out =~ "3 target(s) from #{ns} over tcp"
  end

  test "a service without instances is not a failure", %{ns: ns} do
    out =
      capture_io(fn ->
        Mix.Tasks.Caravan.Lookup.run(["nobody.service.consul", "--nameserver", ns])
      end)

    assert out =~ "nobody.service.consul: no instances (NXDOMAIN or no SRV records)"
  end

  test "a DNS failure raises a readable Mix error" do
    ns = RawDnsServer.nameserver(RawDnsServer.start!(answer: :never))

    assert_raise Mix.Error, ~r/DNS lookup of #{@service} failed \(timeout\): no answer/, fn ->
      Mix.Tasks.Caravan.Lookup.run([@service, "--nameserver", ns, "--timeout", "300"])
    end
  end

  test "bad arguments raise a Mix error with the usage" do
    assert_raise Mix.Error, ~r/expected exactly one query/, fn ->
      Mix.Tasks.Caravan.Lookup.run([])
    end

    assert_raise Mix.Error, ~r/unknown or invalid option --port/, fn ->
      Mix.Tasks.Caravan.Lookup.run([@service, "--port", "1"])
    end

    assert_raise Mix.Error, ~r/invalid DNS nameserver "localhost:8600"/, fn ->
      Mix.Tasks.Caravan.Lookup.run([@service, "--nameserver", "localhost:8600"])
    end
  end

  @tag timeout: 120_000
  test "run as a command, it exits 0 on an answer and 1 on a DNS failure", %{ns: ns} do
    silent = RawDnsServer.nameserver(RawDnsServer.start!(answer: :never))
    mix = System.find_executable("mix")
    env = [{"MIX_ENV", "test"}]

    {out, 0} =
      System.cmd(mix, ["caravan.lookup", @service, "--nameserver", ns],
        env: env,
        stderr_to_stdout: true
      )

    assert out =~ "3 target(s)"

    {out, status} =
      System.cmd(mix, ["caravan.lookup", @service, "--nameserver", silent, "--timeout", "300"],
        env: env,
        stderr_to_stdout: true
      )

    assert status == 1
    assert out =~ "DNS lookup of #{@service} failed (timeout)"

    {out, status} =
      System.cmd(mix, ["caravan.lookup", @service, "--nameserver", ns, "--node-sname", "my.app"],
        env: env,
        stderr_to_stdout: true
      )

    assert status == 1
    assert out =~ ~s(invalid --node-sname: node_sname "my.app")
    refute out =~ "target(s)"
  end
end

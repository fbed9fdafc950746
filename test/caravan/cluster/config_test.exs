defmodule Caravan.Cluster.ConfigTest do
  use ExUnit.Case, async: true
  doctest Caravan.Cluster.Config

  alias Caravan.Cluster.Config

  @base [query: "likes-dist.service.consul", node_sname: "likes"]

  test "takes libcluster's state struct, with its MFAs and topology" do
    state = %Cluster.Strategy.State{
      topology: :caravan,
      connect: {:net_kernel, :connect_node, []},
      disconnect: {:erlang, :disconnect_node, []},
      list_nodes: {:erlang, :nodes, [:connected]},
      config: [
        consul_service: "likes-service-dist.service.consul",
        node_sname: "profile-service",
        poll_interval: 1_000
      ]
    }

    config = Config.new(state)
    assert config.topology == :caravan
    assert config.query == "likes-service-dist.service.consul"
    assert config.node_sname == "profile-service"
    assert config.poll_interval == 1_000
    assert config.list_nodes == {:erlang, :nodes, [:connected]}
  end

  test "takes any map with the state's keys" do
    config = Config.new(%{topology: :t, connect: {Kernel, :max, [1]}, config: @base})
    assert config.topology == :t
    assert config.connect == {Kernel, :max, [1]}
    assert config.disconnect == {:erlang, :disconnect_node, []}
  end

  test "takes flat options for standalone use, with libcluster's default MFAs" do
    config = Config.new(@base)
    assert config.topology == :caravan
    assert config.connect == {:net_kernel, :connect_node, []}
    assert config.disconnect == {:erlang, :disconnect_node, []}
    assert config.list_nodes == {:erlang, :nodes, [:connected]}
  end

  test "documented defaults" do
    config = Config.new(@base)
    assert config.poll_interval == 5_000
    assert config.dns_client == Caravan.DnsClient
    assert config.node_host == :target
    assert config.disconnect_after == 3
    assert config.connect_timeout == 5_000
    assert config.connect_concurrency == 16
    assert config.max_backoff == 5_000
    assert config.max_nodes == 1024
    assert config.max_node_names == max(1_000, div(:erlang.system_info(:atom_limit), 100))
    assert config.max_new_names == 256
    assert config.lookup_deadline == 5_000 + 1_000
    assert config.dns_opts == []
  end

  test "max_backoff follows poll_interval unless set" do
    assert Config.new(@base ++ [poll_interval: 700]).max_backoff == 700
    assert Config.new(@base ++ [poll_interval: 700, max_backoff: 0]).max_backoff == 0
  end

  test "a missing query or node_sname is a KeyError" do
    assert_raise KeyError, ~r/:query/, fn -> Config.new(node_sname: "likes") end
    assert_raise KeyError, ~r/:node_sname/, fn -> Config.new(query: "q.service.consul") end
  end

  test "consul_service is an alias of query, and a conflicting pair is refused" do
    assert Config.new(consul_service: "a.service.consul", node_sname: "x").query ==
             "a.service.consul"

    assert Config.new(consul_service: "a", query: "a", node_sname: "x").query == "a"

    assert_raise ArgumentError, ~r/both :query .* :consul_service/, fn ->
      Config.new(consul_service: "a", query: "b", node_sname: "x")
    end
  end

  test "discovery options pass through to the DNS client" do
    config = Config.new(@base ++ [nameservers: ["127.0.0.1:8600"], timeout: 500, transport: :tcp])
    assert config.dns_opts == [nameservers: ["127.0.0.1:8600"], timeout: 500, transport: :tcp]
  end

  test "invalid values name the key, the value and what is expected" do
    cases = [
      poll_interval: 0,
      poll_interval: "5s",
      node_host: :ip,
      disconnect_after: 0,
      disconnect_after: :sometimes,
      connect_timeout: -1,
      connect_concurrency: 0,
      max_nodes: 1.5,
      max_node_names: nil,
      max_backoff: -5,
      dns_client: NoSuchModule
    ]

    for {key, value} <- cases do
      error = assert_raise ArgumentError, fn -> Config.new(Keyword.put(@base, key, value)) end
      assert error.message =~ "invalid #{inspect(key)} #{inspect(value)}: expected", error.message
    end
  end

  test "DNS options and the query are checked at start by the lookup's own rules" do
    # Each of these would pass a looser check and then fail every poll.
    cases = [
      {[timeout: 700_000],
       "expected :timeout to be a number of milliseconds in 1..600000, got: 700000"},
      {[timeout: 0], "in 1..600000, got: 0"},
      {[nameservers: ["localhost:8600"]],
       ~s(invalid DNS nameserver "localhost:8600" in :nameservers: "localhost" is not an IP address)},
      {[nameservers: ["127.0.0.1:99999"]],
       ~s[invalid DNS nameserver "127.0.0.1:99999" in :nameservers: port "99999" is not a port number (1..65535)]},
      {[nameservers: List.duplicate("127.0.0.1:8600", 65)], "at most 64 entries, got 65"},
      {[nameservers: "127.0.0.1"], "expected :nameservers to be :system or a list"},
      {[transport: :quic], "expected :transport to be :udp or :tcp, got: :quic"},
      {[query: "my app..service.consul"],
       ~s(invalid :query: DNS query "my app..service.consul" is not a domain name)},
      {[query: ""], ~s(invalid :query: DNS query "" is not a domain name)}
    ]

    for {opts, text} <- cases do
      error = assert_raise ArgumentError, fn -> Config.new(Keyword.merge(@base, opts)) end
      assert error.message =~ text
      # ...and the fix: a valid example or the range.
      assert error.message =~ ~r/for example|such as|1\.\.|:udp or :tcp|at most/
    end
  end

  test "a node_sname that cannot start a node name is refused at start" do
    for sname <- ["", "1app", "app@host", "app name", String.duplicate("a", 65), 42] do
      error = assert_raise ArgumentError, fn -> Config.new(query: "q", node_sname: sname) end
      assert error.message =~ "node_sname"
    end
  end

  test "unknown options are refused, listing the known ones" do
    error = assert_raise ArgumentError, fn -> Config.new(@base ++ [pol_interval: 5]) end
    assert error.message =~ "[:pol_interval]"
    assert error.message =~ ":poll_interval"
  end

  test "anything else is refused" do
    assert_raise ArgumentError, ~r/expected a %Cluster.Strategy.State{}/, fn ->
      Config.new("q")
    end

    assert_raise ArgumentError, ~r/keyword list/, fn -> Config.new(%{config: [:a]}) end
  end
end

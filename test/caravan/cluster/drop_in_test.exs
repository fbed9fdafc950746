defmodule Caravan.Cluster.DropInTest do
  # What code written for the original Caravan (v1.0 and 0.6) or for
  # libcluster relies on: find_nodes/1 connecting, get_nodes/1 and
  # get_nodes/2 clients, nameservers: [], a client module compiling without
  # warnings, mistakes caught at start, several standalone topologies.
  # Logging is in Caravan.Cluster.LoggingTest (it sets global app env).
  use ExUnit.Case, async: true

  import ExUnit.CaptureLog

  alias Caravan.Cluster.{Config, DnsStrategy}
  alias Caravan.Test.{DnsServer, Dnsmasq, FakeDns}

  setup context do
    {:ok, connected} = Agent.start_link(fn -> [] end)

    query =
      "d#{:erlang.phash2(context.test)}-#{System.unique_integer([:positive])}.service.consul"

    {:ok, connected: connected, query: query}
  end

  def connect(test, connected, node) do
    send(test, {:connect, node})

    if String.contains?(Atom.to_string(node), "refuses"),
      do: false,
      else: Agent.update(connected, &[node | &1]) && true
  end

  def list(connected), do: Agent.get(connected, & &1)

  defp record(port, host), do: %{port: port, host: host, priority: 1, weight: 1, addresses: []}

  defp mfas(ctx) do
    [
      connect: {__MODULE__, :connect, [self(), ctx.connected]},
      list_nodes: {__MODULE__, :list, [ctx.connected]}
    ]
  end

  describe "find_nodes/1, as the original's" do
    test "connects the peers DNS names that are not connected yet, and returns :ok", ctx do
      Agent.update(ctx.connected, fn _ -> [:"app-4002@b"] end)
      FakeDns.serve(ctx.query, [{:ok, [record(4001, "a"), record(4002, "b"), record(4003, "c")]}])

      config = Config.new([query: ctx.query, node_sname: "app", dns_client: FakeDns] ++ mfas(ctx))

      log = capture_log(fn -> assert DnsStrategy.find_nodes(config) == :ok end)

      assert_received {:connect, :"app-4001@a"}
      assert_received {:connect, :"app-4003@c"}
      refute_received {:connect, :"app-4002@b"}
      assert log =~ ~s([libcluster:caravan] connected to :"app-4001@a")
    end

    test "returns {:error, [{node, result}]} for the connects that failed, as libcluster does",
         ctx do
      FakeDns.serve(ctx.query, [{:ok, [record(4001, "a"), record(4002, "refuses")]}])
      config = Config.new([query: ctx.query, node_sname: "app", dns_client: FakeDns] ++ mfas(ctx))

      log =
        capture_log(fn ->
          assert DnsStrategy.find_nodes(config) == {:error, [{:"app-4002@refuses", false}]}
        end)

      assert log =~ ~s(unable to connect to :"app-4002@refuses": not reachable or refused)
    end

    test "a failed lookup is {:error, reason}, and connects nothing", ctx do
      FakeDns.serve(ctx.query, [{:error, {:timeout, "no answer"}}])
      config = Config.new([query: ctx.query, node_sname: "app", dns_client: FakeDns] ++ mfas(ctx))

      assert DnsStrategy.find_nodes(config) == {:error, {:timeout, "no answer"}}
      refute_received {:connect, _}
    end

    test "takes a %Config{} built as a struct literal, as the original's tests build it", ctx do
      FakeDns.serve(ctx.query, [{:ok, [record(4001, "a")]}])

      config = %Config{
        query: ctx.query,
        node_sname: "app",
        dns_client: FakeDns.Legacy,
        connect: {__MODULE__, :connect, [self(), ctx.connected]},
        list_nodes: {__MODULE__, :list, [ctx.connected]},
        topology: :old
      }

      capture_log(fn -> assert DnsStrategy.find_nodes(config) == :ok end)
      assert_received {:connect, :"app-4001@a"}

      assert DnsStrategy.lookup_nodes(config) == {:ok, [:"app-4001@a"]}

      for bad <- [0, false] do
        assert_raise ArgumentError, ~r/invalid :poll_interval #{bad}/, fn ->
          DnsStrategy.find_nodes(%{config | poll_interval: bad})
        end
      end
    end

    test "a get_nodes client's empty answer is :ok, as the original's was", ctx do
      FakeDns.serve(ctx.query, [{:ok, []}])

      config =
        Config.new([query: ctx.query, node_sname: "app", dns_client: FakeDns.Legacy] ++ mfas(ctx))

      assert DnsStrategy.find_nodes(config) == :ok
      refute_received {:connect, _}
    end

    test "lookup_nodes/1 is the lookup alone: the names, this node left out, nothing connected",
         ctx do
      FakeDns.serve(ctx.query, [
        {:ok, [record(4001, "a"), record(4001, "A."), record(4002, "b")]},
        {:error, {:timeout, "no answer"}}
      ])

      config = Config.new([query: ctx.query, node_sname: "app", dns_client: FakeDns] ++ mfas(ctx))
      assert DnsStrategy.lookup_nodes(config) == {:ok, [:"app-4001@a", :"app-4002@b"]}
      assert DnsStrategy.lookup_nodes(config) == {:error, {:timeout, "no answer"}}
      refute_received {:connect, _}
    end
  end

  describe "clients" do
    test "a 0.6 client with only get_nodes/2 is called as 0.6 called it", ctx do
      FakeDns.serve(ctx.query, [{:ok, [record(4001, "a")]}])
      ns = [nameservers: [{{10, 0, 183, 34}, 8700}]]

      for {given, expected} <- [
            {[nameservers: [{"10.0.183.34", "8700"}]], ns},
            {[nameservers: [{"10.0.183.34", 8700}]], ns},
            {[nameservers: [{{10, 0, 183, 34}, 8700}]], ns},
            {[nameservers: []], []},
            {[], []}
          ] do
        config =
          Config.new(
            [query: ctx.query, node_sname: "app", dns_client: FakeDns.Legacy06] ++
              given ++ mfas(ctx)
          )

        assert DnsStrategy.lookup_nodes(config) == {:ok, [:"app-4001@a"]}
        assert List.last(FakeDns.calls(ctx.query)) == expected
      end
    end

    test "a get_nodes/2 client runs the strategy: it connects what the client names", ctx do
      FakeDns.serve(ctx.query, [{:ok, [record(4001, "a")]}])

      start_supervised!(
        {DnsStrategy,
         [
           query: ctx.query,
           node_sname: "app",
           dns_client: FakeDns.Legacy06,
           nameservers: [{"127.0.0.1", "8600"}],
           poll_interval: 60_000
         ] ++ mfas(ctx)}
      )

      capture_log(fn -> assert_receive {:connect, :"app-4001@a"}, 1_000 end)
    end

    test "Caravan.DnsClient.get_nodes/2 takes 0.6's options, or a list of nameservers" do
      query = "likes-dist.service.consul"
      dns = Dnsmasq.start!(DnsServer.addr_instance(query, {10, 0, 1, 5}, 4711))
      {ip, port} = DnsServer.address(dns)

      for opts <- [
            [nameservers: [{to_string(:inet.ntoa(ip)), Integer.to_string(port)}]],
            [nameservers: [{ip, port}]],
            [{ip, port}],
            [Dnsmasq.nameserver(dns)]
          ] do
        assert Caravan.DnsClient.get_nodes(query, opts) == [{4711, "0a000105.addr.dc1.consul"}]
      end
    end

    test "nameservers: [] means the system resolver, as in 0.6" do
      assert Caravan.DnsClient.Options.validate!(nameservers: []).nameservers == :system
      config = Config.new(query: "q.service.consul", node_sname: "x", nameservers: [])
      assert config.dns_opts == [nameservers: []]
    end
  end

  describe "mistakes caught at start" do
    test "a key given twice is reported as given twice" do
      error =
        assert_raise ArgumentError, fn ->
          Config.new(query: "q.service.consul", node_sname: "x", timeout: 1_000, timeout: 2_000)
        end

      assert error.message ==
               "option :timeout is given more than once (1000 and 2000); give it once"
    end

    test "topology is a documented option, listed among the known ones" do
      assert Enum.any?(Config.options(), &(&1[:key] == :topology))
      {:docs_v1, _, _, _, %{"en" => moduledoc}, _, _} = Code.fetch_docs(Config)
      assert moduledoc =~ "* `:topology` - the topology's name"

      error =
        assert_raise ArgumentError, fn ->
          Config.new(query: "q.service.consul", node_sname: "x", topolgy: :a)
        end

      assert error.message =~ "unknown Caravan.Cluster.DnsStrategy option(s) [:topolgy]"
      assert error.message =~ ":topology"
    end

    test "every option is in the moduledoc and in guides/discovery.md's table, each with its default from Config.options/0" do
      {:docs_v1, _, _, _, %{"en" => moduledoc}, _, _} = Code.fetch_docs(Config)

      # The moduledoc's list: "  * `:key` - doc. Default: text." (the default
      # is the option's last sentence).
      doc_defaults =
        for [_, key, default] <-
              Regex.scan(~r/^  \* `:(\w+)` - .*?Default: (.*?)\.$/ms, moduledoc),
            into: %{},
            do: {key, default}

      # The guide's table: "| `key` (alias ...) | default | meaning |", in
      # the section "## Options (`Caravan.Cluster.Config`)".
      guide = File.read!(Path.expand("../../../guides/discovery.md", __DIR__))
      [_, section] = String.split(guide, "\n## Options (`Caravan.Cluster.Config`)\n", parts: 2)
      [section | _] = String.split(section, "\n## ", parts: 2)

      rows =
        for [_, key, default] <- Regex.scan(~r/^\| `(\w+)`[^|]*\| ([^|]*) \|/m, section),
            do: {key, default}

      table = Map.new(rows)

      keys = for opt <- Config.options(), do: Atom.to_string(opt[:key])

      assert Enum.map(rows, &elem(&1, 0)) == keys,
             "the table's rows are not the options, in order"

      for opt <- Config.options(), key = Atom.to_string(opt[:key]) do
        # How the moduledoc writes each kind of default; placeholders such as
        # :required or :client are written out in words.
        expected =
          case opt[:default] do
            {:same_as, other} -> "the value of `#{inspect(other)}`"
            placeholder when placeholder in [:required, :client, :atom_limit] -> doc_defaults[key]
            value -> "`#{inspect(value)}`"
          end

        assert is_binary(expected) and expected != ""

        assert doc_defaults[key] == expected,
               "the moduledoc gives #{key} the default #{inspect(doc_defaults[key])}"

        assert table[key] == expected,
               "guides/discovery.md gives #{key} the default #{inspect(table[key])}, the moduledoc #{inspect(expected)}"
      end
    end

    test "libcluster's own keys inside :config are refused, naming where they go" do
      error =
        assert_raise ArgumentError, fn ->
          Config.new(%{
            topology: :t,
            config: [query: "q.service.consul", node_sname: "x", topology: :a]
          })
        end

      assert error.message =~ "[:topology] in the strategy's :config"
    end
  end

  test "libcluster 2's keyword start_link([topology: ..., config: [...]]) starts the strategy",
       ctx do
    FakeDns.serve(ctx.query, [{:ok, [record(4001, "a")]}])

    start_supervised!(
      {DnsStrategy,
       [
         topology: :old,
         config: [consul_service: ctx.query, node_sname: "app", dns_client: FakeDns]
       ] ++
         mfas(ctx)}
    )

    capture_log(fn -> assert_receive {:connect, :"app-4001@a"}, 1_000 end)
  end

  test "libcluster 2's keyword form is checked as the others are" do
    base = [config: [query: "q.service.consul", node_sname: "x"]]

    assert_raise ArgumentError, ~r/option :topology is given more than once/, fn ->
      Config.new([topology: :a, topology: :b] ++ base)
    end

    assert_raise ArgumentError, ~r/unknown .* option\(s\) \[:strategy\]/, fn ->
      Config.new([strategy: :x] ++ base)
    end
  end

  describe "standalone" do
    test "several topologies run in one supervisor; each child id is its topology", ctx do
      other = ctx.query <> "2"
      FakeDns.serve(ctx.query, [{:ok, [record(4001, "a")]}])
      FakeDns.serve(other, [{:ok, [record(4002, "b")]}])
      common = [node_sname: "app", dns_client: FakeDns, poll_interval: 60_000] ++ mfas(ctx)

      children = [
        {DnsStrategy, [topology: :likes, query: ctx.query] ++ common},
        {DnsStrategy, [topology: :posts, query: other] ++ common}
      ]

      capture_log(fn ->
        {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)
        assert_receive {:connect, :"app-4001@a"}, 1_000
        assert_receive {:connect, :"app-4002@b"}, 1_000

        ids = sup |> Supervisor.which_children() |> Enum.map(&elem(&1, 0)) |> Enum.sort()
        assert ids == [{DnsStrategy, :likes}, {DnsStrategy, :posts}]
        Supervisor.stop(sup)
      end)
    end
  end
end

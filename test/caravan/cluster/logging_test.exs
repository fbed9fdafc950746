defmodule Caravan.Cluster.LoggingTest do
  # libcluster's logging conventions (Cluster.Logger): the
  # "[libcluster:<topology>]" prefix, and debug lines only with
  # `config :libcluster, debug: true` or the original's `config :caravan,
  # debug: true`. Not async: the tests set that application env.
  use ExUnit.Case, async: false

  import ExUnit.CaptureIO
  import ExUnit.CaptureLog

  alias Caravan.Cluster.DnsStrategy
  alias Caravan.Test.FakeDns

  @poll 30

  setup context do
    query =
      "l#{:erlang.phash2(context.test)}-#{System.unique_integer([:positive])}.service.consul"

    on_exit(fn ->
      Application.delete_env(:libcluster, :debug)
      Application.delete_env(:caravan, :debug)
    end)

    {:ok, query: query}
  end

  def connect(test, node) do
    send(test, {:connect, node})
    true
  end

  def disconnect(_node), do: true
  def list, do: []

  defp record(port, host), do: %{port: port, host: host, priority: 1, weight: 1, addresses: []}

  # The strategy's log over `polls` polls.
  defp run(query, answers, polls) do
    FakeDns.serve(query, answers)

    capture_log([level: :debug], fn ->
      pid =
        start_supervised!(
          {DnsStrategy,
           query: query,
           node_sname: "app",
           dns_client: FakeDns,
           poll_interval: @poll,
           topology: :unit,
           connect: {__MODULE__, :connect, [self()]},
           disconnect: {__MODULE__, :disconnect, []},
           list_nodes: {__MODULE__, :list, []}}
        )

      Caravan.Test.Nodes.wait_until(fn -> length(FakeDns.calls(query)) >= polls end, 5_000, 5)
      # The last answer's handler has run once the strategy answers.
      :sys.get_state(pid)
      stop_supervised!({DnsStrategy, :unit})
    end)
  end

  test "lines carry libcluster's prefix, and debug lines need config :libcluster, debug: true",
       ctx do
    log = run(ctx.query, [{:ok, [record(4001, "a")]}], 3)
    assert log =~ ~s([info] [libcluster:unit] connected to :"app-4001@a")
    refute log =~ "found nodes"
    refute log =~ "[caravan:"

    Application.put_env(:libcluster, :debug, true)
    log = run(ctx.query <> "x", [{:ok, [record(4001, "a")]}], 3)
    assert log =~ ~s([debug] [libcluster:unit] found nodes [:"app-4001@a"])
  end

  test "the original's config :caravan, debug: true also turns debug lines on", ctx do
    Application.put_env(:caravan, :debug, true)
    assert run(ctx.query, [{:ok, [record(4001, "a")]}], 2) =~ "[libcluster:unit] found nodes"

    # libcluster's own reading of "false".
    Application.put_env(:caravan, :debug, "false")
    refute run(ctx.query <> "x", [{:ok, [record(4001, "a")]}], 2) =~ "found nodes"
  end

  test "an empty answer is logged at info once when it comes, not at every poll", ctx do
    a = {:ok, [record(4001, "a")]}
    empty = {:ok, []}
    answers = [empty, empty, a, empty, empty, empty]
    log = run(ctx.query, answers, length(answers) + 2)

    lines = log |> String.split("\n") |> Enum.filter(&(&1 =~ "DNS lists no peers"))
    # At the first poll, and again when the peers went away; never repeated.
    assert length(lines) == 2, log
    assert hd(lines) =~ "[info] [libcluster:unit] DNS lists no peers for #{inspect(ctx.query)}"
    assert hd(lines) =~ "asked the system resolver, /etc/resolv.conf"
    assert hd(lines) =~ "mix caravan.lookup #{ctx.query}"
  end

  # Here, not in an async module: it reads the VM's stderr.
  test "a module with only get_nodes/1 and @behaviour Caravan.DnsClient compiles without warnings" do
    source = fn name, body ->
      """
      defmodule #{name} do
        @behaviour Caravan.DnsClient
        #{body}
      end
      """
    end

    stderr =
      capture_io(:stderr, fn ->
        Code.compile_string(
          source.("Caravan.LoggingTest.OldClient", "def get_nodes(_query), do: []"),
          "old_client.ex"
        )

        Code.compile_string(
          source.("Caravan.LoggingTest.V06Client", "def get_nodes(_q, _ns), do: []"),
          "v06_client.ex"
        )
      end)

    assert stderr == ""

    # The check above can fail: a warning in the same kind of module is seen.
    stderr =
      capture_io(:stderr, fn ->
        Code.compile_string(
          source.("Caravan.LoggingTest.Warns", "def get_nodes(query), do: (unused = 1; [])"),
          "warns.ex"
        )
      end)

    assert stderr =~ "unused"

    assert Caravan.Cluster.Config.new(
             query: "q.service.consul",
             node_sname: "x",
             dns_client: Caravan.LoggingTest.V06Client
           ).dns_client == Caravan.LoggingTest.V06Client
  end
end

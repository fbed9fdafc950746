defmodule Caravan.Bench.RunTest do
  # Keeps `mix run bench/run.exs` from rotting: runs it end to end in its
  # --quick mode (every measurement, tiny) and checks what it writes. No
  # figure is asserted: benchmarks are not tests.
  use ExUnit.Case, async: false

  alias Caravan.Test.Nodes

  @moduletag :bench
  @moduletag timeout: 300_000

  @names ~w(dist_port_atom dist_port_charlist dist_port_binary
            srv_p50_3 srv_p99_3 srv_floor_p50_3 srv_throughput_3
            srv_p50_100 srv_p99_100 srv_floor_p50_100 srv_throughput_100
            srv_p50_500 srv_p99_500 srv_floor_p50_500 srv_throughput_500
            srv_throughput_500_distinct
            scheduler_pingpong_p99)

  @tag :tmp_dir
  test "bench/run.exs --quick runs every measurement and writes well-formed results", %{
    tmp_dir: tmp_dir
  } do
    out = Path.join(tmp_dir, "results.json")
    root = File.cwd!()

    run =
      Nodes.spawn!(
        "mix",
        ["run", "--no-compile", "bench/run.exs", "--quick", "--out", out],
        cd: root,
        env: [{"MIX_ENV", "test"}],
        label: "bench"
      )

    {status, output} = Nodes.wait_for_exit(run, 240_000)
    assert status == 0, "bench/run.exs --quick exited with #{status}:\n#{output}"
    assert output =~ "| measurement"

    # Parsed by an independent JSON parser (Python's), which also checks
    # every object's fields and types.
    check = ~S"""
    import json, sys
    rows = json.load(open(sys.argv[1]))
    assert isinstance(rows, list), "not a list"
    for r in rows:
        for key, kind in [("name", str), ("unit", str), ("caravan", (int, float)),
                          ("baseline", (int, float)), ("ratio", (int, float)),
                          ("environment", dict)]:
            assert isinstance(r.get(key), kind), (r.get("name"), key, r.get(key))
        env = r["environment"]
        assert isinstance(env.get("otp"), str) and isinstance(env.get("cpus"), int), env
    print(" ".join(r["name"] for r in rows))
    """

    {names, 0} = System.cmd("python3", ["-c", check, out], stderr_to_stdout: true)
    assert Enum.sort(String.split(names)) == Enum.sort(@names)
  end
end

defmodule Caravan.Bench.FleetTest do
  # Keeps `mix run bench/fleet.exs` from rotting: runs it end to end with
  # --quick (N = 4, every figure) and checks what it writes. No figure is
  # asserted: benchmarks are not tests. Ports: 25500 on 127.0.1-4.x.
  use ExUnit.Case, async: false

  alias Caravan.Test.Nodes

  @moduletag :bench
  @moduletag timeout: 400_000

  @names ~w(mesh_formation_n4_stalled0 mesh_formation_n4_stalled2
            consul_queries_per_node_poll consul_peak_over_mean
            join_latency_p99 leave_removed_from_dns leave_stopped_while_listed
            churn_disconnects_between_staying_nodes churn_mesh_whole_after_last
            node_cpu_per_minute node_rss_added node_threads_added build_first_compile)

  @tag :tmp_dir
  test "bench/fleet.exs --quick writes every figure, each with its baseline and target", %{
    tmp_dir: tmp_dir
  } do
    out = Path.join(tmp_dir, "results.json")

    run =
      Nodes.spawn!("mix", ["run", "--no-compile", "bench/fleet.exs", "--quick", "--out", out],
        cd: File.cwd!(),
        env: [{"MIX_ENV", "test"}],
        label: "fleet bench"
      )

    {status, output} = Nodes.wait_for_exit(run, 360_000)
    assert status == 0, "bench/fleet.exs --quick exited with #{status}:\n#{output}"
    assert output =~ "| figure | unit | Caravan | baseline | target | met |"

    # Parsed by an independent JSON parser (Python's).
    check = ~S"""
    import json, sys
    rows = json.load(open(sys.argv[1]))
    for r in rows:
        for key, kind in [("name", str), ("unit", str), ("target", str),
                          ("baseline_is", str), ("environment", dict)]:
            assert isinstance(r.get(key), kind), (r.get("name"), key, r.get(key))
        assert r["target_met"] in (True, False, None), r
        assert r["caravan"] is None or isinstance(r["caravan"], (int, float)), r
    print(" ".join(r["name"] for r in rows))
    """

    {names, 0} = System.cmd("python3", ["-c", check, out], stderr_to_stdout: true)
    assert Enum.sort(String.split(names)) == Enum.sort(@names)
  end
end

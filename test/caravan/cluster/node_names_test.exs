defmodule Caravan.Cluster.NodeNamesTest do
  use ExUnit.Case, async: true
  doctest Caravan.Cluster.NodeNames

  alias Caravan.Cluster.NodeNames

  test "node_host: :address prefers glue, then a Consul .addr. target" do
    record = %{port: 4001, host: "0a000105.addr.dc1.consul", addresses: [{10, 9, 9, 9}]}
    assert NodeNames.name(record, "app", :address) == {:ok, "app-4001@10.9.9.9"}
    v6 = %{port: 4001, host: "20010db8000000000000000000000001.addr.dc1.consul", addresses: []}
    assert NodeNames.name(v6, "app", :address) == {:ok, "app-4001@2001:db8::1"}
  end

  test "records that cannot name a node say why" do
    assert {:error, "port 0 is not a TCP port"} =
             NodeNames.name(%{port: 0, host: "h"}, "app", :target)

    assert {:error, msg} = NodeNames.name(%{port: 1, host: "a_b", addresses: []}, "app", :target)
    assert msg =~ "not an RFC 1123 hostname"

    assert {:error, msg} =
             NodeNames.name(%{port: 1, host: "h.example", addresses: []}, "app", :address)

    assert msg =~ "carries no address"
  end

  test "atoms are created only within the topology's budget; existing ones are free" do
    topology = :"names#{System.unique_integer([:positive])}"
    fresh = for i <- 1..3, do: "budget-#{i}-#{System.unique_integer([:positive])}@h"
    assert {:ok, _} = NodeNames.to_node(Enum.at(fresh, 0), topology, 2)
    assert {:ok, _} = NodeNames.to_node(Enum.at(fresh, 1), topology, 2)
    assert {:error, :budget_exhausted} = NodeNames.to_node(Enum.at(fresh, 2), topology, 2)
    assert {:ok, :nonode@nohost} = NodeNames.to_node("nonode@nohost", topology, 2)
    assert NodeNames.minted(topology) == 2
  end
end

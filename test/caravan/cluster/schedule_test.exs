defmodule Caravan.Cluster.ScheduleTest do
  use ExUnit.Case, async: true
  doctest Caravan.Cluster.Schedule

  alias Caravan.Cluster.Schedule

  test "every delay lands on the slot, between half an interval and one and a half" do
    for _ <- 1..2_000 do
      interval = Enum.random(10..10_000)
      slots = Enum.random(1..100)
      slot = Enum.random(0..(slots - 1))
      now = Enum.random(0..100_000_000)
      delay = Schedule.delay(now, interval, slot, slots)

      assert delay >= div(interval, 2) and delay < interval + div(interval, 2) + 1
      assert Integer.mod(now + delay, interval) == div(slot * interval, slots)
    end
  end

  test "nodes that see the same answer take distinct, evenly spread slots" do
    nodes = for i <- 1..32, do: :"app-#{4000 + i}@10.0.0.#{i}"
    slots = for node <- nodes, do: Schedule.slot(node, List.delete(nodes, node))
    assert Enum.sort(slots) == for(i <- 0..31, do: {i, 32})
  end
end

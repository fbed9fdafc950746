defmodule Caravan.NameBoundariesTest do
  # Every node-name rule at its boundary, from Elixir (through the NIF): the
  # last value accepted and the first refused. Caravan.EpmdTest and
  # Caravan.Cluster.NodeNamesTest cover the ordinary cases.
  use ExUnit.Case, async: true

  import Caravan.Epmd, only: [dist_port: 1]

  alias Caravan.Cluster.NodeNames

  defp name(port, host, sname \\ "app"),
    do: NodeNames.name(%{port: port, host: host, addresses: []}, sname, :target)

  # A valid hostname of exactly `len` characters: 63-character labels.
  defp host(len) do
    full = div(len, 64)
    labels = List.duplicate(String.duplicate("h", 63), full)
    rest = len - 64 * full
    Enum.join(if(rest > 0, do: labels ++ [String.duplicate("h", rest)], else: labels), ".")
  end

  describe "dist_port/1" do
    test "255 ASCII characters, not 256, as binary, charlist and atom" do
      max = String.duplicate("a", 255 - 7) <> "-4001@h"
      assert String.length(max) == 255

      for form <- [max, String.to_charlist(max), String.to_atom(max)] do
        assert dist_port(form) == 4001
      end

      over = "a" <> max
      assert_raise ArgumentError, ~r/has 256 characters/, fn -> dist_port(over) end
      assert_raise ArgumentError, ~r/has 256 characters/, fn -> dist_port(to_charlist(over)) end
    end

    test "the digits: 1 to 5 of them, 1..65535, no leading zero" do
      assert dist_port("a-9@h") == 9
      assert dist_port("a-10@h") == 10
      assert dist_port("a-10000@h") == 10_000
      assert dist_port("65535") == 65_535

      for bad <- ["a-0@h", "a-65536@h", "a-100000@h"] do
        assert_raise ArgumentError, ~r/not a TCP port/, fn -> dist_port(bad) end
      end

      for bad <- ["a-01@h", "a-065535@h", "a-000000@h"] do
        assert_raise ArgumentError, ~r/leading zero/, fn -> dist_port(bad) end
      end
    end

    test "one @ with something on both sides" do
      assert dist_port("a@b") == 4370
      assert_raise ArgumentError, ~r/nothing before '@'/, fn -> dist_port("@") end
      assert_raise ArgumentError, ~r/nothing after '@'/, fn -> dist_port("a@") end
      assert_raise ArgumentError, ~r/more than one '@'/, fn -> dist_port("a@@b") end
    end
  end

  describe "peer names (NodeNames.name/3)" do
    test "ports 1 and 65535, not 0 or 65536" do
      assert name(1, "h") == {:ok, "app-1@h"}
      assert name(65_535, "h") == {:ok, "app-65535@h"}
      assert {:error, "port 0 is not a TCP port"} = name(0, "h")
      assert {:error, "port 65536 is not a TCP port"} = name(65_536, "h")
    end

    test "host labels of 63 characters, not 64; hosts of 253, not 254" do
      assert {:ok, _} = name(1, String.duplicate("a", 63))
      assert {:error, msg} = name(1, String.duplicate("a", 64))
      assert msg =~ "not an RFC 1123 hostname"

      # A 253-character host passes the hostname rule but can never be part
      # of a node name ("a-1@" + 253 > 255): it fails the length rule, not
      # the hostname rule. The longest usable host is 251 characters.
      assert {:error, msg} = name(1, host(253), "a")
      assert msg =~ "longer than 255 characters"
      assert {:error, msg} = name(1, host(254), "a")
      assert msg =~ "longer than 253 characters"
      assert {:ok, max} = name(1, host(251), "a")
      assert String.length(max) == 255
      assert {:error, _} = name(1, host(252), "a")
    end

    test "snames of 64 characters, not 65" do
      assert {:ok, _} = name(1, "h", String.duplicate("s", 64))
      assert {:error, msg} = name(1, "h", String.duplicate("s", 65))
      assert msg =~ "64"
    end

    test "whole names of 255 characters, not 256, and the 255 round-trips" do
      sname = String.duplicate("s", 64)
      # 64 + "-65535@" + 184 = 255
      assert {:ok, max} = name(65_535, host(184), sname)
      assert String.length(max) == 255
      assert dist_port(max) == 65_535

      assert {:error, msg} = name(65_535, host(185), sname)
      assert msg =~ "longer than 255 characters"
      # The same host fits with a four-digit port.
      assert {:ok, _} = name(6553, host(185), sname)
    end
  end
end

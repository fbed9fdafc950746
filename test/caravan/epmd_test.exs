defmodule Caravan.EpmdTest do
  use ExUnit.Case, async: true
  doctest Caravan.Epmd

  import Caravan.Epmd, only: [dist_port: 1]

  describe "dist_port/1 reads the port from the name" do
    test "from atoms, charlists and binaries alike" do
      for name <- [:"likes-4001@10.0.1.5", ~c"likes-4001@10.0.1.5", "likes-4001@10.0.1.5"] do
        assert dist_port(name) == 4001
      end
    end

    test "from the part before @ only" do
      assert dist_port("a-1@host-9999") == 1
      assert dist_port(~c"likes-4001") == 4001
    end

    test "gives 4370 to a name without trailing digits" do
      assert dist_port(:nonode@nohost) == 4370
      assert dist_port("likes-@h") == 4370
    end

    test "accepts the boundaries of the port range" do
      assert dist_port("a-1@h") == 1
      assert dist_port("a-65535@h") == 65535
    end

    test "accepts a name of exactly 255 characters, in characters not bytes" do
      name = String.duplicate("é", 248) <> "-4001@h"
      assert String.length(name) == 255
      assert dist_port(name) == 4001

      too_long = "é" <> name
      assert_raise ArgumentError, ~r/256 characters/, fn -> dist_port(too_long) end
    end
  end

  describe "dist_port/1 reads atoms and charlists in the NIF, and the rest alike" do
    # The NIF reads ASCII atoms and flat charlists itself and hands anything
    # else back to be converted in Elixir: both paths must give one answer.
    test "non-ASCII, nested and long names give what their binary gives" do
      names = [
        String.duplicate("é", 248) <> "-4001@h",
        "ü-4001@h",
        "app-4001@h",
        String.duplicate("a", 250) <> "-4001",
        String.duplicate("a", 300) <> "-4001@h",
        "app-04001@h",
        "app-99999@h",
        "",
        "@h",
        "a@b@c"
      ]

      for binary <- names,
          name <-
            [String.to_charlist(binary), [binary], [String.to_charlist(binary), []]] ++
              if(String.length(binary) <= 255, do: [String.to_atom(binary)], else: []) do
        assert outcome(fn -> dist_port(name) end) == outcome(fn -> dist_port(binary) end),
               "#{inspect(name, limit: 5)} and #{inspect(binary, limit: 5)} differ"
      end
    end

    defp outcome(fun) do
      fun.()
    rescue
      e in ArgumentError -> {:error, e.message}
    end
  end

  describe "dist_port/1 rejects bad input with an ArgumentError naming it" do
    test "trailing digits that are not a TCP port" do
      for name <- [
            "app-0@h",
            "app-99999@h",
            "app-65536@h",
            "app-123456789012345678901234567890@h"
          ] do
        error = assert_raise ArgumentError, fn -> dist_port(name) end
        assert error.message =~ inspect(name)
        assert error.message =~ "not a TCP port (1..65535)"
      end
    end

    test "a leading zero, with the spelling to use instead" do
      error = assert_raise ArgumentError, fn -> dist_port(:"app-04001@h") end
      assert error.message =~ ~s("app-04001@h")
      assert error.message =~ "leading zero"
      assert error.message =~ "(4001)"
    end

    test "an empty name, in every form" do
      for name <- ["", ~c"", :""] do
        assert_raise ArgumentError, ~r/node name is empty/, fn -> dist_port(name) end
      end
    end

    test "a name with nothing before or after @, or two @" do
      assert_raise ArgumentError, ~r/nothing before '@'/, fn -> dist_port("@h") end
      assert_raise ArgumentError, ~r/nothing after '@'/, fn -> dist_port("a-1@") end
      assert_raise ArgumentError, ~r/more than one '@'/, fn -> dist_port("a-1@b@c") end
    end

    test "a name longer than an atom can be" do
      name = String.duplicate("a", 300) <> "-1@h"
      assert_raise ArgumentError, ~r/at most 255 characters/, fn -> dist_port(name) end
    end

    test "a huge binary is refused without echoing all of it" do
      name = String.duplicate("a", 1_000_000)
      error = assert_raise ArgumentError, fn -> dist_port(name) end
      assert error.message =~ "(1000000 bytes)"
      assert byte_size(error.message) < 500
    end

    test "non-UTF-8 binaries, with the bad byte shown" do
      error = assert_raise ArgumentError, fn -> dist_port(<<"app-", 0xFF, "4001@h">>) end
      assert error.message =~ ~S("app-\xff4001@h")
      assert error.message =~ "not valid UTF-8"
    end

    test "charlists that are not text" do
      for name <- [[-1], [0x110000], [:a, ?b], [?a | :improper]] do
        error = assert_raise ArgumentError, fn -> dist_port(name) end
        assert error.message =~ "charlist of Unicode code points"
      end
    end

    test "terms that are not names" do
      for term <- [42, 4.2, %{name: "a-1@h"}, {:a, 1}, self(), make_ref(), nil, true, false] do
        error = assert_raise ArgumentError, fn -> dist_port(term) end
        assert error.message =~ "expected a node name as an atom, charlist or binary"
        assert error.message =~ inspect(term)
      end
    end

    test "the VM survives a burst of bad input" do
      bad = for i <- 1..2_000, do: <<i::32, 0xFF, "@", i::16>>

      for name <- bad do
        assert_raise ArgumentError, fn -> dist_port(name) end
      end

      assert dist_port("still-4001@alive") == 4001
    end
  end
end

defmodule Caravan.Epmd.ClientTest do
  # The callbacks called directly, in this (non-distributed) VM. How OTP
  # calls them is tested with real nodes in Caravan.DistributionTest.
  use ExUnit.Case, async: false

  alias Caravan.Epmd.Client

  setup_all do
    Code.ensure_loaded!(Client)
    :ok
  end

  setup do
    on_exit(fn -> :persistent_term.erase({Client, :registration}) end)
  end

  test "exports every callback OTP 25-29 calls" do
    for {fun, arity} <- [
          start_link: 0,
          register_node: 2,
          register_node: 3,
          listen_port_please: 2,
          port_please: 2,
          port_please: 3,
          address_please: 3,
          names: 1
        ] do
      assert function_exported?(Client, fun, arity), "#{fun}/#{arity}"
    end
  end

  test "start_link/0 has nothing to start" do
    assert Client.start_link() == :ignore
  end

  describe "listen_port_please/2" do
    test "is the port in the node's own name, from an atom or a charlist" do
      assert Client.listen_port_please(:"likes-4001", ~c"10.0.1.5") == {:ok, 4001}
      assert Client.listen_port_please(~c"likes4002", ~c"h") == {:ok, 4002}
      assert Client.listen_port_please(:likes, ~c"h") == {:ok, 4370}
    end

    test "is 0 (ephemeral) for remote shells and rpc helpers named after their target" do
      for name <- [:"rem-1a2b-likes-4001", :"rpc-ffff-likes-4001", ~c"remsh1f2e3d4c-likes-4001"] do
        assert Client.listen_port_please(name, ~c"h") == {:ok, 0}, inspect(name)
      end
    end

    test "raises, naming the name and the rule, for a name with no valid port" do
      error =
        assert_raise ArgumentError, fn -> Client.listen_port_please(:"likes-99999", ~c"h") end

      assert error.message =~ ~s("likes-99999")
      assert error.message =~ "not a TCP port"
    end
  end

  describe "port_please/2,3" do
    test "answers the port from the name and distribution version 6, without the host" do
      assert Client.port_please(~c"likes-4001", {10, 0, 1, 5}) == {:port, 4001, 6}
      assert Client.port_please(:"likes-4001", ~c"no.such.host.invalid", 100) == {:port, 4001, 6}
    end

    test "the version is the highest distribution version OTP's dist.hrl declares" do
      # OTP 25: ERL_DIST_VER_LOW = ERL_DIST_VER_HIGH = 6 (the OTP 23
      # handshake). Its erl_epmd is built with -Depmd_dist_low=5 and answers 5
      # for -erl_epmd_port, but OTP 25's dist_util ignores the value.
      hrl = Path.join([:code.lib_dir(:kernel), "include", "dist.hrl"]) |> File.read!()

      declared =
        for [_, version] <- Regex.scan(~r/-define\(ERL_DIST_VER_\d+,\s*(\d+)\)/, hrl),
            do: String.to_integer(version)

      assert {:port, 4001, version} = Client.port_please(~c"likes-4001", {127, 0, 0, 1})
      assert version == Enum.max(declared)
    end

    test "is :noport for helpers, which cannot be found by name, and for bad names" do
      assert Client.port_please(~c"rem-1a2b-likes-4001", {127, 0, 0, 1}) == :noport
      assert Client.port_please(~c"likes-04001", {127, 0, 0, 1}) == :noport
      assert Client.port_please(42, {127, 0, 0, 1}) == :noport
    end
  end

  describe "address_please/3" do
    test "returns ip, port and version in one step for IP literals" do
      assert Client.address_please(~c"likes-4001", ~c"10.0.1.5", :inet) ==
               {:ok, {10, 0, 1, 5}, 4001, 6}

      assert Client.address_please(~c"likes-4001", ~c"::1", :inet6) ==
               {:ok, {0, 0, 0, 0, 0, 0, 0, 1}, 4001, 6}

      assert Client.address_please(~c"likes-4001", {10, 0, 1, 5}, :inet) ==
               {:ok, {10, 0, 1, 5}, 4001, 6}
    end

    test "decodes Consul .addr. hostnames locally, both families" do
      assert Client.address_please(~c"likes-4001", ~c"0a000105.addr.dc1.consul", :inet) ==
               {:ok, {10, 0, 1, 5}, 4001, 6}

      host = ~c"20010db8000000000000000000000001.addr.dc1.consul"

      assert Client.address_please(~c"likes-4001", host, :inet6) ==
               {:ok, {0x2001, 0xDB8, 0, 0, 0, 0, 0, 1}, 4001, 6}
    end

    test "decodes .addr. names without any DNS query" do
      # Point the resolver at a dead server: a query could only fail.
      lookup = :inet_db.res_option(:lookup)
      nameservers = :inet_db.res_option(:nameservers)
      :inet_db.set_lookup([:dns])
      :inet_db.res_option(:nameservers, [{{127, 0, 0, 1}, 9}])

      try do
        assert :inet.getaddr(~c"7f000002.addr.dc1.consul", :inet) != {:ok, {127, 0, 0, 2}}

        assert Client.address_please(~c"likes-4001", ~c"7f000002.addr.dc1.consul", :inet) ==
                 {:ok, {127, 0, 0, 2}, 4001, 6}
      after
        :inet_db.res_option(:nameservers, nameservers)
        :inet_db.set_lookup(lookup)
      end
    end

    test "honours the family: an address of the other family is :eafnosupport" do
      assert Client.address_please(~c"likes-4001", ~c"10.0.1.5", :inet6) ==
               {:error, :eafnosupport}

      assert Client.address_please(~c"likes-4001", ~c"::1", :inet) == {:error, :eafnosupport}

      assert Client.address_please(~c"likes-4001", ~c"0a000105.addr.dc1.consul", :inet6) ==
               {:error, :eafnosupport}
    end

    test "resolves other hostnames with :inet.getaddr/2" do
      assert Client.address_please(~c"likes-4001", ~c"localhost", :inet) ==
               {:ok, {127, 0, 0, 1}, 4001, 6}

      assert {:error, _} = Client.address_please(~c"likes-4001", ~c"no-such-host.invalid", :inet)
    end

    test "never raises: helpers and bad names are errors" do
      assert Client.address_please(~c"rpc-1a2b-likes-4001", ~c"10.0.1.5", :inet) ==
               {:error, :noport}

      assert Client.address_please(~c"likes-0", ~c"10.0.1.5", :inet) == {:error, :noport}
      assert Client.address_please([0x110000], ~c"10.0.1.5", :inet) == {:error, :noport}
    end
  end

  describe "register_node/2,3" do
    test "accepts OTP 25's driver families and OTP 26's address families" do
      for family <- [:inet_tcp, :inet6_tcp, :inet, :inet6] do
        assert {:ok, creation} = Client.register_node(:"likes-4001", 4001, family)
        assert is_integer(creation)
      end

      assert {:ok, _} = Client.register_node(~c"likes-4001", 4001)
    end

    test "hands out random creations over the 32-bit range OTP >= 23 takes, never 0..3" do
      creations =
        for _ <- 1..200 do
          {:ok, creation} = Client.register_node(:"likes-4001", 4001, :inet)
          creation
        end

      assert Enum.all?(creations, &(&1 in 4..0xFFFFFFFF))
      # 200 draws from ~2^32 values: a repeat has odds of about 5e-6.
      assert length(Enum.uniq(creations)) == 200
      # Not confined to 2-bit or 16-bit creations.
      assert Enum.any?(creations, &(&1 > 0xFFFF))
    end
  end

  describe "names/1" do
    test "reports this node's registration for this host" do
      {:ok, hostname} = :inet.gethostname()
      assert Client.names(hostname) == {:ok, []}

      {:ok, _} = Client.register_node(:"likes-4001", 4001, :inet_tcp)

      for host <- [hostname, ~c"localhost", :localhost, ~c"127.0.0.1", {127, 0, 0, 1}, ~c"::1"] do
        assert Client.names(host) == {:ok, [{~c"likes-4001", 4001}]}, inspect(host)
      end
    end

    test "knows nothing about other hosts" do
      {:ok, _} = Client.register_node(:"likes-4001", 4001, :inet)
      assert Client.names(~c"elsewhere.invalid") == {:error, :address}
      assert Client.names({192, 0, 2, 1}) == {:error, :address}
    end
  end
end

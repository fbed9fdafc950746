defmodule Caravan.Epmd.DistDistTest do
  # Forwarding, checked against OTP's own modules. Listening, connecting and
  # the error messages are tested with real nodes in Caravan.DistributionTest.
  use ExUnit.Case, async: true

  alias Caravan.Epmd.Dist_dist

  @callbacks [
    listen: 1,
    listen: 2,
    accept: 1,
    accept_connection: 5,
    setup: 5,
    close: 1,
    select: 1,
    address: 0,
    address: 1,
    setopts: 2,
    getopts: 2,
    childspecs: 0,
    is_node_name: 1
  ]

  setup_all do
    Code.ensure_loaded!(Dist_dist)
    :ok
  end

  test "-proto_dist Elixir.Caravan.Epmd.Dist names this module (OTP appends _dist)" do
    assert :"Elixir.Caravan.Epmd.Dist_dist" == Dist_dist
  end

  test "exports every distribution callback" do
    for {fun, arity} <- @callbacks do
      assert function_exported?(Dist_dist, fun, arity), "#{fun}/#{arity}"
    end
  end

  test "covers every callback of the OTP modules it can forward to" do
    for module <- [:inet_tcp_dist, :inet6_tcp_dist, :inet_tls_dist, :inet6_tls_dist] do
      {:module, ^module} = load_otp_module(module)

      for {fun, arity} <- module.module_info(:exports),
          Keyword.has_key?(@callbacks, fun) do
        assert function_exported?(Dist_dist, fun, arity), "#{module}:#{fun}/#{arity}"
      end
    end
  end

  test "forwards to :inet_tcp_dist when no -caravan_dist is given" do
    assert :init.get_argument(:caravan_dist) == :error
    assert Dist_dist.underlying() == :inet_tcp_dist
    assert Dist_dist.address() == :inet_tcp_dist.address()
    assert Dist_dist.is_node_name(:"a-1@h") == :inet_tcp_dist.is_node_name(:"a-1@h")
  end

  test "answers optional callbacks the underlying module lacks as net_kernel would" do
    # :inet_tcp_dist has no childspecs/0 on OTP 25.
    refute function_exported?(:inet_tcp_dist, :childspecs, 0)
    assert Dist_dist.childspecs() == {:ok, []}
  end

  # Mix on Elixir 1.15 and later prunes the OTP applications a project does
  # not list from the code path, :ssl (the TLS modules) among them; they are
  # OTP's own, so they are loaded from OTP's lib directory.
  defp load_otp_module(module) do
    with {:error, :nofile} <- Code.ensure_loaded(module) do
      Enum.each(
        Path.wildcard(Path.join(:code.root_dir(), "lib/ssl-*/ebin")),
        &Code.prepend_path/1
      )

      Code.ensure_loaded(module)
    end
  end
end

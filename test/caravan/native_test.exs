defmodule Caravan.NativeTest do
  use ExUnit.Case, async: true

  test "the NIF is loaded from priv/native of the caravan application" do
    assert Caravan.Native.load_error() == nil
    path = Caravan.Native.library_path()
    assert path == Path.join(to_string(:code.priv_dir(:caravan)), "native/libcaravan_nif")
    assert File.exists?(path <> ".so")
  end

  test "decode_consul_addr/1 decodes Consul's .addr. hostnames and nothing else" do
    assert Caravan.Native.decode_consul_addr("0a000105.addr.dc1.consul.") == {10, 0, 1, 5}

    assert Caravan.Native.decode_consul_addr("20010db8000000000000000000000001.addr.dc1.consul") ==
             {0x2001, 0xDB8, 0, 0, 0, 0, 0, 1}

    assert Caravan.Native.decode_consul_addr("node1.node.dc1.consul") == nil
    assert Caravan.Native.decode_consul_addr(<<0xFF, ".addr.dc1.consul">>) == nil
  end
end

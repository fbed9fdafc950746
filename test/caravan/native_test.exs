defmodule Caravan.NativeTest do
  use ExUnit.Case, async: true

  test "the NIF is loaded from priv/native of the caravan application" do
    assert Caravan.Native.load_error() == nil
    path = Caravan.Native.library_path()
    assert path == Path.join(to_string(:code.priv_dir(:caravan)), "native/libcaravan_nif")
    assert File.exists?(path <> ".so")
  end
end

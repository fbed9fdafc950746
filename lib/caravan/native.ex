defmodule Caravan.Native do
  # The NIF stubs and their loader. Public modules call these; nothing else
  # should. The library is `priv/native/libcaravan_nif.so`, built by
  # `mix compile` (Mix.Tasks.Compile.CaravanNative).
  @moduledoc false

  @on_load :__load_nif__

  @doc false
  def __load_nif__ do
    path = library_path()

    case :erlang.load_nif(String.to_charlist(path), 0) do
      :ok ->
        :persistent_term.erase({__MODULE__, :load_error})
        :ok

      {:error, {reason, text}} ->
        message =
          "Caravan's native library could not be loaded from #{path}.so " <>
            "(#{reason}: #{text}). Build it with `mix compile` in the project that " <>
            "depends on caravan (it runs `cargo build --release -p caravan_nif` and " <>
            "copies the result to priv/native/)."

        :persistent_term.put({__MODULE__, :load_error}, message)
        :logger.error(String.to_charlist(message))
        # Loading the module still succeeds so that every call can raise this
        # message, instead of an UndefinedFunctionError that names nothing.
        :ok
    end
  end

  @doc false
  def library_path do
    case :code.priv_dir(:caravan) do
      {:error, :bad_name} ->
        # Not on a code path laid out as an OTP application (for example a
        # bare -pa of the ebin directory): look beside the ebin directory.
        Path.join([:code.which(__MODULE__) |> to_string() |> Path.dirname(), "..", "priv"])
        |> Path.expand()
        |> Path.join("native/libcaravan_nif")

      dir ->
        Path.join(to_string(dir), "native/libcaravan_nif")
    end
  end

  @doc false
  def load_error, do: :persistent_term.get({__MODULE__, :load_error}, nil)

  @doc false
  def dist_port(_name), do: not_loaded()

  @doc false
  def decode_consul_addr(_host), do: not_loaded()

  @doc false
  def dns_nameserver(_entry), do: not_loaded()

  @doc false
  def dns_check_options(_options), do: not_loaded()

  @doc false
  def dns_check_query(_query), do: not_loaded()

  @doc false
  def dns_lookup(_pid, _ref, _query, _options), do: not_loaded()

  @doc false
  def dns_shape(_records, _glue, _max_records), do: not_loaded()

  defp not_loaded do
    raise RuntimeError,
          load_error() || "Caravan's native library is not loaded (no load was attempted)"
  end
end

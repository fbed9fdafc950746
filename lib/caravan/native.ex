defmodule Caravan.Native do
  # The NIF stubs and their loader. Public modules call these; nothing else
  # should. The library is `priv/native/libcaravan_nif.so`, built by
  # `mix compile` (Mix.Tasks.Compile.CaravanNative).
  #
  # The NIF is loaded on the first call, not by an @on_load hook: in an
  # embedded release (the default for `mix release`) the boot script loads
  # every module first but runs on_load hooks only once kernel starts its
  # safe supervisor, which is after distribution started. Distribution calls
  # Caravan.Epmd.Client, which calls this module, so a module still waiting
  # for its on_load would be undefined right then ("Protocol ... not
  # supported"). Loading on first call works in both modes; the code server
  # (for code:priv_dir/1) is the first child kernel starts.
  @moduledoc false

  @load_error {__MODULE__, :load_error}
  @retrying {__MODULE__, :retrying}

  @doc false
  @spec load() :: :ok | {:error, String.t()}
  def load do
    path = library_path()

    case load_nif(path) do
      :ok ->
        :persistent_term.erase(@load_error)
        :ok

      # Another process's first call loaded it in the meantime.
      {:error, {:reload, _text}} ->
        :ok

      {:error, {reason, text}} ->
        message =
          "Caravan's native library could not be loaded from #{path}.so " <>
            "(#{reason}: #{text}). Build it with `mix compile` in the project that " <>
            "depends on caravan (it runs `cargo build --release -p caravan_nif` and " <>
            "copies the result to priv/native/)."

        :persistent_term.put(@load_error, message)
        Caravan.BootLog.log(:error, message)
        {:error, message}
    end
  end

  # After a code reload (`:code.load_file/1`, `r/1`) the old instance of this
  # module still holds the library, and OTP then asks the library to
  # "upgrade", which rustler does not support. The old instance runs no code
  # of its own (its NIFs return at once, nothing loops in it), so it is
  # purged, softly: if some process is still in it, the upgrade error stands.
  # The library itself stays mapped (linked with -z nodelete), so the new
  # instance finds the same statics and the same DNS runtime thread.
  defp load_nif(path) do
    case :erlang.load_nif(String.to_charlist(path), 0) do
      {:error, {:upgrade, _text}} = error ->
        if :code.soft_purge(__MODULE__),
          do: :erlang.load_nif(String.to_charlist(path), 0),
          else: error

      other ->
        other
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
  def load_error, do: :persistent_term.get(@load_error, nil)

  # Each stub runs only until the NIF is loaded, which replaces it.

  @doc false
  def dist_port(name), do: load_and_call(:dist_port, [name])

  @doc false
  def node_role(name), do: load_and_call(:node_role, [name])

  @doc false
  def decode_consul_addr(host), do: load_and_call(:decode_consul_addr, [host])

  @doc false
  def random_creation, do: load_and_call(:random_creation, [])

  @doc false
  def peer_name(sname, port, host), do: load_and_call(:peer_name, [sname, port, host])

  @doc false
  def dns_nameserver(entry), do: load_and_call(:dns_nameserver, [entry])

  @doc false
  def dns_check_options(options), do: load_and_call(:dns_check_options, [options])

  @doc false
  def dns_check_query(query), do: load_and_call(:dns_check_query, [query])

  @doc false
  def dns_lookup(pid, ref, query, options),
    do: load_and_call(:dns_lookup, [pid, ref, query, options])

  @doc false
  def dns_cancel(handle), do: load_and_call(:dns_cancel, [handle])

  @doc false
  def dns_shape(records, glue, max_records),
    do: load_and_call(:dns_shape, [records, glue, max_records])

  defp load_and_call(fun, args) do
    # A stub reached again while retrying means loading did not replace it:
    # raise rather than loop.
    if Process.get(@retrying) do
      raise RuntimeError,
            "Caravan's native library loaded but #{fun}/#{length(args)} is still a stub; " <>
              "rebuild it with `mix compile --force`"
    end

    case load() do
      :ok ->
        Process.put(@retrying, true)

        try do
          apply(__MODULE__, fun, args)
        after
          Process.delete(@retrying)
        end

      {:error, message} ->
        raise RuntimeError, message
    end
  end
end

defmodule Caravan.Test.StalledPeer do
  @moduledoc """
  A TCP listener that accepts connections and never says a word: a peer
  stuck before the distribution handshake. Stop it with `stop/1`; tests use
  `Caravan.Test.Cluster.stalled_peer!/2`, which stops it when the test ends.
  The benchmarks use it directly.
  """

  @doc "Listens on `ip:port`; returns the owning pid."
  def start!(ip, port) do
    parent = self()

    pid =
      spawn(fn ->
        {:ok, listen} = :gen_tcp.listen(port, [:binary, ip: ip, active: false, reuseaddr: true])
        send(parent, {:stalled_peer, self()})
        accept_forever(listen, [])
      end)

    receive do
      {:stalled_peer, ^pid} -> pid
    after
      5_000 -> raise "stalled peer on #{:inet.ntoa(ip)}:#{port} did not start"
    end
  end

  @doc "Closes the listener and every connection it holds."
  def stop(pid), do: Process.exit(pid, :kill)

  defp accept_forever(listen, held) do
    {:ok, socket} = :gen_tcp.accept(listen)
    accept_forever(listen, [socket | held])
  end
end

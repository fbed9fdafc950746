defmodule Caravan.Test.FakeDns do
  @moduledoc """
  An injectable `dns_client` for strategy unit tests (integration tests use
  real DNS servers). Each test registers the answers for its own query name;
  `lookup/2` returns them in turn (the last one repeats) and records every
  call, so tests can count polls and concurrent lookups.

  An answer is `{:ok, records}`, `{:error, reason}`, or `{:hang, ms, answer}`
  (sleep, then answer).
  """

  @doc "Registers `answers` for `query`; returns the query for convenience."
  def serve(query, answers) do
    {:ok, agent} =
      Agent.start(fn -> %{answers: answers, calls: [], in_flight: 0, max_in_flight: 0} end)

    :persistent_term.put({__MODULE__, query}, agent)
    ExUnit.Callbacks.on_exit(fn -> Agent.stop(agent) end)
    query
  end

  @doc "Replaces the answers for `query`."
  def set(query, answers), do: Agent.update(agent(query), &%{&1 | answers: answers})

  @doc "The options of every lookup so far, oldest first."
  def calls(query), do: Agent.get(agent(query), &Enum.reverse(&1.calls))

  @doc "The most lookups that were ever in flight at once."
  def max_in_flight(query), do: Agent.get(agent(query), & &1.max_in_flight)

  @doc false
  def lookup(query, opts) do
    answer =
      Agent.get_and_update(agent(query), fn s ->
        {answer, rest} =
          case s.answers do
            [last] -> {last, [last]}
            [next | rest] -> {next, rest}
          end

        in_flight = s.in_flight + 1

        {answer,
         %{
           s
           | answers: rest,
             calls: [opts | s.calls],
             in_flight: in_flight,
             max_in_flight: max(in_flight, s.max_in_flight)
         }}
      end)

    result = respond(answer)
    Agent.update(agent(query), &%{&1 | in_flight: &1.in_flight - 1})
    result
  end

  defp respond({:hang, ms, answer}) do
    Process.sleep(ms)
    respond(answer)
  end

  defp respond(answer), do: answer

  defp agent(query), do: :persistent_term.get({__MODULE__, query})

  defmodule Legacy do
    @moduledoc "A client with only the original `get_nodes/1` contract."
    def get_nodes(query) do
      case Caravan.Test.FakeDns.lookup(query, []) do
        {:ok, records} -> Enum.map(records, &{&1.port, &1.host})
        {:error, _} -> []
      end
    end
  end

  defmodule Legacy06 do
    @moduledoc """
    A client with only the original 0.6 `get_nodes/2` contract (query,
    options); the options it was given are recorded as the call's.
    """
    def get_nodes(query, opts) do
      case Caravan.Test.FakeDns.lookup(query, opts) do
        {:ok, records} -> Enum.map(records, &{&1.port, &1.host})
        {:error, _} -> []
      end
    end
  end
end

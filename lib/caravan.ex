defmodule Caravan do
  @moduledoc """
  Erlang distribution on Nomad + Consul: no epmd, and clusters formed from
  Consul DNS.

  Nomad gives a container no fixed port and no epmd, and a deploy changes who
  is in the cluster. Caravan answers both:

    * **Distribution without epmd.** A node's distribution port is read from
      its own name: `likes-4001@10.0.1.5` listens on 4001, and a peer named
      `likes-4002@10.0.1.6` is reached on 4002. See `Caravan.Epmd`.
    * **Cluster formation from Consul DNS** (a libcluster strategy that polls
      SRV records such as `likes-service-dist.service.consul`).

  The work happens in a Rust core loaded as a NIF (`Caravan.Native`, built by
  `mix compile`); the Elixir modules are thin and delegate to it.

  Start a node with these flags (Caravan's ebin goes inside `--erl`: the VM
  needs it while it boots, before Mix sets up code paths):

      iex --erl "-proto_dist Elixir.Caravan.Epmd.Dist -start_epmd false -epmd_module Elixir.Caravan.Epmd.Client -pa _build/dev/lib/caravan/ebin" --sname node3434 -S mix

  See `Caravan.Epmd.Client` and `Caravan.Epmd.Dist_dist`, and the guide
  [Distribution without epmd](distribution.md) for releases, TLS, IPv6 and
  remote shells.
  """
end

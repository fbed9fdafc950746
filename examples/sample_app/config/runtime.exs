import Config

# Cluster formation from Consul DNS, read when the release boots. Every value
# here has to agree with examples/nomad/caravan.nomad.hcl; the examples test
# (test/examples/) checks that they do.
if config_env() == :prod do
  config :libcluster,
    topologies: [
      caravan: [
        # Caravan's strategy runs inside libcluster's supervisor.
        strategy: Caravan.Cluster.DnsStrategy,
        config: [
          # The job's service name + ".service.consul": every healthy instance
          # comes back as an SRV record (port, <hex-ip>.addr.dc1.consul target,
          # A record glue).
          query: "sample-app-dist.service.consul",
          # Peers are named <node_sname>-<port>@<host>, as RELEASE_NODE in the
          # job: "sample-app-${NOMAD_HOST_PORT_dist}@${NOMAD_IP_dist}".
          node_sname: "sample-app",
          # <host> is the record's IP address (10.0.1.5), not its SRV target
          # (0a000105.addr.dc1.consul): Nomad nodes are named after their IP.
          node_host: :address,
          # Consul's DNS interface. Inside Nomad's bridge network 127.0.0.1 is
          # the allocation's own loopback, so the job sets CARAVAN_NAMESERVER to
          # the client's address; 127.0.0.1:8600 suits a node on the agent's host.
          nameservers: [System.get_env("CARAVAN_NAMESERVER", "127.0.0.1:8600")],
          poll_interval: 5_000
        ]
      ]
    ]
end

# A Nomad job for a release of examples/sample_app: BEAM nodes with no epmd that
# find each other through Consul DNS. guides/nomad-consul.md walks
# through it; test/examples/check_nomad_job.py checks it on every test run.
#
# How the pieces fit:
#   * Caravan reads a node's distribution port from its name:
#     sample-app-24567@10.0.1.5 listens on 24567. There is no epmd.
#   * Nomad picks a free port for "dist" and, with `to = -1`, uses the same
#     number inside the allocation's network namespace as on the host.
#   * The node is named after that port and the host's address, so its name
#     says exactly where other nodes can reach it.
#   * Consul advertises the same host address and port (address_mode = "host");
#     Caravan.Cluster.DnsStrategy (config/runtime.exs, node_host: :address)
#     turns each SRV record back into that name and connects.
#
# Before the first run:
#   nomad var put nomad/jobs/sample-app cookie="$(openssl rand -hex 32)"
#   nomad job run -var release_url=https://.../sample_app-0.1.0.tar.gz \
#     examples/nomad/caravan.nomad.hcl
#
# Needs: Linux clients with the CNI reference plugins (bridge networking), and a
# Consul agent whose DNS interface answers on the client's address (see the
# CARAVAN_NAMESERVER line below).

variable "release_url" {
  type        = string
  description = "URL of the tarball that `MIX_ENV=prod mix release` builds for examples/sample_app (releases: steps [:assemble, :tar]). Build it on the OS your Nomad clients run: it bundles ERTS."
  default     = "https://releases.example.com/sample_app/sample_app-0.1.0.tar.gz"
}

variable "instances" {
  type        = number
  description = "How many nodes the cluster has."
  default     = 3
}

job "sample-app" {
  # The SRV targets Consul hands out are <hex-ip>.addr.<datacenter>.consul.
  datacenters = ["dc1"]
  type        = "service"

  group "app" {
    count = var.instances

    network {
      # Every task of the group shares one network namespace, bridged to the host.
      mode = "bridge"

      # The distribution port. No `static`: Nomad picks a free one per
      # allocation, so several nodes can share a client.
      port "dist" {
        # -1 (the same as leaving `to` out): the port inside the namespace is the
        # host port Nomad picked. It is written out because it is what makes
        # Caravan work: the node listens on the port in its name, inside the
        # namespace, while its peers connect to that same number on the host.
        # A fixed `to` (4369, 9000...) breaks it; rel/env.sh.eex refuses to boot
        # when NOMAD_PORT_dist and NOMAD_HOST_PORT_dist differ.
        to = -1
      }
    }

    service {
      provider = "consul"
      # Peers query sample-app-dist.service.consul (config/runtime.exs: query).
      name = "sample-app-dist"
      port = "dist"

      # "host": advertise the client's address and the host port, the same two
      # values the node's name is built from (NOMAD_IP_dist, NOMAD_HOST_PORT_dist).
      # Consul then answers SRV <port> <hex-ip>.addr.dc1.consul with the host IP
      # as glue, and node_host: :address turns that into this node's name.
      # Not "alloc": it would advertise the allocation's bridge address
      # (172.26.64.x by default), which is not in any node's name and is not
      # reachable from other clients. "auto" means "host" here too, but says less.
      address_mode = "host"

      # A TCP check on the distribution port: Consul's DNS lists only instances
      # whose checks pass, so a node appears once it accepts connections and
      # disappears when it stops. Connecting and closing without a handshake
      # logs nothing on the node (checked with OTP 25). A script check running
      # `bin/sample_app rpc` would boot a second VM every interval.
      check {
        name     = "distribution port"
        type     = "tcp"
        port     = "dist"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "release" {
      driver = "exec"

      # Fetches and unpacks the release tarball into local/sample_app.
      artifact {
        source      = var.release_url
        destination = "local/sample_app"
      }

      config {
        command = "local/sample_app/bin/sample_app"
        args    = ["start"]
      }

      env {
        # The node's name: <node_sname>-<port>@<address>. Caravan listens on the
        # port in the name; peers rebuild exactly this name from Consul's answer
        # (node_sname "sample-app", node_host: :address in config/runtime.exs).
        # RELEASE_DISTRIBUTION=name (long names: the host part is an IP) is set
        # in rel/env.sh.eex.
        RELEASE_NODE = "sample-app-${NOMAD_HOST_PORT_dist}@${NOMAD_IP_dist}"

        # Where the strategy sends its DNS queries. Inside the bridge namespace
        # 127.0.0.1 is the allocation's own loopback, not the Consul agent's, so
        # point at the client's address. The agent must listen there: in Consul's
        # configuration, client_addr = "127.0.0.1 {{ GetPrivateIP }}" (or the
        # same under addresses { dns = ... }).
        CARAVAN_NAMESERVER = "${attr.unique.network.ip-address}:8600"
      }

      # The Erlang cookie, from a Nomad variable, never written in the job.
      # Tasks of job "sample-app" may read nomad/jobs/sample-app through their
      # workload identity, with no ACL policy to write. Until the variable
      # exists, the template blocks and the task waits. env = true turns the
      # rendered file into environment variables; the release's start script
      # uses RELEASE_COOKIE. The file goes to the task's secrets/ directory.
      template {
        destination = "secrets/cookie.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/sample-app" }}RELEASE_COOKIE={{ .cookie }}{{ end }}
        EOT
      }

      # Nomad's default kill signal is SIGINT, which the BEAM treats as a break.
      # SIGTERM makes it run init:stop(): applications stop in order, then the
      # node leaves the cluster.
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}

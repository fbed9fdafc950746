defmodule Caravan.TlsDistributionTest do
  # TLS distribution with Caravan's epmd module: certificates made here with
  # openssl, nodes on loopback, no epmd. Ports 21030-21039.
  use ExUnit.Case, async: true

  alias Caravan.Test.Nodes

  @moduletag :distribution
  @moduletag :tmp_dir
  @moduletag timeout: 120_000

  # Hostname verification needs a name in the certificate: this one
  # resolves to 127.0.0.1 through the nodes' ERL_INETRC only.
  @host "tls.caravan.test"

  setup %{tmp_dir: dir} do
    Nodes.refute_epmd!()

    inetrc = Path.join(dir, "inetrc")
    File.write!(inetrc, ~s({host, {127,0,0,1}, ["#{@host}"]}.\n{lookup, [file, native]}.\n))

    ca!(dir, "ca")
    ca!(dir, "rogue-ca")
    node_cert!(dir, "trusted", "ca")
    node_cert!(dir, "untrusted", "rogue-ca")

    {:ok,
     env: [{"ERL_INETRC", inetrc}],
     trusted: optfile!(dir, "trusted", "ca"),
     untrusted: optfile!(dir, "untrusted", "rogue-ca")}
  end

  test "nodes with certificates from the trusted CA connect; an untrusted node is refused",
       %{env: env, trusted: trusted, untrusted: untrusted} do
    [otp_tls, caravan_tls, rogue] =
      Nodes.start_all!([
        # OTP's inet_tls with Caravan's epmd module.
        [
          name: "tls-21030@#{@host}",
          env: env,
          caravan: false,
          erl:
            ~w(-proto_dist inet_tls -epmd_module Elixir.Caravan.Epmd.Client) ++
              ["-ssl_dist_optfile", trusted]
        ],
        # Caravan's distribution module over inet_tls.
        [
          name: "tls-21031@#{@host}",
          env: env,
          erl: ["-caravan_dist", "inet_tls", "-ssl_dist_optfile", trusted]
        ],
        [
          name: "rogue-21032@#{@host}",
          env: env,
          caravan: false,
          erl:
            ~w(-proto_dist inet_tls -epmd_module Elixir.Caravan.Epmd.Client) ++
              ["-ssl_dist_optfile", untrusted]
        ]
      ])

    for {node, port} <- [{otp_tls, 21030}, {caravan_tls, 21031}, {rogue, 21032}] do
      assert Nodes.listening(node) == [{{0, 0, 0, 0}, port}]
    end

    assert Nodes.rpc!(caravan_tls, Node, :ping, [otp_tls.name]) == :pong

    assert Nodes.rpc!(otp_tls, :erpc, :call, [caravan_tls.name, :erlang, :node, []]) ==
             caravan_tls.name

    {:ok, info} = Nodes.rpc!(caravan_tls, :net_kernel, :node_info, [otp_tls.name])
    assert {:net_address, {{127, 0, 0, 1}, 21030}, _host, :tls, :inet} = info[:address]

    for {from, to} <- [
          {rogue, otp_tls},
          {otp_tls, rogue},
          {rogue, caravan_tls},
          {caravan_tls, rogue}
        ] do
      assert Nodes.rpc!(from, Node, :ping, [to.name]) == :pang, "#{from.name} -> #{to.name}"
    end

    assert Nodes.rpc!(rogue, Node, :list, [:connected]) == []
    assert Nodes.rpc!(otp_tls, Node, :list, []) == [caravan_tls.name]
    assert Nodes.output(otp_tls) =~ "Unknown CA"
  end

  defp ca!(dir, name) do
    openssl!(
      dir,
      ~w(req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes) ++
        ["-keyout", "#{name}.key", "-out", "#{name}.pem", "-days", "2", "-subj", "/CN=#{name}"]
    )
  end

  defp node_cert!(dir, name, ca) do
    openssl!(
      dir,
      ~w(req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes) ++
        ["-keyout", "#{name}.key", "-out", "#{name}.csr", "-subj", "/CN=#{name}"]
    )

    File.write!(Path.join(dir, "#{name}.ext"), """
    subjectAltName=DNS:#{@host},IP:127.0.0.1
    extendedKeyUsage=serverAuth,clientAuth
    """)

    openssl!(
      dir,
      ~w(x509 -req -days 2 -CAcreateserial) ++
        ["-in", "#{name}.csr", "-CA", "#{ca}.pem", "-CAkey", "#{ca}.key"] ++
        ["-out", "#{name}.pem", "-extfile", "#{name}.ext"]
    )
  end

  # Both sides verify: the server asks for the client's certificate.
  defp optfile!(dir, name, ca) do
    common = """
    {certfile, "#{Path.join(dir, name <> ".pem")}"},
    {keyfile, "#{Path.join(dir, name <> ".key")}"},
    {cacertfile, "#{Path.join(dir, ca <> ".pem")}"},
    {verify, verify_peer}\
    """

    path = Path.join(dir, "#{name}.conf")

    File.write!(path, """
    [{server, [#{common}, {fail_if_no_peer_cert, true}]},
     {client, [#{common}]}].
    """)

    path
  end

  defp openssl!(dir, args) do
    {output, status} = System.cmd("openssl", args, cd: dir, stderr_to_stdout: true)
    assert status == 0, "openssl #{Enum.join(args, " ")} failed:\n#{output}"
  end
end

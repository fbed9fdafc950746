# A BEAM run that loads Caravan's NIF and does real DNS lookups, for valgrind.
service = "likes-dist.service.consul"
{:ok, udp} = :gen_udp.open(0, [:binary, ip: {127, 0, 0, 1}, active: false])
{:ok, port} = :inet.port(udp)

server =
  spawn(fn ->
    loop = fn loop ->
      {:ok, {ip, p, query}} = :gen_udp.recv(udp, 0)
      {:ok, msg} = :inet_dns.decode(query)
      rr = fn name, type, data ->
        :inet_dns.make_rr(domain: to_charlist(name), type: type, class: :in, ttl: 0, data: data)
      end
      header = :inet_dns.make_header(:inet_dns.msg(msg, :header), qr: true, aa: true)
      answer =
        :inet_dns.make_msg(msg,
          header: header,
          anlist: for(i <- 1..3, do: rr.(service, :srv, {1, 1, 4000 + i, ~c"n#{i}.node.dc1.consul"})),
          arlist: for(i <- 1..3, do: rr.("n#{i}.node.dc1.consul", :a, {127, 0, 1, i}))
        )
      :gen_udp.send(udp, ip, p, :inet_dns.encode(answer))
      loop.(loop)
    end
    loop.(loop)
  end)

:ok = :gen_udp.controlling_process(udp, server)
ns = "127.0.0.1:#{port}"
IO.inspect(Caravan.Native.dist_port("likes-4001@10.0.1.5"), label: "dist_port")
IO.inspect(Caravan.Epmd.dist_port(:"a-65535@h"), label: "epmd")
IO.inspect((try do Caravan.Epmd.dist_port("a-0@h") rescue e -> e.message end), label: "bad name")

for round <- 1..20 do
  {:ok, targets} = Caravan.DnsClient.lookup(service, nameservers: [ns], timeout: 30_000)
  if round == 1, do: IO.inspect(targets, label: "lookup")
end

IO.inspect(Caravan.DnsClient.lookup(service, nameservers: ["127.0.0.1:1"], timeout: 2_000), label: "closed port")
tasks = for _ <- 1..50, do: Task.async(fn -> Caravan.DnsClient.lookup(service, nameservers: [ns], timeout: 60_000) end)
IO.inspect(tasks |> Task.await_many(120_000) |> Enum.count(&match?({:ok, [_, _, _]}, &1)), label: "concurrent ok")
# Reload the module (NIF loads again into the new instance).
:code.purge(Caravan.Native)
{:module, _} = :code.load_file(Caravan.Native)
IO.inspect(Caravan.Native.dist_port("b-4002@h"), label: "after reload")
IO.inspect(Caravan.Native.random_creation(), label: "creation")
IO.puts("VALGRIND-RUN-DONE")

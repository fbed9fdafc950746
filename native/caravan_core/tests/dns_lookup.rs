//! SRV lookups against real DNS servers on 127.0.0.1:0: an in-process
//! hickory-server authority for Consul's answer shapes, and small raw
//! responders for the failure modes (silence, SERVFAIL, REFUSED, garbage).
//!
//! Most lookups here run twice, at once: through `dns::lookup` and through
//! `dns::spawn_lookup` (on Caravan's runtime, delivered by callback). The
//! two must agree: the same answer, or errors with the same reason.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use caravan_core::dns::{
    self, runtime, Answer, LookupError, LookupOptions, Nameservers, Query, Transport,
};
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::op::{Message, MessageType, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

mod common;

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn srv(service: &str, port: u16, target: &str) -> Record {
    Record::from_rdata(
        name(service),
        0,
        RData::SRV(SRV::new(1, 1, port, name(target))),
    )
}

fn a(host: &str, ip: [u8; 4]) -> Record {
    Record::from_rdata(name(host), 0, RData::A(A(Ipv4Addr::from(ip))))
}

fn aaaa(host: &str, ip: Ipv6Addr) -> Record {
    Record::from_rdata(name(host), 0, RData::AAAA(AAAA(ip)))
}

/// Which listeners the authority gets.
#[derive(Clone, Copy, PartialEq)]
enum Listen {
    UdpAndTcp,
    UdpOnly,
}

/// Serves the zones `consul.` and `example.` holding `records` (each goes to
/// the zone its name ends in) until the test's runtime ends. An in-zone SRV
/// target gets its A/AAAA records as glue; an `example.` target does not.
async fn authority(records: Vec<Record>, listen: Listen) -> SocketAddr {
    let mut catalog = Catalog::new();
    for origin in ["consul.", "example."] {
        let origin = name(origin);
        let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        );
        let soa = SOA::new(
            name("ns.consul."),
            name("hostmaster.consul."),
            1,
            3600,
            600,
            86400,
            0,
        );
        assert!(zone.upsert_mut(Record::from_rdata(origin.clone(), 0, RData::SOA(soa)), 1));
        for record in records.iter().filter(|r| origin.zone_of(&r.name)) {
            assert!(zone.upsert_mut(record.clone(), 1));
        }
        catalog.upsert(LowerName::new(&origin), vec![Arc::new(zone)]);
    }
    let mut server = Server::new(catalog);
    let (udp, tcp) = bind_pair().await;
    let addr = udp.local_addr().unwrap();
    server.register_socket(udp);
    if listen == Listen::UdpAndTcp {
        server.register_listener(tcp, Duration::from_secs(5), 64 * 1024);
    } else {
        drop(tcp);
    }
    tokio::spawn(async move {
        let _ = server.block_until_done().await;
    });
    addr
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1.
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            return (udp, tcp);
        }
    }
    panic!("no free UDP+TCP port pair on 127.0.0.1");
}

fn options(server: SocketAddr) -> LookupOptions {
    LookupOptions {
        nameservers: Nameservers::Explicit(vec![server]),
        timeout: Duration::from_millis(3000),
        ..LookupOptions::default()
    }
}

fn q(text: &str) -> Query {
    Query::new(text).unwrap()
}

/// The lookup through `dns::lookup` and through `dns::spawn_lookup`, run
/// at once; they must agree (see the module documentation). Returns the
/// first.
async fn lookup(query: &Query, opts: &LookupOptions) -> Result<Answer, LookupError> {
    let (direct, spawned) = tokio::join!(dns::lookup(query, opts), spawned(query, opts));
    match (&direct, &spawned) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the two paths' answers differ"),
        (Err(a), Err(b)) => assert_eq!(a.reason(), b.reason(), "{a} / {b}"),
        _ => panic!("direct: {direct:?}; spawned: {spawned:?}"),
    }
    direct
}

/// The lookup through `dns::spawn_lookup`, awaited here.
async fn spawned(query: &Query, opts: &LookupOptions) -> Result<Answer, LookupError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Kept until the answer comes: dropping it would cancel the lookup.
    let _lookup = dns::spawn_lookup(query.clone(), opts.clone(), move |result| {
        let _ = tx.send(result.clone());
    })
    .unwrap();
    rx.await.unwrap()
}

fn ports_and_hosts(answer: &Answer) -> Vec<(u16, String)> {
    answer
        .targets
        .iter()
        .map(|t| (t.port, t.host.clone()))
        .collect()
}

#[tokio::test]
async fn node_targets_come_back_ordered_with_their_glue() {
    let server = authority(
        vec![
            srv("likes.service.consul.", 4003, "node3.node.dc1.consul."),
            srv("likes.service.consul.", 4001, "node1.node.dc1.consul."),
            srv("likes.service.consul.", 4002, "node2.node.dc1.consul."),
            a("node1.node.dc1.consul.", [127, 0, 1, 1]),
            a("node2.node.dc1.consul.", [127, 0, 1, 2]),
            a("node3.node.dc1.consul.", [127, 0, 1, 3]),
        ],
        Listen::UdpAndTcp,
    )
    .await;
    let answer = lookup(&q("likes.service.consul"), &options(server))
        .await
        .unwrap();
    assert_eq!(
        ports_and_hosts(&answer),
        [
            (4001, "node1.node.dc1.consul".to_string()),
            (4002, "node2.node.dc1.consul".to_string()),
            (4003, "node3.node.dc1.consul".to_string()),
        ]
    );
    // hickory-server glues only the first record of the set it serves
    // (node3 here); that A record can only have come from ADDITIONAL.
    assert_eq!(answer.targets[2].addresses, [IpAddr::from([127, 0, 1, 3])]);
    assert!(answer.targets[0].addresses.is_empty());
    assert_eq!(answer.rejected, 0);
}

#[tokio::test]
async fn addr_targets_get_their_address_from_glue_and_name() {
    let v6: Ipv6Addr = "fd00::5".parse().unwrap();
    let v6_host = format!("{:032x}.addr.dc1.consul.", u128::from(v6));
    let server = authority(
        vec![
            srv("fleet.service.consul.", 4001, "7f000002.addr.dc1.consul."),
            a("7f000002.addr.dc1.consul.", [127, 0, 0, 2]),
            srv("fleet.service.consul.", 4002, &v6_host),
            aaaa(&v6_host, v6),
        ],
        Listen::UdpAndTcp,
    )
    .await;
    let answer = lookup(&q("fleet.service.consul"), &options(server))
        .await
        .unwrap();
    assert_eq!(answer.targets.len(), 2);
    assert_eq!(answer.targets[0].host, "7f000002.addr.dc1.consul");
    assert_eq!(answer.targets[0].addresses, [IpAddr::from([127, 0, 0, 2])]);
    assert_eq!(answer.targets[1].addresses, [IpAddr::V6(v6)]);
}

fn many(count: u16) -> Vec<Record> {
    (0..count)
        .flat_map(|i| {
            let n = i + 2;
            let host = format!("7f01{n:04x}.addr.dc1.consul.");
            [
                srv("big.service.consul.", 40000 + i, &host),
                a(&host, [127, 1, (n >> 8) as u8, n as u8]),
            ]
        })
        .collect()
}

#[tokio::test]
async fn a_truncated_udp_answer_is_retried_over_tcp_and_arrives_whole() {
    // 300 records with glue are far beyond the 4096-byte EDNS payload, so
    // the UDP answer comes back truncated (TC) and only TCP can carry it.
    let server = authority(many(300), Listen::UdpAndTcp).await;
    let answer = lookup(&q("big.service.consul"), &options(server))
        .await
        .unwrap();
    assert_eq!(answer.targets.len(), 300);
    assert!(answer.targets.iter().all(|t| t.addresses.len() == 1));
    assert_eq!(answer.over_limit, 0);
}

#[tokio::test]
async fn without_tcp_the_truncated_answer_is_an_error_not_a_partial_list() {
    let server = authority(many(300), Listen::UdpOnly).await;
    let err = lookup(&q("big.service.consul"), &options(server))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "malformed", "{err:?}");
    assert!(
        err.to_string()
            .contains("truncated over UDP and no whole answer came over TCP"),
        "{err}"
    );
}

#[tokio::test]
async fn tcp_transport_never_uses_udp() {
    let server = authority(many(3), Listen::UdpAndTcp).await;
    let opts = LookupOptions {
        transport: Transport::Tcp,
        ..options(server)
    };
    let answer = lookup(&q("big.service.consul"), &opts).await.unwrap();
    assert_eq!(answer.targets.len(), 3);
    // The same server without its TCP listener cannot answer at all.
    let udp_only = authority(many(3), Listen::UdpOnly).await;
    let opts = LookupOptions {
        transport: Transport::Tcp,
        ..options(udp_only)
    };
    let err = lookup(&q("big.service.consul"), &opts).await.unwrap_err();
    assert_eq!(err.reason(), "unreachable", "{err}");
}

#[tokio::test]
async fn max_records_caps_the_answer_and_counts_the_rest() {
    let server = authority(many(20), Listen::UdpAndTcp).await;
    let opts = LookupOptions {
        max_records: 5,
        ..options(server)
    };
    let answer = lookup(&q("big.service.consul"), &opts).await.unwrap();
    assert_eq!(answer.targets.len(), 5);
    assert_eq!(answer.over_limit, 15);
    assert_eq!(answer.targets[0].port, 40000);
}

#[tokio::test]
async fn invalid_targets_are_rejected_and_counted() {
    let server = authority(
        vec![
            srv("mixed.service.consul.", 4001, "good.node.dc1.consul."),
            srv("mixed.service.consul.", 4002, "bad_name.node.dc1.consul."),
        ],
        Listen::UdpAndTcp,
    )
    .await;
    let answer = lookup(&q("mixed.service.consul"), &options(server))
        .await
        .unwrap();
    assert_eq!(
        ports_and_hosts(&answer),
        [(4001, "good.node.dc1.consul".into())]
    );
    assert_eq!(answer.rejected, 1);
    assert!(answer.rejected_example.unwrap().contains("bad_name"));
}

#[tokio::test]
async fn nxdomain_and_no_records_are_empty_successes() {
    let server = authority(
        vec![a("only-a.service.consul.", [127, 0, 0, 9])],
        Listen::UdpAndTcp,
    )
    .await;
    let nx = lookup(&q("missing.service.consul"), &options(server)).await;
    assert_eq!(nx, Ok(Answer::empty()));
    let nodata = lookup(&q("only-a.service.consul"), &options(server)).await;
    assert_eq!(nodata, Ok(Answer::empty()));
}

#[tokio::test]
async fn addresses_are_resolved_only_when_asked() {
    let server = authority(
        vec![
            srv("ext.service.consul.", 4001, "host.example."),
            a("host.example.", [127, 0, 3, 1]),
            aaaa("host.example.", "fd00::31".parse().unwrap()),
        ],
        Listen::UdpAndTcp,
    )
    .await;
    let plain = lookup(&q("ext.service.consul"), &options(server))
        .await
        .unwrap();
    assert_eq!(plain.targets[0].host, "host.example");
    assert!(
        plain.targets[0].addresses.is_empty(),
        "no glue, and not asked"
    );
    let resolved = lookup(
        &q("ext.service.consul"),
        &LookupOptions {
            resolve_addresses: true,
            ..options(server)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        resolved.targets[0].addresses,
        [IpAddr::from([127, 0, 3, 1]), "fd00::31".parse().unwrap()]
    );
}

/// A UDP nameserver on 127.0.0.1 that answers every query with
/// `reply(query)`, or never answers when it returns `None`.
async fn raw_udp<F>(reply: F) -> SocketAddr
where
    F: Fn(&Message) -> Option<Vec<u8>> + Send + 'static,
{
    common::udp_responder("127.0.0.1:0", Duration::ZERO, move |query, _| {
        reply(query).into_iter().collect()
    })
    .await
}

fn rcode_reply(code: ResponseCode) -> impl Fn(&Message) -> Option<Vec<u8>> {
    move |query| {
        let mut response = Message::response(query.id, query.op_code);
        response.metadata.message_type = MessageType::Response;
        response.metadata.response_code = code;
        response.add_queries(query.queries.clone());
        response.to_vec().ok()
    }
}

fn short(server: SocketAddr, ms: u64) -> LookupOptions {
    LookupOptions {
        timeout: Duration::from_millis(ms),
        ..options(server)
    }
}

#[tokio::test]
async fn servfail_refused_and_other_codes_have_their_own_reasons() {
    for (code, reason) in [
        (ResponseCode::ServFail, "servfail"),
        (ResponseCode::Refused, "refused"),
        (ResponseCode::NotImp, "server_error"),
    ] {
        let server = raw_udp(rcode_reply(code)).await;
        let err = lookup(&q("likes.service.consul"), &short(server, 2000))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), reason, "{code}: {err}");
        assert!(err.to_string().contains(&server.to_string()), "{err}");
    }
}

#[tokio::test]
async fn silence_is_a_timeout_within_the_timeout() {
    let server = raw_udp(|_| None).await;
    let started = Instant::now();
    let err = lookup(&q("likes.service.consul"), &short(server, 400))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "timeout");
    assert!(
        started.elapsed() < Duration::from_millis(400 + 1000),
        "liveness"
    );
    assert!(err.to_string().contains("within 400 ms"), "{err}");
}

#[tokio::test]
async fn garbage_after_a_matching_id_is_malformed() {
    let server = raw_udp(|query| {
        let mut bytes = query.id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff]);
        Some(bytes)
    })
    .await;
    let err = lookup(&q("likes.service.consul"), &short(server, 2000))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "malformed", "{err}");
}

#[tokio::test]
async fn random_garbage_is_ignored_as_spoofing_and_ends_in_a_clean_error() {
    let server = raw_udp(|_| Some(b"\xde\xad\xbe\xef not dns at all".to_vec())).await;
    // (Each path on its own: which error ends it depends on whether the
    // garbage happens to start with the query's random id.)
    let query = q("likes.service.consul");
    let opts = short(server, 500);
    let (direct, spawned) = tokio::join!(dns::lookup(&query, &opts), spawned(&query, &opts));
    for err in [direct.unwrap_err(), spawned.unwrap_err()] {
        assert!(matches!(err.reason(), "timeout" | "malformed"), "{err}");
    }
}

/// A TCP responder on 127.0.0.1:0 that answers one query per connection
/// with three SRV records and then closes it, as a name server does when it
/// ends a kept connection (dnsmasq after 100 queries, others when idle).
/// Counts the connections it accepted; waits `delay` before each answer.
async fn one_answer_per_connection(
    delay: Duration,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut len = [0u8; 2];
                stream.read_exact(&mut len).await?;
                let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                stream.read_exact(&mut query).await?;
                let query = Message::from_vec(&query).map_err(std::io::Error::other)?;
                tokio::time::sleep(delay).await;
                let mut response = Message::response(query.id, query.op_code);
                response.metadata.message_type = MessageType::Response;
                response.add_queries(query.queries.clone());
                response.add_answers(
                    (1..=3).map(|i| srv("likes.service.consul.", 4000 + i, "n1.node.dc1.consul.")),
                );
                let bytes = response.to_vec().map_err(std::io::Error::other)?;
                let mut framed = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
                framed.extend_from_slice(&bytes);
                stream.write_all(&framed).await?;
                // Closed here, once the answer is out.
                stream.shutdown().await
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn every_tcp_query_has_a_connection_of_its_own() {
    // The server closes each connection after its answer, as name servers
    // end kept connections (dnsmasq after 100 queries, others when idle):
    // no lookup depends on an earlier one's connection.
    let (server, accepted) = one_answer_per_connection(Duration::ZERO).await;
    let opts = LookupOptions {
        transport: Transport::Tcp,
        ..options(server)
    };
    for i in 1..=40 {
        let answer = dns::lookup(&q("likes.service.consul"), &opts)
            .await
            .unwrap_or_else(|e| panic!("lookup {i}: {e}"));
        assert_eq!(answer.targets.len(), 3, "lookup {i}");
        assert!(answer.complete, "over TCP");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 40);
}

#[tokio::test]
async fn a_closed_tcp_port_is_unreachable() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let opts = LookupOptions {
        transport: Transport::Tcp,
        ..short(closed, 2000)
    };
    let err = lookup(&q("likes.service.consul"), &opts).await.unwrap_err();
    assert_eq!(err.reason(), "unreachable", "{err}");
}

#[test]
fn spawn_lookup_answers_exactly_once_from_the_runtime_thread() {
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let server = server_rt.block_on(authority(
        vec![
            srv("likes.service.consul.", 4001, "7f000002.addr.dc1.consul."),
            a("7f000002.addr.dc1.consul.", [127, 0, 0, 2]),
        ],
        Listen::UdpAndTcp,
    ));
    let (tx, rx) = mpsc::channel();
    let mut lookups = Vec::new();
    for _ in 0..50 {
        let tx = tx.clone();
        let lookup = dns::spawn_lookup(q("likes.service.consul"), options(server), move |result| {
            let thread = std::thread::current().name().map(str::to_owned);
            tx.send((thread, result.clone())).unwrap();
        });
        lookups.push(lookup.unwrap());
    }
    drop(tx);
    let answers: Vec<_> = rx.iter().collect();
    assert_eq!(answers.len(), 50, "one answer per call, and no more");
    for (thread, result) in answers {
        assert_eq!(thread.as_deref(), Some(runtime::THREAD_NAME));
        assert_eq!(result.unwrap().targets[0].port, 4001);
    }
    assert_eq!(runtime_threads(), 1);
}

/// Threads of this process named like the runtime's.
fn runtime_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == runtime::THREAD_NAME)
        .count()
}

#[test]
fn errors_are_values_with_fixed_reasons() {
    let all = [
        LookupError::Timeout {
            question: "q".into(),
            servers: "s".into(),
            timeout: Duration::from_millis(1),
            attempts: 1,
        },
        LookupError::Refused {
            question: "q".into(),
            servers: "s".into(),
        },
        LookupError::Unreachable {
            question: "q".into(),
            servers: "s".into(),
            detail: "d".into(),
        },
        LookupError::ServFail {
            question: "q".into(),
            servers: "s".into(),
        },
        LookupError::ServerError {
            question: "q".into(),
            servers: "s".into(),
            rcode: "NOTIMP".into(),
        },
        LookupError::Malformed {
            question: "q".into(),
            servers: "s".into(),
            detail: "d".into(),
        },
        LookupError::NoNameservers {
            question: "q".into(),
            detail: "d".into(),
        },
        LookupError::Internal {
            question: "q".into(),
            detail: "d".into(),
        },
    ];
    let reasons: Vec<&str> = all.iter().map(LookupError::reason).collect();
    // The set `Caravan.DnsClient.reason/0` documents.
    assert_eq!(
        reasons,
        [
            "timeout",
            "refused",
            "unreachable",
            "servfail",
            "server_error",
            "malformed",
            "no_nameservers",
            "internal"
        ]
    );
}

/// A UDP nameserver on `bind` that answers each query with `decoys` first
/// (built from the query) and then the true answer.
async fn answer_after_decoys(bind: &str, decoys: fn(&Message) -> Vec<Vec<u8>>) -> SocketAddr {
    common::udp_responder(bind, Duration::ZERO, move |query, _| {
        let mut datagrams = decoys(query);
        datagrams.push(common::srv_answer(query));
        datagrams
    })
    .await
}

#[tokio::test]
async fn replies_to_another_query_are_ignored_and_the_true_one_is_taken() {
    // A wrong id, then the right id for another name: both clients wait on.
    let server = answer_after_decoys("127.0.0.1:0", |query| {
        let name = query.queries[0].name().to_ascii();
        vec![
            common::srv_reply(query, query.id.wrapping_add(1), &name),
            common::srv_reply(query, query.id, "other.service.consul."),
        ]
    })
    .await;
    let answer = lookup(&q("likes.service.consul"), &short(server, 2000))
        .await
        .unwrap();
    assert_eq!(ports_and_hosts(&answer), [(4001, common::TARGET.into())]);

    // A datagram with the right id and question that is not a response.
    let server = answer_after_decoys("127.0.0.1:0", |query| {
        // ...and holding no records, so that taking it would show.
        let mut copy = Message::new(query.id, MessageType::Query, query.op_code);
        copy.add_queries(query.queries.clone());
        vec![copy.to_vec().unwrap()]
    })
    .await;
    let answer = spawned(&q("likes.service.consul"), &short(server, 2000))
        .await
        .unwrap();
    assert_eq!(answer.targets.len(), 1);
}

#[tokio::test]
async fn an_ipv6_nameserver_is_asked_over_ipv6() {
    let server = answer_after_decoys("[::1]:0", |_| Vec::new()).await;
    assert!(server.is_ipv6());
    let answer = lookup(&q("likes.service.consul"), &short(server, 2000))
        .await
        .unwrap();
    assert_eq!(ports_and_hosts(&answer), [(4001, common::TARGET.into())]);
}

/// A UDP nameserver on 127.0.0.1 that answers the `n`th query (from 0) with
/// `reply(query, n)` after `delay` (`None`: never), and counts the queries.
async fn counting_udp<F>(
    delay: Duration,
    reply: F,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>)
where
    F: Fn(&Message, usize) -> Option<Vec<u8>> + Send + 'static,
{
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = count.clone();
    let server = common::udp_responder("127.0.0.1:0", delay, move |query, n| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        reply(query, n).into_iter().collect()
    })
    .await;
    (server, count)
}

fn sent(count: &std::sync::atomic::AtomicUsize) -> usize {
    count.load(std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test]
async fn a_late_reply_is_taken_whichever_attempt_it_answers() {
    // 450 ms per answer, one query at a time: Consul under load.
    for (attempts, timeout) in [(2, 3000), (3, 1000)] {
        let (server, _) = counting_udp(Duration::from_millis(450), |query, _| {
            Some(common::srv_answer(query))
        })
        .await;
        let opts = LookupOptions {
            attempts,
            ..short(server, timeout)
        };
        let started = Instant::now();
        let answer = dns::lookup(&q("likes.service.consul"), &opts).await;
        let took = started.elapsed();
        assert_eq!(answer.unwrap().targets.len(), 1);
        // With 3 attempts in 1 s, the second went out at 333 ms; the reply
        // to the first, at 450 ms, is still taken.
        assert!(
            took < Duration::from_millis(500),
            "{attempts} attempts: {took:?}"
        );
    }
}

#[tokio::test]
async fn attempts_is_the_number_of_queries_sent() {
    let (server, count) = counting_udp(Duration::ZERO, |_, _| None).await;
    let opts = LookupOptions {
        attempts: 3,
        ..short(server, 600)
    };
    let started = Instant::now();
    let err = dns::lookup(&q("likes.service.consul"), &opts)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "timeout");
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(sent(&count), 3);

    // A lost query is made good by the next attempt.
    let (server, count) = counting_udp(Duration::ZERO, |query, n| {
        (n > 0).then(|| common::srv_answer(query))
    })
    .await;
    let answer = dns::lookup(&q("likes.service.consul"), &short(server, 1000)).await;
    assert_eq!(answer.unwrap().targets.len(), 1);
    assert_eq!(sent(&count), 2);

    // A failed attempt is followed at once by the next: SERVFAIL twice,
    // well within the first attempt's 500 ms.
    let (server, count) = counting_udp(Duration::ZERO, |query, _| {
        rcode_reply(ResponseCode::ServFail)(query)
    })
    .await;
    let started = Instant::now();
    let err = dns::lookup(&q("likes.service.consul"), &short(server, 1000))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "servfail");
    assert!(started.elapsed() < Duration::from_millis(400));
    assert_eq!(sent(&count), 2);
}

#[tokio::test]
async fn a_closed_udp_port_is_unreachable_at_once() {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let started = Instant::now();
    let err = lookup(&q("likes.service.consul"), &short(closed, 5000))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "unreachable", "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(started.elapsed() < Duration::from_millis(100));
}

/// An answer to `query` with `count` SRV records on distinct targets, each
/// with its A glue, with or without EDNS.
fn srv_records(query: &Message, count: u16, edns: bool) -> Vec<u8> {
    let mut response = Message::response(query.id, query.op_code);
    response.add_queries(query.queries.clone());
    let service = query.queries[0].name().clone();
    for i in 0..count {
        let target = name(&format!("instance-{i}.node.dc1.consul."));
        response.add_answer(Record::from_rdata(
            service.clone(),
            0,
            RData::SRV(SRV::new(1, 1, 4000 + i, target.clone())),
        ));
        response.add_additional(Record::from_rdata(
            target,
            0,
            RData::A(A(Ipv4Addr::new(127, 0, 1, i as u8))),
        ));
    }
    if edns {
        response.set_edns(Default::default());
    }
    response.to_vec().unwrap()
}

#[tokio::test]
async fn complete_says_whether_the_answer_can_have_been_trimmed() {
    // The most records that fit the advertised 4,096 bytes: what Consul's
    // trimming leaves of a larger service.
    let probe = Message::query();
    let mut probe = probe;
    probe.add_query(hickory_server::proto::op::Query::query(
        name("likes.service.consul."),
        hickory_server::proto::rr::RecordType::SRV,
    ));
    let near = (1..200)
        .take_while(|&n| srv_records(&probe, n, true).len() <= 4096)
        .last()
        .unwrap();
    let near_len = srv_records(&probe, near, true).len();
    assert!(near_len > dns::options::COMPLETE_BELOW, "{near_len}");
    for (count, edns, complete) in [(3, true, true), (near, true, false), (3, false, false)] {
        let (server, _) = counting_udp(Duration::ZERO, move |query, _| {
            Some(srv_records(query, count, edns))
        })
        .await;
        let answer = lookup(&q("likes.service.consul"), &short(server, 2000))
            .await
            .unwrap();
        assert_eq!(answer.targets.len(), usize::from(count));
        assert_eq!(answer.complete, complete, "{count} records, EDNS {edns}");
    }
    // Dropped beyond max_records: not every instance is listed.
    let (server, _) =
        counting_udp(Duration::ZERO, |query, _| Some(srv_records(query, 3, true))).await;
    let capped = LookupOptions {
        max_records: 2,
        ..short(server, 2000)
    };
    assert!(
        !lookup(&q("likes.service.consul"), &capped)
            .await
            .unwrap()
            .complete
    );
}

#[tokio::test]
async fn a_failed_address_follow_up_marks_its_target_unresolved() {
    // SRV answers without glue; A/AAAA for "broken" fail, for "gone" are
    // NXDOMAIN, for "fine" give an address.
    for failure in [ResponseCode::ServFail, ResponseCode::Refused] {
        let (server, _) = counting_udp(Duration::ZERO, move |query, _| {
            let asked = query.queries[0].name().to_ascii();
            let mut response = Message::response(query.id, query.op_code);
            response.add_queries(query.queries.clone());
            if asked.starts_with("likes.") {
                for (port, host) in [
                    (4001, "broken.example."),
                    (4002, "gone.example."),
                    (4003, "fine.example."),
                ] {
                    response.add_answer(srv("likes.service.consul.", port, host));
                }
            } else if asked.starts_with("broken.") {
                response.metadata.response_code = failure;
            } else if asked.starts_with("gone.") {
                response.metadata.response_code = ResponseCode::NXDomain;
            } else if query.queries[0].query_type() == hickory_server::proto::rr::RecordType::A {
                response.add_answer(a("fine.example.", [127, 0, 0, 9]));
            }
            Some(response.to_vec().unwrap())
        })
        .await;
        let opts = LookupOptions {
            resolve_addresses: true,
            ..short(server, 2000)
        };
        let answer = lookup(&q("likes.service.consul"), &opts).await.unwrap();
        let shown: Vec<(&str, bool, usize)> = answer
            .targets
            .iter()
            .map(|t| (t.host.as_str(), t.unresolved, t.addresses.len()))
            .collect();
        assert_eq!(
            shown,
            [
                ("broken.example", true, 0),
                ("fine.example", false, 1),
                ("gone.example", false, 0)
            ]
        );
        assert_eq!(answer.unresolved, 1);
        let example = answer.unresolved_example.unwrap();
        assert!(example.contains("broken.example"), "{example}");
        assert!(
            example.contains(if failure == ResponseCode::ServFail {
                "SERVFAIL"
            } else {
                "REFUSED"
            }),
            "{example}"
        );
    }
}

/// Spawns a lookup whose result goes to `tx`, returning its handle.
fn spawn(
    query: &str,
    opts: &LookupOptions,
    tx: &mpsc::Sender<Result<Answer, LookupError>>,
) -> dns::Lookup {
    let tx = tx.clone();
    dns::spawn_lookup(q(query), opts.clone(), move |result| {
        let _ = tx.send(result.clone());
    })
    .unwrap()
}

/// The next result on `rx` is a one-target answer, within 50 ms of `started`.
fn answered_within_50_ms(rx: &mpsc::Receiver<Result<Answer, LookupError>>, started: Instant) {
    let answer = rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(answer.targets.len(), 1);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(50), "{took:?}");
}

#[test]
fn abandoned_lookups_give_back_their_turns_at_once_and_deliver_nothing() {
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    // Silent for as many queries as there are turns, then answering.
    let turns = dns::lookup::MAX_IN_FLIGHT;
    let (server, _) = server_rt.block_on(counting_udp(Duration::ZERO, move |query, n| {
        (n >= turns).then(|| common::srv_answer(query))
    }));
    let opts = LookupOptions {
        attempts: 1,
        ..short(server, 15_000)
    };
    let (tx, rx) = mpsc::channel();
    let abandoned: Vec<_> = (0..turns)
        .map(|_| spawn("likes.service.consul", &opts, &tx))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    drop(abandoned);
    // Every turn is free again: this one is sent and answered at once.
    let started = Instant::now();
    let _kept = spawn("likes.service.consul", &opts, &tx);
    answered_within_50_ms(&rx, started);
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "the abandoned delivered nothing"
    );
}

#[test]
fn a_dead_nameserver_holds_up_only_its_own_lookups() {
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let (dead, _) = server_rt.block_on(counting_udp(Duration::ZERO, |_, _| None));
    let (healthy, _) = server_rt.block_on(counting_udp(Duration::ZERO, |query, _| {
        Some(common::srv_answer(query))
    }));
    let (tx, rx) = mpsc::channel();
    // More waiting on the dead one than it has turns, all still wanted.
    let _stuck: Vec<_> = (0..2 * dns::lookup::MAX_IN_FLIGHT)
        .map(|_| spawn("likes.service.consul", &short(dead, 15_000), &tx))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let _healthy = spawn("likes.service.consul", &short(healthy, 15_000), &tx);
    answered_within_50_ms(&rx, started);
}

#[tokio::test]
async fn large_records_leave_room_for_two_of_them_before_an_answer_is_complete() {
    // Consul can put node metadata in TXT records beside the glue: a record
    // it trims, with its extras, can then be far larger than 512 bytes.
    let (server, _) = counting_udp(Duration::ZERO, |query, _| {
        let mut response = Message::response(query.id, query.op_code);
        response.add_queries(query.queries.clone());
        for i in 0..4u16 {
            let target = name(&format!("node-{i}.node.dc1.consul."));
            response.add_answer(srv("likes.service.consul.", 4000 + i, &target.to_ascii()));
            let meta = hickory_server::proto::rr::rdata::TXT::new(vec![
                "k=".to_owned()
                    + &"v".repeat(240);
                3
            ]);
            response.add_additional(Record::from_rdata(target, 0, RData::TXT(meta)));
        }
        response.set_edns(Default::default());
        let bytes = response.to_vec().unwrap();
        assert!(
            bytes.len() < dns::options::COMPLETE_BELOW,
            "{}",
            bytes.len()
        );
        Some(bytes)
    })
    .await;
    let answer = lookup(&q("likes.service.consul"), &short(server, 2000))
        .await
        .unwrap();
    assert_eq!(answer.targets.len(), 4);
    assert!(!answer.complete);
}

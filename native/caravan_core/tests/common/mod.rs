//! Pieces shared by the DNS integration tests: a scripted UDP nameserver.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::proto::op::Message;
use hickory_server::proto::rr::rdata::SRV;
use hickory_server::proto::rr::{Name, RData, Record};
use tokio::net::UdpSocket;

/// The SRV target every scripted answer names.
pub const TARGET: &str = "7f000002.addr.dc1.consul";

/// A UDP nameserver on `bind` (such as `"127.0.0.1:0"`) that answers the
/// `n`th DNS query it receives (counting from 0) with the datagrams
/// `reply(query, n)` gives, `delay` later. Anything that does not decode as
/// a DNS message is ignored. Runs on the current tokio runtime.
pub async fn udp_responder<F>(bind: &str, delay: Duration, reply: F) -> SocketAddr
where
    F: Fn(&Message, usize) -> Vec<Vec<u8>> + Send + 'static,
{
    let socket = UdpSocket::bind(bind).await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let mut n = 0;
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let datagrams = reply(&query, n);
            n += 1;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            for bytes in datagrams {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    addr
}

/// The answer to `query`: one SRV record, port 4001 on [`TARGET`].
pub fn srv_answer(query: &Message) -> Vec<u8> {
    srv_reply(query, query.id, &query.queries[0].name().to_ascii())
}

/// [`srv_answer`] with `id` and the question's `name` forged.
pub fn srv_reply(query: &Message, id: u16, name: &str) -> Vec<u8> {
    let name = Name::from_ascii(name).unwrap();
    let mut reply = Message::response(id, query.op_code);
    let mut question = query.queries[0].clone();
    question.set_name(name.clone());
    reply.add_query(question);
    let target = Name::from_ascii(format!("{TARGET}.")).unwrap();
    reply.add_answer(Record::from_rdata(
        name,
        0,
        RData::SRV(SRV::new(1, 1, 4001, target)),
    ));
    reply.to_vec().unwrap()
}

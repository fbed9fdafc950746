//! A lookup's first UDP query, sent from the caller's thread.
//!
//! Handing a lookup to the runtime thread costs that thread's wake-up before
//! the query can leave: about 28 µs on the 2-core benchmark VM, the largest
//! part of what a 3-record lookup took over a raw UDP exchange. So a lookup
//! that starts with a plain UDP query to its one nameserver sends that
//! datagram at once, on the caller's thread, before it is handed over:
//! a non-blocking socket, a connect and a send, none of which waits. The
//! socket is registered with the runtime from there too, and the lookup's
//! task is handed over as a [`Deferred`]: the runtime's thread is woken
//! once, by the reply itself (or by the attempt's deadline), not first by
//! the hand-over. (Waking it at the hand-over as well made two threads wake
//! at once, the runtime's and the nameserver's, on a 2-core machine whose
//! other core is busy: p99 went from 0.3 to 1 ms.) Then [`Sent::reply`]
//! reads and screens the reply.
//!
//! The reply is screened as hickory screens its own, and a little more: the
//! socket is connected, so only the nameserver's address and port reach it,
//! and a datagram with another id, one that is not a response (hickory does
//! not check that bit), or one whose question is not the one asked is
//! ignored while the wait goes on. Only a final answer is taken from this
//! attempt: NOERROR or NXDOMAIN, not truncated, every record of class IN. A
//! truncated one goes on over TCP. Anything else (another response code, a
//! reply that does not decode, a socket error, or no reply within
//! [`RESEND_AFTER`], when hickory would send its query again) is
//! [`Reply::Fallback`]: the lookup then runs through hickory, which sends
//! the query afresh and retries, classifies errors and words messages as it
//! always does, within what is left of the lookup's timeout.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, Query as DnsQuery};
use hickory_resolver::proto::op::{ResponseCode, DEFAULT_RETRY_FLOOR};
use hickory_resolver::proto::rr::{DNSClass, Name, RecordType};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::options::{LookupOptions, Nameservers, Query, Transport, EDNS_PAYLOAD};
use super::runtime::{self, Deferred};

/// How long the first attempt waits for its reply: hickory's own resend
/// interval for UDP (its floor, 333 ms), so that a lost datagram costs what
/// it costs hickory, even with `attempts: 1`.
pub const RESEND_AFTER: Duration = DEFAULT_RETRY_FLOOR;

/// A query sent, awaiting its reply until its deadline.
#[derive(Debug)]
pub struct Sent {
    socket: AsyncFd<std::net::UdpSocket>,
    id: u16,
    question: DnsQuery,
    deadline: Instant,
}

/// What the first attempt ended in.
#[derive(Debug)]
pub enum Reply {
    /// A final answer (NOERROR or NXDOMAIN), to be shaped.
    Answer(Message),
    /// The answer did not fit UDP: ask again over TCP.
    Truncated,
    /// No usable answer: run the lookup through hickory instead.
    Fallback,
}

/// The nameserver to send a first attempt to, when a lookup with `options`
/// starts with a plain UDP query to one nameserver (the case handled here).
/// With several nameservers hickory chooses among them by their record, and
/// `/etc/resolv.conf` is read on the runtime, not on the caller's thread.
pub fn server(options: &LookupOptions) -> Option<SocketAddr> {
    match &options.nameservers {
        Nameservers::Explicit(list) if options.transport == Transport::Udp => match list[..] {
            [server] => Some(server),
            _ => None,
        },
        _ => None,
    }
}

/// Sends the SRV question for `query` to `server` over a new connected UDP
/// socket, without waiting, and registers the socket with the runtime. The
/// reply is awaited for `within` at most, and never longer than
/// [`RESEND_AFTER`]. `None` if it could not be sent (the lookup then goes
/// through hickory, which reports any real failure).
pub fn send(query: &Query, server: SocketAddr, within: Duration) -> Option<Sent> {
    let deadline = Instant::now() + within.min(RESEND_AFTER);
    let name = Name::from_ascii(query.fqdn()).ok()?;
    let question = DnsQuery::query(name, RecordType::SRV);
    let id = getrandom::u32().ok()? as u16;
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(question.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    message.set_edns(edns);
    let bytes = message.to_vec().ok()?;
    let socket = connected_socket(server).ok()?;
    if socket.send(&bytes).ok()? != bytes.len() {
        return None;
    }
    // Registered for reading only: a socket registered as writable too is
    // reported writable at once, which would wake the runtime's thread.
    let _runtime = runtime::handle().ok()?.enter();
    // SAFETY: the `UdpSocket` owns its descriptor, which stays open and the
    // same until the `AsyncFd` (its only owner from here) is dropped; it is
    // only ever read through `get_ref`.
    let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }.ok()?;
    Some(Sent {
        socket,
        id,
        question,
        deadline,
    })
}

/// A non-blocking UDP socket connected to `server`, so that only its
/// datagrams are received. Connecting binds it to an ephemeral port, which
/// Linux picks at random within its local port range
/// (`net.ipv4.ip_local_port_range`, 32768-60999 by default; hickory picks
/// from 1024-65535).
fn connected_socket(server: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(server),
        Type::DGRAM.nonblocking(),
        Some(Protocol::UDP),
    )?;
    socket.connect(&server.into())?;
    Ok(socket.into())
}

impl Sent {
    /// A deferred task slot woken when the reply arrives or the deadline
    /// passes, whichever is first: the lookup's task goes there.
    pub fn deferred(&self) -> Arc<Deferred> {
        let deferred = Deferred::new();
        deferred.wake_at(self.deadline);
        let waker = Waker::from(deferred.clone());
        if self
            .socket
            .poll_read_ready(&mut Context::from_waker(&waker))
            .is_ready()
        {
            waker.wake();
        }
        deferred
    }

    /// Waits for the reply until the deadline (on the runtime).
    pub async fn reply(self) -> Reply {
        let socket = self.socket;
        let wait = async {
            let mut buf = vec![0u8; usize::from(EDNS_PAYLOAD)];
            loop {
                let received = match socket.readable().await {
                    Ok(mut ready) => ready.try_io(|s| s.get_ref().recv(&mut buf)),
                    Err(_) => return Reply::Fallback,
                };
                let len = match received {
                    Ok(Ok(len)) => len,
                    Ok(Err(_)) => return Reply::Fallback,
                    // Not readable after all (the readiness was stale).
                    Err(_would_block) => continue,
                };
                if let Some(reply) = judge(&buf[..len], self.id, &self.question) {
                    return reply;
                }
            }
        };
        tokio::time::timeout_at(self.deadline.into(), wait)
            .await
            .unwrap_or(Reply::Fallback)
    }
}

/// What a datagram from the nameserver means for the query `id` asking
/// `question`; `None` for one to ignore (not a reply to it).
fn judge(datagram: &[u8], id: u16, question: &DnsQuery) -> Option<Reply> {
    // The id first, before any decoding (as hickory does).
    if datagram.get(..2)? != id.to_be_bytes() {
        return None;
    }
    let Ok(message) = Message::from_vec(datagram) else {
        return Some(Reply::Fallback);
    };
    if message.metadata.message_type != MessageType::Response
        || message.queries.len() != 1
        || message.queries[0] != *question
    {
        return None;
    }
    // The response code before the truncation, as hickory reads them.
    let final_code = matches!(
        message.metadata.response_code,
        ResponseCode::NoError | ResponseCode::NXDomain
    );
    if !final_code {
        return Some(Reply::Fallback);
    }
    if message.metadata.truncation {
        return Some(Reply::Truncated);
    }
    let all_in = message
        .answers
        .iter()
        .chain(&message.authorities)
        .chain(&message.additionals)
        .all(|record| record.dns_class == DNSClass::IN);
    Some(if all_in {
        Reply::Answer(message)
    } else {
        Reply::Fallback
    })
}

//! One query to one nameserver, over UDP or TCP, and its reply screened.
//!
//! hickory's message codec builds and reads the messages; the sockets are
//! tokio's, used plainly, so that a lookup controls what its options
//! promise: one datagram per attempt, a reply to an earlier attempt still
//! taken, a closed UDP port seen at once, and the transport and size of
//! every answer known.
//!
//! The UDP socket is connected to the nameserver, so only its datagrams
//! reach it, and the ICMP "port unreachable" a closed port sends back comes
//! out as `ConnectionRefused` on the next read. A reply is taken only if its
//! id and question are the query's and it is a response: anything else
//! (another query's reply, a forgery) is ignored and the wait goes on. A
//! UDP reply with the right id and TC set, or longer than the payload
//! advertised, is [`Failure::Truncated`] before any decoding (such replies
//! are often cut mid-record). A reply with the right id that does not
//! decode, or that holds a record of a class other than IN, is malformed.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as DnsQuery};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::options::{Transport, COMPLETE_BELOW, EDNS_PAYLOAD};

/// The TC bit, in the third byte of a DNS header.
const TC: u8 = 0x02;

/// A reply that passed screening, with how it came.
#[derive(Debug)]
pub struct Received {
    pub message: Message,
    pub over: Transport,
    /// Its length on the wire, in bytes.
    pub size: usize,
}

impl Received {
    /// True when the reply cannot have been trimmed: it came over TCP, or
    /// over UDP from a server that honoured EDNS, with room left for two
    /// more of its largest records (an SRV with the ADDITIONAL records of
    /// its target: what Consul trims as one) and never closer than
    /// [`COMPLETE_BELOW`]. Without EDNS a server may trim to 512 bytes and,
    /// as Consul does, to 3 records, so such an answer is never known whole.
    pub fn complete(&self) -> bool {
        let room = usize::from(EDNS_PAYLOAD) - COMPLETE_BELOW;
        match self.over {
            Transport::Tcp => true,
            Transport::Udp => {
                self.message.edns.is_some()
                    && self.size + room.max(2 * self.largest_record()) <= usize::from(EDNS_PAYLOAD)
            }
        }
    }

    /// The uncompressed length of the largest SRV record with the ADDITIONAL
    /// records named after its target.
    fn largest_record(&self) -> usize {
        let len = |r: &Record| r.to_bytes().map_or(usize::from(u16::MAX), |b| b.len());
        self.message
            .answers
            .iter()
            .map(|srv| {
                let extra = match &srv.data {
                    RData::SRV(data) => self
                        .message
                        .additionals
                        .iter()
                        .filter(|r| r.name == data.target)
                        .map(len)
                        .sum(),
                    _ => 0,
                };
                len(srv) + extra
            })
            .max()
            .unwrap_or(0)
    }
}

/// Why an exchange ended without a reply.
#[derive(Debug)]
pub enum Failure {
    /// No socket could be made here (out of file descriptors, say).
    Local(io::Error),
    /// The socket failed: connection refused, reset, closed, no route.
    Io(io::Error),
    /// A UDP reply that says, or shows, that the answer did not fit.
    Truncated,
    /// A reply to this query that cannot be used.
    Malformed(String),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

/// A query ready to send: its id, its question and its bytes.
pub struct Outgoing {
    id: u16,
    question: DnsQuery,
    bytes: Vec<u8>,
}

impl Outgoing {
    /// The query for `name` and `record_type`, recursion desired, with EDNS
    /// advertising [`EDNS_PAYLOAD`], under a fresh random id.
    pub fn new(name: &Name, record_type: RecordType) -> io::Result<Self> {
        let id = getrandom::u32().map_err(io::Error::other)? as u16;
        let question = DnsQuery::query(name.clone(), record_type);
        let mut message = Message::new(id, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(question.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        message.set_edns(edns);
        let bytes = message.to_vec().map_err(io::Error::other)?;
        Ok(Outgoing {
            id,
            question,
            bytes,
        })
    }

    /// Sends the query in one datagram and waits for its reply.
    pub async fn udp(&self, server: SocketAddr) -> Result<Received, Failure> {
        let any: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(any).await.map_err(Failure::Local)?;
        socket.connect(server).await?;
        socket.send(&self.bytes).await?;
        // One byte more than the payload, to see a server that ignores it.
        let mut buf = vec![0u8; usize::from(EDNS_PAYLOAD) + 1];
        loop {
            let len = socket.recv(&mut buf).await?;
            let ours = buf[..len].starts_with(&self.id.to_be_bytes());
            if ours && (len > usize::from(EDNS_PAYLOAD) || len > 2 && buf[2] & TC != 0) {
                return Err(Failure::Truncated);
            }
            if let Some(reply) = self.screen(&buf[..len], Transport::Udp)? {
                return Ok(reply);
            }
        }
    }

    /// Sends the query over a new TCP connection and waits for its reply.
    pub async fn tcp(&self, server: SocketAddr) -> Result<Received, Failure> {
        let mut stream = TcpStream::connect(server).await?;
        let mut framed = Vec::with_capacity(self.bytes.len() + 2);
        framed.extend_from_slice(&(self.bytes.len() as u16).to_be_bytes());
        framed.extend_from_slice(&self.bytes);
        stream.write_all(&framed).await?;
        loop {
            let len = stream.read_u16().await?;
            let mut buf = vec![0u8; usize::from(len)];
            stream.read_exact(&mut buf).await?;
            if let Some(reply) = self.screen(&buf, Transport::Tcp)? {
                return Ok(reply);
            }
        }
    }

    /// The reply in `bytes`, if it is one to this query.
    fn screen(&self, bytes: &[u8], over: Transport) -> Result<Option<Received>, Failure> {
        // The id first, before any decoding.
        if bytes.get(..2) != Some(&self.id.to_be_bytes()[..]) {
            return Ok(None);
        }
        let message = Message::from_vec(bytes)
            .map_err(|e| Failure::Malformed(format!("it could not be decoded ({e})")))?;
        if message.metadata.message_type != MessageType::Response
            || message.queries.len() != 1
            || message.queries[0] != self.question
        {
            return Ok(None);
        }
        if message.all_sections().any(|r| r.dns_class != DNSClass::IN) {
            return Err(Failure::Malformed(
                "it holds a record of a class other than IN".into(),
            ));
        }
        Ok(Some(Received {
            message,
            over,
            size: bytes.len(),
        }))
    }
}

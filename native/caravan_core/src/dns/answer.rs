//! Raw SRV records in, the peers to connect to out.
//!
//! [`shape`] is where a DNS answer becomes a list of targets:
//!
//! 1. each target is lowercased and its trailing dot dropped; a target of
//!    `.` means "no service here" (RFC 2782) and is skipped;
//! 2. a target that is not an RFC 1123 hostname, or a port of 0, is
//!    rejected and counted (an example is kept for the log), never passed on;
//! 3. targets are ordered by priority (lowest first), weight (highest first),
//!    host and port, and a host:port seen twice is kept once (its best
//!    record);
//! 4. at most `max_records` are kept; the rest are counted;
//! 5. each target gets its addresses from the ADDITIONAL section (glue)
//!    and, for Consul's `<hex>.addr.<dc>.consul` names, from the name itself;
//! 6. the answer is `complete` if nothing was dropped at step 4 (the lookup
//!    then adds what the transport says).
//!
//! The same input always gives the same output, so two polls of an
//! unchanged service compare equal.
//!
//! [`shape_message`] is the same step one level up: a decoded DNS message in
//! (SRV records from its ANSWER section, A/AAAA glue from its ADDITIONAL
//! section, every other record type ignored), the shaped answer out. The
//! lookup uses it, and so does the `dns_answer` fuzz target.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use hickory_proto::op::Message;
use hickory_proto::rr::RData;

use super::error::quoted;
use super::hostname::is_valid_hostname;
use crate::consul::decode_addr_host;

/// An SRV record as received: the target is the name's text form (escaped
/// where it holds bytes a hostname cannot, so such names fail validation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// An A or AAAA record from the ADDITIONAL section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glue {
    pub name: String,
    pub address: IpAddr,
}

/// One peer: where to connect, and the addresses known for its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// An RFC 1123 hostname: lowercase, no trailing dot.
    pub host: String,
    /// Sorted (IPv4 before IPv6), without duplicates. Empty when neither
    /// glue nor the name gave one and addresses were not resolved.
    pub addresses: Vec<IpAddr>,
    /// True when its addresses were looked up and the lookup failed (not
    /// NXDOMAIN or "no records": SERVFAIL, REFUSED, a timeout...): it may
    /// well have an address, so it is neither usable nor evidence that the
    /// instance is gone.
    pub unresolved: bool,
}

/// The shaped answer, with counts of what was left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    pub targets: Vec<Target>,
    /// Records whose target is not an RFC 1123 hostname or whose port is 0.
    pub rejected: usize,
    /// The first rejected target, quoted and cut, for the log.
    pub rejected_example: Option<String>,
    /// Valid records beyond `max_records`, dropped.
    pub over_limit: usize,
    /// Targets marked `unresolved`.
    pub unresolved: usize,
    /// The first of their lookup errors, for the log.
    pub unresolved_example: Option<String>,
    /// True when the targets are every instance the server has: the answer
    /// came over TCP, or over UDP well below the payload size the query
    /// advertised (see `exchange::Received::complete`), and none was dropped
    /// beyond `max_records`. A UDP answer near the limit may have been
    /// trimmed without saying so, as Consul does.
    pub complete: bool,
}

impl Answer {
    /// No instances, known to be complete.
    pub fn empty() -> Self {
        Answer {
            complete: true,
            ..Answer::default()
        }
    }
}

/// Shapes raw records into targets (see the module documentation).
pub fn shape(
    records: impl IntoIterator<Item = SrvRecord>,
    glue: impl IntoIterator<Item = Glue>,
    max_records: usize,
) -> Answer {
    let mut answer = Answer::default();
    for record in records {
        let trimmed = without_root(&record.target).len();
        if trimmed == 0 {
            continue;
        }
        // The rule is case-blind, so the check runs before lowercasing, and
        // a rejected target is quoted as it came.
        if record.port == 0 || !is_valid_hostname(&record.target[..trimmed]) {
            answer.rejected += 1;
            answer
                .rejected_example
                .get_or_insert_with(|| format!("{} port {}", quoted(&record.target), record.port));
            continue;
        }
        answer.targets.push(Target {
            priority: record.priority,
            weight: record.weight,
            port: record.port,
            host: normalize(record.target),
            addresses: Vec::new(),
            unresolved: false,
        });
    }

    answer.targets.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then(b.weight.cmp(&a.weight))
            .then_with(|| a.host.cmp(&b.host))
            .then(a.port.cmp(&b.port))
    });
    // Keep the first (best) record of each host:port.
    let mut seen = HashSet::new();
    answer
        .targets
        .retain(|t| seen.insert((t.host.clone(), t.port)));
    answer.over_limit = answer.targets.len().saturating_sub(max_records);
    answer.targets.truncate(max_records);
    // Complete as far as shaping goes; the lookup adds what the transport says.
    answer.complete = answer.over_limit == 0;

    let mut by_host: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for g in glue.into_iter().take(max_records.saturating_mul(2)) {
        by_host
            .entry(normalize(g.name))
            .or_default()
            .push(g.address);
    }
    for target in &mut answer.targets {
        let mut addresses = by_host.get(&target.host).cloned().unwrap_or_default();
        addresses.extend(decode_addr_host(&target.host));
        set_addresses(target, addresses);
    }
    answer
}

/// Shapes a decoded DNS message: the SRV records of its ANSWER section, with
/// the A and AAAA records of its ADDITIONAL section as glue. Records of any
/// other type (an A, TXT or CNAME where an SRV was asked for) are ignored.
pub fn shape_message(message: &Message, max_records: usize) -> Answer {
    let records = message.answers.iter().filter_map(|r| match &r.data {
        RData::SRV(srv) => Some(SrvRecord {
            priority: srv.priority,
            weight: srv.weight,
            port: srv.port,
            // hickory's text escapes bytes a hostname cannot hold, so such
            // a name fails validation.
            target: srv.target.to_ascii(),
        }),
        _ => None,
    });
    let glue = message.additionals.iter().filter_map(|r| {
        address_of(&r.data).map(|address| Glue {
            name: r.name.to_ascii(),
            address,
        })
    });
    shape(records, glue, max_records)
}

/// The address an A or AAAA record holds; `None` for any other record.
pub fn address_of(data: &RData) -> Option<IpAddr> {
    match data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
        _ => None,
    }
}

/// Replaces a target's addresses with `addresses`, sorted and deduplicated.
pub fn set_addresses(target: &mut Target, mut addresses: Vec<IpAddr>) {
    addresses.sort();
    addresses.dedup();
    target.addresses = addresses;
}

/// `name` without the root's trailing dot.
fn without_root(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// `name` lowercase and without its trailing dot, reusing its buffer.
fn normalize(mut name: String) -> String {
    name.truncate(without_root(&name).len());
    name.make_ascii_lowercase();
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    fn glue(name: &str, ip: &str) -> Glue {
        Glue {
            name: name.into(),
            address: ip.parse().unwrap(),
        }
    }

    fn hosts(answer: &Answer) -> Vec<(u16, &str)> {
        answer
            .targets
            .iter()
            .map(|t| (t.port, t.host.as_str()))
            .collect()
    }

    #[test]
    fn lowercases_strips_the_dot_and_orders() {
        let answer = shape(
            [
                srv(1, 1, 4002, "B.node.dc1.consul."),
                srv(2, 9, 4000, "a.node.dc1.consul."),
                srv(1, 5, 4003, "c.node.dc1.consul."),
                srv(1, 1, 4001, "a.node.dc1.consul."),
            ],
            [],
            1024,
        );
        assert_eq!(
            hosts(&answer),
            [
                (4003, "c.node.dc1.consul"),
                (4001, "a.node.dc1.consul"),
                (4002, "b.node.dc1.consul"),
                (4000, "a.node.dc1.consul"),
            ]
        );
        assert_eq!(answer.rejected, 0);
    }

    #[test]
    fn a_host_port_seen_twice_keeps_its_best_record() {
        let answer = shape(
            [
                srv(5, 1, 4001, "a.consul."),
                srv(1, 1, 4001, "A.consul"),
                srv(1, 1, 4001, "a.consul."),
                srv(1, 1, 4002, "a.consul."),
            ],
            [],
            1024,
        );
        assert_eq!(hosts(&answer), [(4001, "a.consul"), (4002, "a.consul")]);
        assert_eq!(answer.targets[0].priority, 1);
    }

    #[test]
    fn glue_and_addr_names_give_addresses() {
        let answer = shape(
            [
                srv(1, 1, 4001, "0a000105.addr.dc1.consul."),
                srv(1, 1, 4002, "node1.node.dc1.consul."),
                srv(1, 1, 4003, "elsewhere.example."),
            ],
            [
                glue("0A000105.addr.dc1.consul.", "10.0.1.5"),
                glue("node1.node.dc1.consul.", "2001:db8::1"),
                glue("node1.node.dc1.consul.", "10.0.2.1"),
                glue("node1.node.dc1.consul.", "10.0.2.1"),
                glue("unrelated.consul.", "10.9.9.9"),
            ],
            1024,
        );
        let addrs: Vec<Vec<String>> = answer
            .targets
            .iter()
            .map(|t| t.addresses.iter().map(|a| a.to_string()).collect())
            .collect();
        assert_eq!(
            addrs,
            [
                vec!["10.0.1.5"],
                Vec::<&str>::new(),
                vec!["10.0.2.1", "2001:db8::1"],
            ]
        );
    }

    #[test]
    fn addr_names_decode_without_glue() {
        let answer = shape(
            [srv(
                1,
                1,
                4001,
                "20010db8000000000000000000000002.addr.dc1.consul.",
            )],
            [],
            1024,
        );
        assert_eq!(
            answer.targets[0].addresses,
            ["2001:db8::2".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn invalid_targets_and_port_zero_are_rejected_and_counted() {
        let answer = shape(
            [
                srv(1, 1, 4001, "bad_name.consul."),
                srv(1, 1, 4002, "ok.consul."),
                srv(1, 1, 0, "ok.consul."),
                srv(1, 1, 4003, "with\\032space.consul."),
                srv(1, 1, 4004, &format!("{}.consul.", "x".repeat(64))),
                srv(1, 1, 4005, "."),
            ],
            [],
            1024,
        );
        assert_eq!(hosts(&answer), [(4002, "ok.consul")]);
        assert_eq!(answer.rejected, 4);
        assert_eq!(
            answer.rejected_example.as_deref(),
            Some("\"bad_name.consul.\" port 4001")
        );
    }

    #[test]
    fn max_records_keeps_the_first_in_order_and_counts_the_rest() {
        let records = (0..10).map(|i| srv(1, 1, 4000 + i, &format!("n{i}.consul.")));
        let answer = shape(records, [], 3);
        assert_eq!(
            hosts(&answer),
            [
                (4000, "n0.consul"),
                (4001, "n1.consul"),
                (4002, "n2.consul")
            ]
        );
        assert_eq!(answer.over_limit, 7);
    }

    #[test]
    fn names_from_a_message_read_as_their_text_and_bad_ones_stay_rejected() {
        use hickory_proto::rr::rdata::{A, SRV};
        use hickory_proto::rr::{Name, Record};
        let name = |text: &str| Name::from_ascii(text).unwrap();
        let service = name("likes.service.consul.");
        let mut message = Message::query();
        for (port, target) in [
            (4001, "Node1.NODE.dc1.consul."),
            (4002, "bad_host.node.dc1.consul."),
            (4003, "."),
        ] {
            message.add_answer(Record::from_rdata(
                service.clone(),
                0,
                RData::SRV(SRV::new(1, 1, port, name(target))),
            ));
        }
        message.add_additional(Record::from_rdata(
            name("NODE1.node.DC1.consul."),
            0,
            RData::A(A::new(10, 0, 0, 1)),
        ));
        let answer = shape_message(&message, 10);
        assert_eq!(hosts(&answer), [(4001, "node1.node.dc1.consul")]);
        assert_eq!(
            answer.targets[0].addresses,
            ["10.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(answer.rejected, 1);
        assert!(
            answer
                .rejected_example
                .as_deref()
                .unwrap()
                .contains("bad_host"),
            "{answer:?}"
        );
    }
}

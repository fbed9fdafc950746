//! Properties of nameserver parsing and answer shaping, over generated input.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use caravan_core::dns::answer::{shape, Glue, SrvRecord};
use caravan_core::dns::hostname::is_valid_hostname;
use caravan_core::dns::nameserver::{self, Port};
use proptest::prelude::*;

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
}

fn hostname() -> impl Strategy<Value = String> {
    prop::collection::vec(label(), 1..5).prop_map(|labels| labels.join("."))
}

/// Targets as they may arrive: mostly good, some hostile.
fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => hostname().prop_map(|h| format!("{h}.")),
        1 => hostname().prop_map(|h| h.to_uppercase()),
        1 => "[ -~]{0,80}",
        1 => any::<String>(),
        1 => Just(".".to_string()),
    ]
}

fn record() -> impl Strategy<Value = SrvRecord> {
    (0u16..4, 0u16..4, 0u16..6, target()).prop_map(|(priority, weight, port, target)| SrvRecord {
        priority,
        weight,
        port,
        target,
    })
}

proptest! {
    #[test]
    fn every_socket_address_round_trips_through_its_text(addr in any::<SocketAddr>()) {
        prop_assume!(addr.port() != 0);
        let plain = SocketAddr::new(addr.ip(), addr.port());
        prop_assert_eq!(nameserver::parse(&plain.to_string()), Ok(plain));
        let host = plain.ip().to_string();
        prop_assert_eq!(
            nameserver::from_parts(&host, Port::Text(&plain.port().to_string())),
            Ok(plain)
        );
    }

    #[test]
    fn parsing_never_panics_and_errors_have_a_reason(text in any::<String>()) {
        if let Err(e) = nameserver::parse(&text) {
            prop_assert!(!e.reason().is_empty());
            prop_assert!(e.to_string().len() < 400);
        }
    }

    #[test]
    fn accepted_hostnames_are_safe_atom_material(text in any::<String>()) {
        if is_valid_hostname(&text) {
            prop_assert!(text.len() <= 253);
            prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
        }
    }

    #[test]
    fn generated_hostnames_are_accepted(host in hostname()) {
        prop_assert!(is_valid_hostname(&host));
    }

    #[test]
    fn shaping_is_ordered_unique_valid_bounded_and_accounted(
        records in prop::collection::vec(record(), 0..60),
        max in 1usize..40,
    ) {
        let answer = shape(records.clone(), Vec::<Glue>::new(), max);
        prop_assert!(answer.targets.len() <= max);
        for t in &answer.targets {
            prop_assert!(is_valid_hostname(&t.host));
            prop_assert_eq!(&t.host, &t.host.to_ascii_lowercase());
            prop_assert!(t.port > 0);
        }
        for pair in answer.targets.windows(2) {
            let key = |t: &caravan_core::dns::Target| (t.priority, std::cmp::Reverse(t.weight), t.host.clone(), t.port);
            prop_assert!(key(&pair[0]) < key(&pair[1]));
        }
        let unique: HashSet<_> = answer.targets.iter().map(|t| (&t.host, t.port)).collect();
        prop_assert_eq!(unique.len(), answer.targets.len());

        // Every record is kept, rejected, a duplicate, over the limit, or ".".
        let root = records.iter().filter(|r| r.target == "." || r.target.is_empty()).count();
        let distinct_valid: HashSet<_> = records
            .iter()
            .filter_map(|r| {
                let host = r.target.strip_suffix('.').unwrap_or(&r.target).to_ascii_lowercase();
                (r.port > 0 && is_valid_hostname(&host)).then_some((host, r.port))
            })
            .collect();
        prop_assert_eq!(answer.targets.len() + answer.over_limit, distinct_valid.len());
        prop_assert_eq!(
            answer.rejected,
            records.len() - root - records.iter().filter(|r| {
                let host = r.target.strip_suffix('.').unwrap_or(&r.target).to_ascii_lowercase();
                r.port > 0 && is_valid_hostname(&host)
            }).count()
        );
    }

    #[test]
    fn shaping_does_not_depend_on_record_order(
        records in prop::collection::vec(record(), 0..30),
        seed in any::<u64>(),
    ) {
        let mut shuffled = records.clone();
        // A cheap deterministic shuffle.
        let n = shuffled.len();
        for i in 0..n {
            let j = (seed.wrapping_mul(i as u64 + 1).wrapping_add(7) % n as u64) as usize;
            shuffled.swap(i, j);
        }
        let a = shape(records, Vec::<Glue>::new(), 1024);
        let b = shape(shuffled, Vec::<Glue>::new(), 1024);
        prop_assert_eq!(a.targets, b.targets);
        prop_assert_eq!(a.rejected, b.rejected);
    }

    #[test]
    fn glue_only_reaches_its_own_target(
        hosts in prop::collection::vec(hostname(), 1..10),
        ips in prop::collection::vec(any::<IpAddr>(), 1..10),
    ) {
        let records: Vec<SrvRecord> = hosts.iter().enumerate().map(|(i, h)| SrvRecord {
            priority: 1, weight: 1, port: 4000 + i as u16, target: format!("{h}."),
        }).collect();
        let glue: Vec<Glue> = ips.iter().zip(hosts.iter().cycle()).map(|(ip, h)| Glue {
            name: format!("{}.", h.to_uppercase()), address: *ip,
        }).collect();
        let answer = shape(records, glue.clone(), 1024);
        for t in &answer.targets {
            for addr in &t.addresses {
                let glued = glue.iter().any(|g| g.address == *addr && g.name.trim_end_matches('.').eq_ignore_ascii_case(&t.host));
                let decoded = caravan_core::consul::decode_addr_host(&t.host) == Some(*addr);
                prop_assert!(glued || decoded);
            }
            let mut sorted = t.addresses.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(&sorted, &t.addresses);
        }
    }
}

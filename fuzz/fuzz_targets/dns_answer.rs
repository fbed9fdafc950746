//! Arbitrary bytes as a DNS response: decoded by hickory-proto (as the
//! resolver does), then shaped by Caravan into the targets it would connect to.
#![no_main]

use std::collections::HashSet;

use caravan_core::dns::answer::shape_message;
use caravan_core::dns::hostname::is_valid_hostname;
use caravan_core::node_name;
use caravan_core::peer_name::{self, Host};
use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::from_vec(data) else {
        return;
    };
    // A small cap, from the message id, so that truncation is exercised too.
    let max_records = usize::from(message.metadata.id % 8);
    for max in [max_records, 1024] {
        let answer = shape_message(&message, max);
        // Deterministic: the same message shapes the same way.
        assert_eq!(answer, shape_message(&message, max));
        assert!(answer.targets.len() <= max);
        let srv_count = message
            .answers
            .iter()
            .filter(|r| matches!(r.data, hickory_proto::rr::RData::SRV(_)))
            .count();
        assert!(answer.targets.len() + answer.rejected + answer.over_limit <= srv_count);
        assert_eq!(answer.rejected > 0, answer.rejected_example.is_some());
        let mut seen = HashSet::new();
        for t in &answer.targets {
            // Only RFC 1123 hostnames and real ports get through, once each.
            assert!(is_valid_hostname(&t.host), "{:?}", t.host);
            assert_eq!(t.host, t.host.to_ascii_lowercase());
            assert_ne!(t.port, 0);
            assert!(seen.insert((t.host.clone(), t.port)));
            // Every target makes a node name carrying its port, unless the
            // whole name would pass 255 characters (a long host), and then
            // it is refused with an error, not a panic.
            match peer_name::peer_name("app", t.port, Host::Name(&t.host)) {
                Ok(name) => {
                    assert!(name.len() <= node_name::MAX_NAME_CHARS);
                    assert_eq!(node_name::dist_port_str(&name), Ok(t.port));
                }
                Err(_) => assert!(t.host.len() + "app-65535@".len() > node_name::MAX_NAME_CHARS),
            }
            assert!(t.addresses.windows(2).all(|w| w[0] < w[1]));
        }
    }
});

//! Property tests for the node-name rule.

use caravan_core::node_name::{dist_port, dist_port_str, DEFAULT_PORT};
use proptest::prelude::*;

/// A name part that does not end in a digit, so the port is exactly what follows.
fn prefix() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_.-]{0,30}[a-z_-]|[a-z]"
}

fn host() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[a-z0-9][a-z0-9.-]{0,40}")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn a_valid_name_with_a_port_round_trips(
        prefix in prefix(), dash in any::<bool>(), port in 1u16..=65535, host in host()
    ) {
        let mut name = prefix;
        if dash { name.push('-'); }
        name.push_str(&port.to_string());
        if let Some(h) = host { name.push('@'); name.push_str(&h); }
        prop_assert_eq!(dist_port_str(&name), Ok(port));
    }

    #[test]
    fn a_name_without_trailing_digits_gets_the_default(prefix in prefix(), host in host()) {
        let name = match host { Some(h) => format!("{prefix}@{h}"), None => prefix };
        prop_assert_eq!(dist_port_str(&name), Ok(DEFAULT_PORT));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = dist_port(&bytes).map_err(|e| e.to_string());
    }

    #[test]
    fn arbitrary_text_never_panics_and_errors_explain_themselves(s in "\\PC{0,300}") {
        if let Err(e) = dist_port_str(&s) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn too_many_digits_is_never_a_port(prefix in prefix(), digits in "[1-9][0-9]{5,40}") {
        let name = format!("{prefix}{digits}@h");
        prop_assert_eq!(dist_port_str(&name).unwrap_err().reason(), "not_a_port");
    }
}

mod peer_names {
    use caravan_core::node_name::dist_port_str;
    use caravan_core::peer_name::{peer_name, Host};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn every_built_name_carries_its_port(
            sname in "[a-z][a-z0-9_-]{0,40}",
            port in 1u16..=65535,
            host in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z0-9]{1,10}){0,4}",
        ) {
            let name = peer_name(&sname, port, Host::Name(&host)).unwrap();
            prop_assert_eq!(dist_port_str(&name), Ok(port));
        }

        #[test]
        fn every_address_name_carries_its_port(
            port in 1u16..=65535, ip in any::<std::net::IpAddr>()
        ) {
            let name = peer_name("app", port, Host::Ip(ip)).unwrap();
            prop_assert_eq!(dist_port_str(&name), Ok(port));
        }

        #[test]
        fn arbitrary_hosts_never_panic(host in "\\PC{0,300}", sname in "\\PC{0,80}") {
            let _ = peer_name(&sname, 4370, Host::Name(&host));
        }
    }
}

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
// --- helper names (remote shells, rpc nodes) -------------------------------

use caravan_core::node_name::{helper_target, role, role_str, Role, MAX_HELPER_ID};

fn helper_prefix() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("rem-"), Just("rpc-"), Just("remsh"), Just("remsh-")]
}

fn helper_id() -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[0-9a-fA-F]{{1,{MAX_HELPER_ID}}}")).unwrap()
}

/// Target names as releases make them: RELEASE_NODE's part before `@`.
fn target() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,30}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn every_release_helper_name_is_a_helper_of_its_target(
        prefix in helper_prefix(), id in helper_id(), target in target(), host in host()
    ) {
        let mut name = format!("{prefix}{id}-{target}");
        if let Some(h) = host { name.push('@'); name.push_str(&h); }
        prop_assert_eq!(role_str(&name), Ok(Role::Helper { target: &target }));
    }

    #[test]
    fn names_without_a_helper_prefix_are_nodes_on_their_name_port(
        prefix in prefix(), dash in any::<bool>(), port in 1u16..=65535, host in host()
    ) {
        prop_assume!(!prefix.starts_with("rem") && !prefix.starts_with("rpc-"));
        let mut name = prefix;
        if dash { name.push('-'); }
        name.push_str(&port.to_string());
        if let Some(h) = host { name.push('@'); name.push_str(&h); }
        prop_assert_eq!(role_str(&name), Ok(Role::Node { port }));
    }

    #[test]
    fn a_non_hex_id_never_makes_a_helper(
        prefix in helper_prefix(), id in "[g-zG-Z_][a-zA-Z0-9_]{0,8}", port in 1u16..=65535
    ) {
        let name = format!("{prefix}{id}-app-{port}@h");
        prop_assert_eq!(role_str(&name), Ok(Role::Node { port }));
    }

    #[test]
    fn role_agrees_with_dist_port(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        match (role(&bytes), dist_port(&bytes)) {
            (Ok(Role::Node { port }), theirs) => prop_assert_eq!(theirs, Ok(port)),
            (Ok(Role::Helper { target }), _) => prop_assert!(!target.is_empty()),
            // A name too malformed for a role is too malformed for a port.
            (Err(ours), Err(theirs)) => prop_assert_eq!(ours, theirs),
            (Err(ours), Ok(port)) => prop_assert!(false, "role failed ({ours}), port {port}"),
        }
    }

    #[test]
    fn helper_target_is_a_suffix_of_the_name(local in "\\PC{0,60}") {
        if let Some(target) = helper_target(&local) {
            prop_assert!(local.ends_with(target));
            prop_assert!(!target.is_empty());
        }
    }
}

// --- creation numbers ----------------------------------------------------

use caravan_core::creation;

proptest! {
    #[test]
    fn creations_are_never_below_four(draws in proptest::collection::vec(any::<u32>(), 1..8), last in 4u32..) {
        let mut values = draws.into_iter().chain(std::iter::once(last));
        let c = creation::from_random(|| values.next().unwrap());
        prop_assert!(c >= creation::MIN);
    }
}

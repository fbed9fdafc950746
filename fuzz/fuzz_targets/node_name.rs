//! Arbitrary bytes as node names, and as the parts of a peer name.
#![no_main]

use caravan_core::{node_name, peer_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The port rule: any input gives a port or an error, never a panic, and
    // an error always explains itself.
    if let Err(e) = node_name::dist_port(data) {
        assert!(!e.to_string().is_empty());
    }

    // Peer names: whatever the sname and host, a built name is short enough
    // to be an atom and carries exactly the port it was built with.
    if data.len() >= 2 {
        let port = u16::from_le_bytes([data[0], data[1]]);
        let rest = String::from_utf8_lossy(&data[2..]);
        let (sname, host) = rest.split_once('\u{1}').unwrap_or(("app", &rest));
        if let Ok(name) = peer_name::peer_name(sname, port, peer_name::Host::Name(host)) {
            assert!(name.chars().count() <= node_name::MAX_NAME_CHARS);
            assert_eq!(node_name::dist_port_str(&name), Ok(port));
        }
        let _ = caravan_core::consul::decode_addr_host(host);
    }
});

//! Node-name rules at the boundaries the unit tests in `node_name.rs` and
//! `peer_name.rs` do not already cover, through the public API: the last
//! value a rule accepts and the first it refuses.

use caravan_core::dns::hostname::is_valid_hostname;
use caravan_core::node_name::{self, dist_port, role, Role, MAX_HELPER_ID, MAX_NAME_CHARS};
use caravan_core::peer_name::{peer_name, Host, MAX_SNAME_CHARS};

fn reason(name: &str) -> &'static str {
    dist_port(name.as_bytes()).unwrap_err().reason()
}

#[test]
fn name_length_255_characters_not_256_in_ascii_and_multibyte() {
    for unit in ["a", "é", "日", "🦀"] {
        let fill = |n: usize| format!("{}-4001@h", unit.repeat(n - "-4001@h".len()));
        let max = fill(MAX_NAME_CHARS);
        assert_eq!(max.chars().count(), 255);
        assert_eq!(dist_port(max.as_bytes()), Ok(4001), "{unit}");
        let over = fill(MAX_NAME_CHARS + 1);
        assert_eq!(reason(&over), "too_long", "{unit}");
    }
    // 255 bytes of ASCII is the fast path; 256 multibyte bytes may still be short.
    let bytes_over_chars_under = format!("{}-1@h", "é".repeat(200));
    assert!(bytes_over_chars_under.len() > 255);
    assert_eq!(dist_port(bytes_over_chars_under.as_bytes()), Ok(1));
}

#[test]
fn port_digits_at_every_edge() {
    assert_eq!(dist_port(b"a-1@h"), Ok(1));
    assert_eq!(dist_port(b"a-9@h"), Ok(9));
    assert_eq!(dist_port(b"a-10@h"), Ok(10));
    assert_eq!(dist_port(b"a-10000@h"), Ok(10000));
    assert_eq!(dist_port(b"a-65535@h"), Ok(65535));
    assert_eq!(dist_port(b"1@h"), Ok(1));
    assert_eq!(dist_port(b"65535"), Ok(65535));
    assert_eq!(reason("a-0@h"), "not_a_port");
    assert_eq!(reason("a-65536@h"), "not_a_port");
    assert_eq!(reason("a-100000@h"), "not_a_port");
    assert_eq!(reason("a-01@h"), "leading_zero");
    assert_eq!(reason("a-065535@h"), "leading_zero");
    assert_eq!(reason("a-000000@h"), "leading_zero");
    // One non-digit ends the digits: the port is what follows it.
    assert_eq!(dist_port(b"a-6553x5@h"), Ok(5));
    assert_eq!(dist_port(b"a@h"), Ok(node_name::DEFAULT_PORT));
}

#[test]
fn at_signs_and_empty_parts() {
    assert_eq!(dist_port(b"a"), Ok(node_name::DEFAULT_PORT));
    assert_eq!(dist_port(b"a@b"), Ok(node_name::DEFAULT_PORT));
    assert_eq!(reason(""), "empty");
    assert_eq!(reason("@"), "empty_name");
    assert_eq!(reason("a@"), "empty_host");
    assert_eq!(reason("a@b@"), "many_ats");
    assert_eq!(reason("a@@b"), "many_ats");
    assert_eq!(dist_port(b"a-1@\xff").unwrap_err().reason(), "not_utf8");
}

#[test]
fn helper_ids_from_1_to_16_hex_digits() {
    let is_helper = |id: &str| {
        let name = format!("rem-{id}-app-4001@h");
        match role(name.as_bytes()) {
            Ok(Role::Helper { target }) => {
                assert_eq!(target, "app-4001");
                true
            }
            Ok(Role::Node { port }) => {
                assert_eq!(port, 4001);
                false
            }
            Err(e) => panic!("{name}: {e}"),
        }
    };
    assert!(is_helper("0"));
    assert!(is_helper(&"f".repeat(MAX_HELPER_ID)));
    assert!(!is_helper(&"f".repeat(MAX_HELPER_ID + 1)));
    assert!(!is_helper(""));
    assert!(!is_helper("g"));
}

#[test]
fn hostname_characters_at_their_edges() {
    // (Label and name lengths at their edges: peer_name.rs unit tests.)
    // Character classes at their edges: digits and '-' inside, never at a label's ends.
    assert!(is_valid_hostname("0"));
    assert!(is_valid_hostname("a-b"));
    assert!(is_valid_hostname("9-9.z"));
    for bad in [
        "-a", "a-", "a.-b", "a.b-", "a/b", "a:b", "a`b", "a{b", "a@b", "a.", "",
    ] {
        assert!(!is_valid_hostname(bad), "{bad:?}");
    }
}

#[test]
fn peer_names_of_255_characters_not_256() {
    let sname = "s".repeat(MAX_SNAME_CHARS);
    // sname + "-65535@" + host = 255.
    let host_len = MAX_NAME_CHARS - MAX_SNAME_CHARS - "-65535@".len();
    let host = |len: usize| {
        let mut labels = vec!["h".repeat(63); len / 64];
        labels.push("h".repeat(len - 64 * (len / 64)));
        labels.join(".")
    };
    let max = host(host_len);
    assert_eq!(max.len(), host_len);
    let name = peer_name(&sname, 65535, Host::Name(&max)).unwrap();
    assert_eq!(name.len(), 255);
    assert_eq!(dist_port(name.as_bytes()), Ok(65535));
    let over = host(host_len + 1);
    assert!(is_valid_hostname(&over));
    let err = peer_name(&sname, 65535, Host::Name(&over)).unwrap_err();
    assert!(err.to_string().contains("longer than 255"), "{err}");
    // The same host with a shorter port fits.
    assert!(peer_name(&sname, 6553, Host::Name(&over)).is_ok());
}

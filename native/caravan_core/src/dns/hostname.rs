//! Which names Caravan accepts: SRV targets and queries.
//!
//! An SRV target becomes part of a node name, and node names are atoms, which
//! are never garbage-collected. So a target is used only if it is an RFC 1123
//! hostname: labels of 1 to 63 letters, digits and hyphens, no hyphen at
//! either end of a label, at most 253 characters in all. Anything else (an
//! escaped byte, an underscore, a 64-character label) is rejected by the
//! caller and counted, never passed on.
//!
//! A query may also use underscores, for RFC 2782 names such as
//! `_likes._tcp.service.consul`.

/// The longest hostname, written without its trailing dot.
pub const MAX_HOSTNAME_LEN: usize = 253;

/// The longest label.
pub const MAX_LABEL_LEN: usize = 63;

/// True when `host` (no trailing dot) is an RFC 1123 hostname.
pub fn is_valid_hostname(host: &str) -> bool {
    hostname_problem(host).is_none()
}

/// What makes `host` (no trailing dot) not an RFC 1123 hostname, if anything.
pub fn hostname_problem(host: &str) -> Option<&'static str> {
    if host.is_empty() {
        return Some("it is empty");
    }
    if host.len() > MAX_HOSTNAME_LEN {
        return Some("it is longer than 253 characters");
    }
    // One pass over the labels (this runs for every record of every answer);
    // the first problem in this order of kinds is the one reported.
    let (mut empty, mut long, mut bad) = (false, false, false);
    for label in host.as_bytes().split(|&b| b == b'.') {
        if label.is_empty() {
            empty = true;
        } else if label.len() > MAX_LABEL_LEN {
            long = true;
        } else if !label_ok(label, false) {
            bad = true;
        }
    }
    if empty {
        Some("it has an empty label")
    } else if long {
        Some("a label is longer than 63 characters")
    } else if bad {
        Some(
            "a label has a character other than a letter, digit or '-', or starts or ends with '-'",
        )
    } else {
        None
    }
}

/// Checks a query name (an optional trailing dot allowed), saying what is
/// wrong with it.
pub fn check_query(query: &str) -> Result<(), String> {
    let name = query.strip_suffix('.').unwrap_or(query);
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > MAX_HOSTNAME_LEN {
        return Err(format!(
            "it has {} characters; a domain name has at most {MAX_HOSTNAME_LEN}",
            name.len()
        ));
    }
    for label in name.split('.') {
        if !label_ok(label.as_bytes(), true) {
            return Err(if label.is_empty() {
                "it has an empty label (two dots in a row, or a leading dot)".into()
            } else if label.len() > MAX_LABEL_LEN {
                format!(
                    "a label has {} characters; at most {MAX_LABEL_LEN}",
                    label.len()
                )
            } else {
                format!(
                    "label {} may hold only letters, digits, '-' and '_', and may not start or end with '-'",
                    super::error::quoted(label)
                )
            });
        }
    }
    Ok(())
}

fn label_ok(bytes: &[u8], allow_underscore: bool) -> bool {
    !bytes.is_empty()
        && bytes.len() <= MAX_LABEL_LEN
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || (allow_underscore && b == b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        for ok in [
            "node1.node.dc1.consul",
            "0a000105.addr.dc1.consul",
            "localhost",
            "a",
            "x-1.example",
            "10.0.1.5",
            "xn--bcher-kva.example",
            &format!("{}.b", "a".repeat(63)),
        ] {
            assert!(is_valid_hostname(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a.",
            "-a.b",
            "a-.b",
            "a_b.consul",
            "a b.consul",
            "a\\.b.consul",
            "a\\000.consul",
            "é.consul",
            &format!("{}.b", "a".repeat(64)),
            &vec!["abcdefg"; 32].join("."),
        ] {
            assert!(!is_valid_hostname(bad), "{bad:?}");
        }
        assert_eq!(vec!["abcdefg"; 31].join(".").len(), 247);
        assert!(is_valid_hostname(&vec!["abcdefg"; 31].join(".")));
    }

    #[test]
    fn queries() {
        assert_eq!(check_query("likes-dist.service.consul"), Ok(()));
        assert_eq!(check_query("likes-dist.service.consul."), Ok(()));
        assert_eq!(check_query("_likes._tcp.service.consul"), Ok(()));
        assert!(check_query("").unwrap_err().contains("empty"));
        assert!(check_query(".").unwrap_err().contains("empty"));
        assert!(check_query("a..b").unwrap_err().contains("empty label"));
        assert!(check_query("bad name.consul")
            .unwrap_err()
            .contains("\"bad name\""));
        assert!(check_query(&"a".repeat(300)).unwrap_err().contains("300"));
    }
}

//! Node-name rules: where a node's distribution port comes from.
//!
//! A node's port is the decimal number at the end of the part before `@`
//! (or of the whole name when there is no `@`). A dash before the number is
//! optional, so `app-4001@h` and `app4001@h` both listen on 4001. A name with
//! no trailing digits gets [`DEFAULT_PORT`].
//!
//! Leading zeros are rejected (`app-04001@h`): two spellings of one port
//! would let two differently named nodes claim the same port, and no
//! scheduler (Nomad included) ever renders a port that way.

use std::fmt;

/// The port of a node whose name carries none, as in the original library.
pub const DEFAULT_PORT: u16 = 4370;

/// Node names are atoms, and atoms hold at most 255 characters.
pub const MAX_NAME_CHARS: usize = 255;

/// Why a node name carries no usable port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "node name is empty; name the node <app>-<port>@<host>, for example \"app-4370@10.0.1.5\""
    )]
    Empty,
    /// `shown` is the input with non-ASCII bytes escaped (`\xff`), cut to 80 bytes.
    #[error("node name \"{shown}\" is not valid UTF-8 (invalid byte at offset {offset}); node names are atoms, so use UTF-8 text such as \"app-4370@host\"")]
    NotUtf8 { shown: String, offset: usize },
    #[error("node name {} has {chars} characters, but node names are atoms of at most 255 characters; shorten it", Shown(.name))]
    TooLong { name: String, chars: usize },
    #[error("node name {} has nothing before '@'; name the node <app>-<port>@<host>", Shown(.name))]
    EmptyName { name: String },
    #[error("node name {} has nothing after '@'; give a host, as in \"app-4370@10.0.1.5\", or drop the '@'", Shown(.name))]
    EmptyHost { name: String },
    #[error("node name {} has more than one '@'; a node name is <name>@<host>", Shown(.name))]
    ManyAts { name: String },
    #[error("node name {} ends in {digits}, which is not a TCP port (1..65535); end the name with the port the node listens on, as in \"app-4370@host\"", Shown(.name))]
    NotAPort { name: String, digits: String },
    #[error("node name {} ends in {digits}, which has a leading zero; write the port without it ({trimmed}), so that one port has one spelling", Shown(.name))]
    LeadingZero {
        name: String,
        digits: String,
        trimmed: String,
    },
}

impl NameError {
    /// A short, fixed tag for the rule that was broken; the NIF maps it to an
    /// atom, so it never depends on the input.
    pub fn reason(&self) -> &'static str {
        match self {
            NameError::Empty => "empty",
            NameError::NotUtf8 { .. } => "not_utf8",
            NameError::TooLong { .. } => "too_long",
            NameError::EmptyName { .. } => "empty_name",
            NameError::EmptyHost { .. } => "empty_host",
            NameError::ManyAts { .. } => "many_ats",
            NameError::NotAPort { .. } => "not_a_port",
            NameError::LeadingZero { .. } => "leading_zero",
        }
    }
}

/// Quotes a name for an error message, cutting very long input so that an
/// error about a 1 MB binary is not itself 1 MB.
struct Shown<'a>(&'a String);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KEEP: usize = 80;
        let s = self.0;
        if s.chars().count() <= KEEP {
            write!(f, "{s:?}")
        } else {
            let head: String = s.chars().take(KEEP).collect();
            write!(f, "{head:?}... ({} bytes)", s.len())
        }
    }
}

fn escape_bytes(bytes: &[u8]) -> String {
    const KEEP: usize = 80;
    let head = bytes[..bytes.len().min(KEEP)].escape_ascii().to_string();
    if bytes.len() > KEEP {
        format!("{head}... ({} bytes)", bytes.len())
    } else {
        head
    }
}

/// The distribution port a node named `name` listens on.
///
/// `name` may be a full node name (`app-4001@host`) or just the part before
/// `@` (`app-4001`), which is what OTP hands the epmd module.
pub fn dist_port(name: &[u8]) -> Result<u16, NameError> {
    let name = std::str::from_utf8(name).map_err(|e| NameError::NotUtf8 {
        shown: escape_bytes(name),
        offset: e.valid_up_to(),
    })?;
    dist_port_str(name)
}

/// [`dist_port`] for text already known to be UTF-8.
pub fn dist_port_str(name: &str) -> Result<u16, NameError> {
    let local = local_part(name)?;
    port_from_local(name, local)
}

/// The part of `name` before `@`, after checking the name's overall shape.
pub fn local_part(name: &str) -> Result<&str, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    // Byte length bounds char count from above: only count when it matters.
    if name.len() > MAX_NAME_CHARS {
        let chars = name.chars().count();
        if chars > MAX_NAME_CHARS {
            return Err(NameError::TooLong {
                name: name.to_owned(),
                chars,
            });
        }
    }
    let Some((local, host)) = name.split_once('@') else {
        return Ok(name);
    };
    if local.is_empty() {
        Err(NameError::EmptyName {
            name: name.to_owned(),
        })
    } else if host.is_empty() {
        Err(NameError::EmptyHost {
            name: name.to_owned(),
        })
    } else if host.contains('@') {
        Err(NameError::ManyAts {
            name: name.to_owned(),
        })
    } else {
        Ok(local)
    }
}

/// What a node name says about the node: a node listening on the port its
/// name carries, or a short-lived helper (remote shell, rpc) attached to
/// another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role<'a> {
    /// A node that listens on `port` and is reached there.
    Node { port: u16 },
    /// A remote shell or rpc helper named after the node it attaches to.
    /// Its name ends in its target's digits, so it must not listen on that
    /// port: it listens on an ephemeral port (or not at all) and no peer can
    /// find it by name. `target` is the target's local name (`app-4370` in
    /// `rem-1a2b-app-4370`).
    Helper { target: &'a str },
}

/// Longest random id accepted between a helper prefix and its target.
pub const MAX_HELPER_ID: usize = 16;

/// The role of the node named `name` (a full name or the part before `@`).
///
/// Helpers are the names release tooling gives the short-lived nodes it
/// starts next to a running node `<target>`:
///
/// - `rem-<id>-<target>`: `bin/app remote` (Elixir releases);
/// - `rpc-<id>-<target>`: `bin/app rpc`, `stop`, `pid`, `restart`;
/// - `remsh<id>-<target>` (also `remsh-<id>-<target>`): relx / rebar3
///   releases and older scripts.
///
/// `<id>` is 1 to [`MAX_HELPER_ID`] hexadecimal digits, which is what those
/// tools generate (Elixir: 4, relx: 8, Windows `%RANDOM%`: up to 5 decimal
/// digits), and `<target>` is not empty. Requiring a hex id keeps ordinary
/// names such as `rpc-gateway-4001` ordinary nodes.
///
/// The name's shape is checked as [`dist_port`] checks it; a helper's own
/// trailing digits are not checked, since it does not listen on them.
pub fn role(name: &[u8]) -> Result<Role<'_>, NameError> {
    let name = std::str::from_utf8(name).map_err(|e| NameError::NotUtf8 {
        shown: escape_bytes(name),
        offset: e.valid_up_to(),
    })?;
    role_str(name)
}

/// [`role`] for text already known to be UTF-8.
pub fn role_str(name: &str) -> Result<Role<'_>, NameError> {
    let local = local_part(name)?;
    match helper_target(local) {
        Some(target) => Ok(Role::Helper { target }),
        None => port_from_local(name, local).map(|port| Role::Node { port }),
    }
}

/// The target of a helper's local name, or `None` when `local` is not a
/// helper's name. See [`role`] for the shapes.
pub fn helper_target(local: &str) -> Option<&str> {
    let rest = if let Some(rest) = local.strip_prefix("rem-") {
        rest
    } else if let Some(rest) = local.strip_prefix("rpc-") {
        rest
    } else if let Some(rest) = local.strip_prefix("remsh") {
        rest.strip_prefix('-').unwrap_or(rest)
    } else {
        return None;
    };
    let (id, target) = rest.split_once('-')?;
    let id_ok =
        (1..=MAX_HELPER_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit());
    (id_ok && !target.is_empty()).then_some(target)
}

fn port_from_local(name: &str, local: &str) -> Result<u16, NameError> {
    // One pass from the end: the trailing digits, and their value while
    // there are at most five of them (so the sum cannot overflow a u32).
    let bytes = local.as_bytes();
    let mut start = bytes.len();
    let mut value: u32 = 0;
    let mut scale: u32 = 1;
    while start > 0 && bytes[start - 1].is_ascii_digit() {
        start -= 1;
        if bytes.len() - start <= 5 {
            value += u32::from(bytes[start] - b'0') * scale;
            scale *= 10;
        }
    }
    let digits = &local[start..];
    match digits.len() {
        0 => Ok(DEFAULT_PORT),
        2.. if digits.starts_with('0') => {
            let trimmed = digits.trim_start_matches('0');
            Err(NameError::LeadingZero {
                name: name.to_owned(),
                digits: digits.to_owned(),
                trimmed: if trimmed.is_empty() { "0" } else { trimmed }.to_owned(),
            })
        }
        1..=5 => match u16::try_from(value) {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(not_a_port(name, digits)),
        },
        _ => Err(not_a_port(name, digits)),
    }
}

fn not_a_port(name: &str, digits: &str) -> NameError {
    NameError::NotAPort {
        name: name.to_owned(),
        digits: digits.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str) -> Result<u16, NameError> {
        dist_port(name.as_bytes())
    }

    #[test]
    fn seed_examples() {
        assert_eq!(port("app-name3434@example.net"), Ok(3434));
        assert_eq!(port("app-name-4834@example.net"), Ok(4834));
    }

    #[test]
    fn the_dash_is_optional_and_the_host_is_ignored() {
        assert_eq!(port("likes-4001@10.0.1.5"), Ok(4001));
        assert_eq!(port("likes4001@10.0.1.5"), Ok(4001));
        assert_eq!(port("likes-4001"), Ok(4001));
        assert_eq!(port("a-1@host-9999"), Ok(1));
        assert_eq!(port("4001@h"), Ok(4001));
    }

    #[test]
    fn no_trailing_digits_gets_the_default() {
        assert_eq!(port("app@h"), Ok(DEFAULT_PORT));
        assert_eq!(port("app-@h"), Ok(DEFAULT_PORT));
        assert_eq!(port("nonode@nohost"), Ok(DEFAULT_PORT));
        assert_eq!(port("app1x@h"), Ok(DEFAULT_PORT));
        assert_eq!(port("app"), Ok(DEFAULT_PORT));
    }

    #[test]
    fn port_boundaries() {
        assert_eq!(port("a-1@h"), Ok(1));
        assert_eq!(port("a-65535@h"), Ok(65535));
        assert_eq!(port("a-0@h").unwrap_err().reason(), "not_a_port");
        assert_eq!(port("a-65536@h").unwrap_err().reason(), "not_a_port");
        assert_eq!(port("app-99999@h").unwrap_err().reason(), "not_a_port");
        assert_eq!(port("a-100000@h").unwrap_err().reason(), "not_a_port");
        let huge = "app-123456789012345678901234567890@h";
        assert_eq!(port(huge).unwrap_err().reason(), "not_a_port");
    }

    #[test]
    fn leading_zeros_are_rejected_with_the_fix() {
        let err = port("app-04001@h").unwrap_err();
        assert_eq!(err.reason(), "leading_zero");
        let msg = err.to_string();
        assert!(msg.contains("\"app-04001@h\""), "{msg}");
        assert!(msg.contains("(4001)"), "{msg}");
        assert_eq!(port("app-00@h").unwrap_err().reason(), "leading_zero");
    }

    #[test]
    fn shape_errors() {
        assert_eq!(port(""), Err(NameError::Empty));
        assert_eq!(port("@h").unwrap_err().reason(), "empty_name");
        assert_eq!(port("a-1@").unwrap_err().reason(), "empty_host");
        assert_eq!(port("a-1@b@c").unwrap_err().reason(), "many_ats");
        let err = dist_port(b"app-\xff4001@h").unwrap_err();
        assert_eq!(err.reason(), "not_utf8");
        let msg = err.to_string();
        assert!(msg.contains("offset 4"), "{msg}");
        assert!(msg.contains(r#""app-\xff4001@h""#), "{msg}");
    }

    #[test]
    fn length_is_counted_in_characters() {
        let ok = format!("{}-1@h", "é".repeat(250));
        assert_eq!(port(&ok), Ok(1));
        let long = format!("{}-1@h", "a".repeat(300));
        let err = port(&long).unwrap_err();
        assert_eq!(err.reason(), "too_long");
        assert!(err.to_string().contains("... (304 bytes)"), "{err}");
    }

    #[test]
    fn ordinary_names_are_nodes_on_their_port() {
        assert_eq!(role(b"likes-4001@10.0.1.5"), Ok(Role::Node { port: 4001 }));
        assert_eq!(role(b"likes"), Ok(Role::Node { port: DEFAULT_PORT }));
        assert_eq!(role(b"remote-4001@h"), Ok(Role::Node { port: 4001 }));
        assert_eq!(role(b"rpc-gateway-4001@h"), Ok(Role::Node { port: 4001 }));
        assert_eq!(role(b"remshop-4001@h"), Ok(Role::Node { port: 4001 }));
        assert_eq!(role(b"rem--app-4001@h"), Ok(Role::Node { port: 4001 }));
        assert_eq!(role(b"rem-1a2b-@h"), Ok(Role::Node { port: DEFAULT_PORT }));
    }

    #[test]
    fn release_helpers_are_helpers_of_their_target() {
        let helper = |target| Ok(Role::Helper { target });
        // Elixir releases: bin/app remote, bin/app rpc.
        assert_eq!(role(b"rem-1a2b-app-4370@10.0.1.5"), helper("app-4370"));
        assert_eq!(role(b"rpc-ffff-app-4370"), helper("app-4370"));
        assert_eq!(role(b"rpc-03F9-app@h"), helper("app"));
        // Windows %RANDOM% is decimal, up to 5 digits.
        assert_eq!(role(b"rem-32767-likes-4001@h"), helper("likes-4001"));
        // relx / rebar3: remsh<8 hex>-<name>.
        assert_eq!(role(b"remsh1f2e3d4c-app-4370@h"), helper("app-4370"));
        assert_eq!(role(b"remsh-1f2e-app-4370@h"), helper("app-4370"));
    }

    #[test]
    fn a_helper_does_not_need_a_valid_port_of_its_own() {
        let target = "app-99999";
        assert_eq!(role(b"rem-1a2b-app-99999@h"), Ok(Role::Helper { target }));
        assert_eq!(
            role(b"rem-1a2b-app-99999@").unwrap_err().reason(),
            "empty_host"
        );
    }

    #[test]
    fn helper_ids_are_short_hex() {
        let long = format!("rem-{}-app-4001@h", "a".repeat(MAX_HELPER_ID + 1));
        assert_eq!(role(long.as_bytes()), Ok(Role::Node { port: 4001 }));
        let max = format!("rem-{}-app-4001@h", "a".repeat(MAX_HELPER_ID));
        let target = "app-4001";
        assert_eq!(role(max.as_bytes()), Ok(Role::Helper { target }));
        assert_eq!(role(b"rem-xyz-app-4001@h"), Ok(Role::Node { port: 4001 }));
    }

    #[test]
    fn errors_name_the_input_rule_and_fix() {
        let msg = port("app-99999@h").unwrap_err().to_string();
        assert_eq!(
            msg,
            "node name \"app-99999@h\" ends in 99999, which is not a TCP port (1..65535); \
             end the name with the port the node listens on, as in \"app-4370@host\""
        );
    }
}

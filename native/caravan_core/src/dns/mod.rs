//! DNS SRV discovery: who serves `likes-dist.service.consul`?
//!
//! - [`runtime`]: the one tokio runtime Caravan owns (one thread, started on
//!   first use).
//! - [`nameserver`]: nameserver addresses as users write them.
//! - [`options`]: lookup options, their defaults and limits; the query.
//! - [`exchange`]: one query to one nameserver over UDP or TCP (hickory's
//!   message codec on tokio's sockets), its reply screened.
//! - [`mod@lookup`]: attempts, the TCP retry, address follow-ups, turns per
//!   set of nameservers, cancellation, and answering exactly once.
//! - [`answer`]: raw SRV records and glue in, ordered, validated targets out.
//! - [`hostname`]: which names are accepted (RFC 1123).
//! - [`error`]: every failure, each with a fixed reason tag and a message.
//!
//! "No instances" (NXDOMAIN, or no SRV records) is an empty [`Answer`];
//! every failure is a [`LookupError`], so a caller never mistakes a DNS
//! outage for an empty service.

pub mod answer;
pub mod error;
pub mod exchange;
pub mod hostname;
pub mod lookup;
pub mod nameserver;
pub mod options;
pub mod runtime;

pub use answer::{Answer, Target};
pub use error::{LookupError, NameserverError, OptionError};
pub use lookup::{lookup, spawn_lookup, Lookup};
pub use options::{LookupOptions, Nameservers, Query, Transport};

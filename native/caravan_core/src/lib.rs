//! Caravan's pure logic, free of any BEAM type so `cargo test` exercises it
//! directly.
//!
//! - [`node_name`]: where a node's distribution port comes from (its name).
//! - [`consul`]: Consul's `<hex-ip>.addr.<dc>.consul` hostnames, decoded locally.
//! - [`peer_name`]: where DNS answers become node names (`<sname>-<port>@<host>`).
//! - [`creation`]: random 32-bit creation numbers for epmd-less nodes.
//! - [`dns`]: SRV discovery on Caravan's own tokio runtime, answers shaped
//!   into validated targets.

pub mod consul;
pub mod creation;
pub mod dns;
pub mod node_name;
pub mod peer_name;

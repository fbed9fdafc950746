//! Caravan's pure logic, free of any BEAM type so `cargo test` exercises it
//! directly.
//!
//! - [`node_name`]: where a node's distribution port comes from (its name).
//! - [`consul`]: Consul's `<hex-ip>.addr.<dc>.consul` hostnames, decoded locally.
//! - [`dns`]: SRV discovery on Caravan's own tokio runtime, answers shaped
//!   into validated targets.

pub mod consul;
pub mod dns;
pub mod node_name;

//! Caravan's pure logic, free of any BEAM type so `cargo test` exercises it
//! directly.
//!
//! - [`node_name`]: where a node's distribution port comes from (its name).

pub mod node_name;

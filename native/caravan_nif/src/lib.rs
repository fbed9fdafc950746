//! The BEAM face of `caravan_core`: decode terms, call the core, encode the
//! result. No rule lives here.
//!
//! Every NIF returns a plain value on success and `{:error, reason, message}`
//! on failure, where `reason` is one of a fixed set of atoms (never made from
//! input) and `message` names the input, the rule and the fix. NIFs are
//! grouped by the core module they front; rustler registers every
//! `#[rustler::nif]` in the crate.

mod creation;
mod dns;
mod names;
mod peers;
mod terms;

use rustler::{Atom, Encoder, Env, Term};

mod atoms {
    rustler::atoms! {
        error,
    }
}

/// `{:error, reason, message}`.
pub(crate) fn error<'a>(env: Env<'a>, reason: Atom, message: String) -> Term<'a> {
    (atoms::error(), reason, message).encode(env)
}

rustler::init!("Elixir.Caravan.Native");

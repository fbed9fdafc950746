//! The BEAM face of `caravan_core`: decode terms, call the core, encode the
//! result. No rule lives here.
//!
//! Every NIF returns a plain value on success and `{:error, reason, message}`
//! on failure, where `reason` is one of a fixed set of atoms (never made from
//! input) and `message` names the input, the rule and the fix.

use caravan_core::node_name;
use rustler::{Atom, Binary, Encoder, Env, Term};

mod atoms {
    rustler::atoms! {
        error,
        empty,
        not_utf8,
        too_long,
        empty_name,
        empty_host,
        many_ats,
        not_a_port,
        leading_zero,
    }
}

fn reason_atom(reason: &str) -> Atom {
    match reason {
        "empty" => atoms::empty(),
        "not_utf8" => atoms::not_utf8(),
        "too_long" => atoms::too_long(),
        "empty_name" => atoms::empty_name(),
        "empty_host" => atoms::empty_host(),
        "many_ats" => atoms::many_ats(),
        "leading_zero" => atoms::leading_zero(),
        _ => atoms::not_a_port(),
    }
}

fn error<'a>(env: Env<'a>, reason: Atom, message: String) -> Term<'a> {
    (atoms::error(), reason, message).encode(env)
}

/// `dist_port(name :: binary) :: port | {:error, reason, message}`.
#[rustler::nif]
fn dist_port<'a>(env: Env<'a>, name: Binary<'a>) -> Term<'a> {
    match node_name::dist_port(name.as_slice()) {
        Ok(port) => port.encode(env),
        Err(e) => error(env, reason_atom(e.reason()), e.to_string()),
    }
}

rustler::init!("Elixir.Caravan.Native");

//! NIFs for `caravan_core::node_name` (ports and roles from names) and
//! `caravan_core::consul`.

use caravan_core::{consul, node_name};
use rustler::{Atom, Binary, Encoder, Env, Term};

mod atoms {
    rustler::atoms! {
        empty,
        not_utf8,
        too_long,
        empty_name,
        empty_host,
        many_ats,
        not_a_port,
        leading_zero,
        nil,
        node,
        helper,
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

/// `dist_port(name :: binary) :: port | {:error, reason, message}`.
#[rustler::nif]
fn dist_port<'a>(env: Env<'a>, name: Binary<'a>) -> Term<'a> {
    match node_name::dist_port(name.as_slice()) {
        Ok(port) => port.encode(env),
        Err(e) => crate::error(env, reason_atom(e.reason()), e.to_string()),
    }
}

/// `node_role(name :: binary) :: {:node, port} | {:helper, target :: binary} | {:error, reason, message}`.
#[rustler::nif]
fn node_role<'a>(env: Env<'a>, name: Binary<'a>) -> Term<'a> {
    match node_name::role(name.as_slice()) {
        Ok(node_name::Role::Node { port }) => (atoms::node(), port).encode(env),
        Ok(node_name::Role::Helper { target }) => (atoms::helper(), target).encode(env),
        Err(e) => crate::error(env, reason_atom(e.reason()), e.to_string()),
    }
}

/// `decode_consul_addr(host :: binary) :: :inet.ip_address() | nil`.
#[rustler::nif]
fn decode_consul_addr<'a>(env: Env<'a>, host: Binary<'a>) -> Term<'a> {
    let decoded = std::str::from_utf8(host.as_slice())
        .ok()
        .and_then(consul::decode_addr_host);
    match decoded {
        Some(ip) => crate::terms::encode_ip(env, ip),
        None => atoms::nil().encode(env),
    }
}

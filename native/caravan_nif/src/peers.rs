//! NIFs for `caravan_core::peer_name`.

use caravan_core::peer_name::{self, Host};
use rustler::{Atom, Binary, Encoder, Env, Term};

mod atoms {
    rustler::atoms! {
        bad_sname,
        bad_host,
        bad_port,
    }
}

fn reason_atom(reason: &str) -> Atom {
    match reason {
        "bad_sname" => atoms::bad_sname(),
        "bad_port" => atoms::bad_port(),
        _ => atoms::bad_host(),
    }
}

fn not_text<'a>(env: Env<'a>, what: &str) -> Term<'a> {
    crate::error(
        env,
        atoms::bad_host(),
        format!("{what} is not UTF-8 text; the DNS answer that carried it is ignored"),
    )
}

/// `peer_name(sname :: binary, port :: 0..65535, host :: binary | ip_tuple)
/// :: binary | {:error, reason, message}`.
#[rustler::nif]
fn peer_name<'a>(env: Env<'a>, sname: Binary<'a>, port: u16, host: Term<'a>) -> Term<'a> {
    let Ok(sname) = std::str::from_utf8(sname.as_slice()) else {
        return crate::error(
            env,
            atoms::bad_sname(),
            "node_sname is not UTF-8 text; use letters, digits, '_' or '-'".to_owned(),
        );
    };
    let result = if let Some(ip) = crate::terms::decode_ip(host) {
        peer_name::peer_name(sname, port, Host::Ip(ip))
    } else if let Ok(bin) = host.decode::<Binary>() {
        let Ok(name) = std::str::from_utf8(bin.as_slice()) else {
            return not_text(env, "a host");
        };
        peer_name::peer_name(sname, port, Host::Name(name))
    } else {
        return crate::error(
            env,
            atoms::bad_host(),
            "a host must be a binary hostname or an IP address tuple".to_owned(),
        );
    };
    match result {
        Ok(name) => name.encode(env),
        Err(e) => crate::error(env, reason_atom(e.reason()), e.to_string()),
    }
}

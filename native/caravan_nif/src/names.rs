//! NIFs for `caravan_core::node_name` (ports and roles from names) and
//! `caravan_core::consul`.

use caravan_core::{consul, node_name};
use rustler::{Atom, Binary, Encoder, Env, Term, TermType};

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
        chardata,
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

/// `dist_port(name :: binary | atom | charlist) :: port | {:error, reason, message} | :chardata`.
///
/// An atom with an ASCII name is read in place, with no binary made. A flat list of Unicode code points (the charlists OTP hands the epmd
/// module) is decoded here, so the caller converts nothing. Any other list
/// (nested chardata, an improper tail, a value that is not a code point) or
/// one longer than a node name can be gets `:chardata`: the caller converts
/// it itself and calls again with a binary, so its errors stay its own
/// (so do non-ASCII atoms).
fn dist_port<'a>(env: Env<'a>, name: Term<'a>) -> Term<'a> {
    // The charlists OTP hands the epmd module come first: one enif call
    // reads one (nearly all fit the small buffer) and fails at once on any
    // other term. Then one type check, and one enif call for the rest.
    let mut small = [0u8; 64];
    if let Some(text) = ascii_list(env, name, &mut small) {
        return port_term(env, node_name::dist_port_str(text));
    }
    let result = match name.get_type() {
        TermType::Binary => match name.decode::<Binary<'a>>() {
            Ok(binary) => node_name::dist_port(binary.as_slice()),
            Err(_) => return atoms::chardata().encode(env),
        },
        TermType::List => {
            let mut large = [0u8; MAX_CHARLIST + 1];
            match ascii_list(env, name, &mut large) {
                Some(text) => node_name::dist_port_str(text),
                None => match flat_charlist(name) {
                    Some(text) => node_name::dist_port_str(&text),
                    None => return atoms::chardata().encode(env),
                },
            }
        }
        TermType::Atom => match ascii_atom(env, name, &mut small) {
            Some(text) => node_name::dist_port_str(text),
            None => {
                let mut large = [0u8; MAX_CHARLIST + 1];
                match ascii_atom(env, name, &mut large) {
                    Some(text) => node_name::dist_port_str(text),
                    None => return atoms::chardata().encode(env),
                }
            }
        },
        _ => return atoms::chardata().encode(env),
    };
    port_term(env, result)
}

/// The port, or `{:error, reason, message}`.
fn port_term(env: Env<'_>, result: Result<u16, node_name::NameError>) -> Term<'_> {
    match result {
        Ok(port) => port.encode(env),
        Err(e) => crate::error(env, reason_atom(e.reason()), e.to_string()),
    }
}

// `dist_port/1` is registered by hand, not with `#[rustler::nif]`: it is on
// the connect path (every `port_please` and `listen_port_please`), and the
// macro's wrapper collects the arguments into a `Vec` on every call, a
// malloc and a free that the profile showed as a tenth of the call. The
// entry below does what the wrapper does, panic containment included,
// through the same rustler runtime calls, minus that allocation.
rustler::codegen_runtime::inventory::submit!(rustler::Nif {
    name: c"dist_port".as_ptr(),
    arity: 1,
    flags: 0,
    raw_func: dist_port_entry,
});

/// The C entry point of `dist_port/1` (see the registration above).
///
/// # Safety
/// Called only by the BEAM, with a live `env` and `argc` (1, the registered
/// arity) terms at `argv`.
unsafe extern "C" fn dist_port_entry(
    env: *mut rustler::sys::ErlNifEnv,
    argc: rustler::codegen_runtime::c_int,
    argv: *const rustler::sys::ErlNifTerm,
) -> rustler::sys::ErlNifTerm {
    let lifetime = ();
    // SAFETY: as documented above; the BEAM keeps `env` and the argument
    // alive for this call, which is all `Env` and `Term` borrow them for.
    let env = unsafe { Env::new(&lifetime, env) };
    debug_assert_eq!(argc, 1);
    let name = unsafe { Term::new(env, *argv) };
    let result = std::panic::catch_unwind(move || Ok(dist_port(env, name)));
    rustler::codegen_runtime::handle_nif_result(result, env).apply(env)
}

/// Longest charlist decoded here: past a node name's 255 characters the
/// caller's conversion reports the error, and this NIF stays short.
const MAX_CHARLIST: usize = node_name::MAX_NAME_CHARS + 1;

/// The bytes of a proper list of integers 0..=255 that fits `buf` (with the
/// NUL `enif_get_string` adds), read in one call: the usual ASCII node name.
/// `None` for any other list, including longer ones (reading stops when
/// `buf` is full, so the work is bounded).
fn latin1_list<'b>(env: Env<'_>, list: Term<'_>, buf: &'b mut [u8]) -> Option<&'b [u8]> {
    let len = u32::try_from(buf.len()).ok()?;
    // SAFETY: `buf` is writable for `len` bytes, which bounds what
    // enif_get_string writes; `env` and `list` are live for this call.
    let written = unsafe {
        rustler::sys::enif_get_string(
            env.as_c_arg(),
            list.as_c_arg(),
            buf.as_mut_ptr().cast(),
            len,
            rustler::sys::ErlNifCharEncoding::ERL_NIF_LATIN1,
        )
    };
    // > 0: bytes written including the NUL; 0: not a latin-1 list; < 0: cut.
    let written = usize::try_from(written).ok().filter(|&n| n > 0)?;
    buf.get(..written - 1)
}

/// The text of a list of ASCII code points that fits `buf` (see `latin1_list`).
fn ascii_list<'b>(env: Env<'_>, list: Term<'_>, buf: &'b mut [u8]) -> Option<&'b str> {
    let bytes = latin1_list(env, list, buf).filter(|bytes| bytes.is_ascii())?;
    // SAFETY: ASCII bytes are UTF-8 (checked just above; this is the
    // charlist hot path, so the bytes are not walked twice).
    Some(unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// The text of an atom whose name is ASCII, read into `buf` in one call.
/// `None` otherwise, or when it does not fit `buf` (the caller converts
/// such atoms itself).
fn ascii_atom<'b>(env: Env<'_>, atom: Term<'_>, buf: &'b mut [u8]) -> Option<&'b str> {
    let len = u32::try_from(buf.len()).ok()?;
    // SAFETY: as in `latin1_list`; enif_get_atom writes at most `len` bytes.
    let written = unsafe {
        rustler::sys::enif_get_atom(
            env.as_c_arg(),
            atom.as_c_arg(),
            buf.as_mut_ptr().cast(),
            len,
            rustler::sys::ErlNifCharEncoding::ERL_NIF_LATIN1,
        )
    };
    // > 0: bytes written including the NUL; 0: not an atom, or too long for `buf`.
    let written = usize::try_from(written).ok().filter(|&n| n > 0)?;
    let bytes = buf.get(..written - 1).filter(|bytes| bytes.is_ascii())?;
    std::str::from_utf8(bytes).ok()
}

/// The text of a proper list of code points, at most [`MAX_CHARLIST`] long.
fn flat_charlist(list: Term<'_>) -> Option<String> {
    let mut text = String::with_capacity(32);
    let mut rest = list;
    for _ in 0..=MAX_CHARLIST {
        if rest.is_empty_list() {
            return Some(text);
        }
        let (head, tail) = rest.list_get_cell().ok()?;
        text.push(char::from_u32(head.decode::<u32>().ok()?)?);
        rest = tail;
    }
    None
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

//! Term shapes shared by several NIFs: IP address tuples.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rustler::types::tuple::{get_tuple, make_tuple};
use rustler::{Encoder, Env, Term};

/// `{a, b, c, d}` or `{a, b, c, d, e, f, g, h}`, as `:inet` writes addresses.
pub fn encode_ip<'a>(env: Env<'a>, ip: IpAddr) -> Term<'a> {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            (a, b, c, d).encode(env)
        }
        IpAddr::V6(ip) => {
            // Tuples above arity 7 have no Encoder impl: build the 8-tuple by hand.
            let parts: Vec<Term<'a>> = ip.segments().iter().map(|s| s.encode(env)).collect();
            make_tuple(env, &parts)
        }
    }
}

/// The inverse of [`encode_ip`]; `None` for any other term.
pub fn decode_ip(term: Term<'_>) -> Option<IpAddr> {
    let parts = get_tuple(term).ok()?;
    match parts.len() {
        4 => {
            let mut octets = [0u8; 4];
            for (slot, part) in octets.iter_mut().zip(&parts) {
                *slot = part.decode().ok()?;
            }
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        8 => {
            let mut segments = [0u16; 8];
            for (slot, part) in segments.iter_mut().zip(&parts) {
                *slot = part.decode().ok()?;
            }
            Some(IpAddr::V6(Ipv6Addr::from(segments)))
        }
        _ => None,
    }
}

/// An IP address as `:inet` writes it, for derived encoders and decoders.
pub struct Ip(pub IpAddr);

impl rustler::Encoder for Ip {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        encode_ip(env, self.0)
    }
}

impl<'a> rustler::Decoder<'a> for Ip {
    fn decode(term: Term<'a>) -> rustler::NifResult<Self> {
        decode_ip(term).map(Ip).ok_or(rustler::Error::BadArg)
    }
}

//! NIFs for `caravan_core::creation`.

use caravan_core::creation;
use rustler::{Encoder, Env, Term};

mod atoms {
    rustler::atoms! {
        no_entropy,
    }
}

/// `random_creation() :: creation | {:error, :no_entropy, message}`.
#[rustler::nif]
fn random_creation(env: Env<'_>) -> Term<'_> {
    match creation::random() {
        Ok(c) => c.encode(env),
        Err(e) => crate::error(
            env,
            atoms::no_entropy(),
            format!("the operating system's random source failed ({e}); a creation cannot be drawn from it"),
        ),
    }
}

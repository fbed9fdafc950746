//! Creation numbers: which incarnation of a node name a pid or reference
//! belongs to.
//!
//! A node tells its peers its creation during the handshake, and every pid,
//! port and reference it hands out carries it. When a node restarts under the
//! same name with a new creation, peers can tell its old pids from the new
//! ones; with the same creation, stale pids look alive.
//!
//! OTP >= 23 takes any 32-bit creation. ERTS (`erlang:setnode/2`) accepts
//! 0..=u32::MAX, but net_kernel's own generator (`create_creation/0`) avoids
//! 0..=3: 0 marks a node that is not alive, and 1..=3 are what the old 2-bit
//! creations and older epmd-less modules (`rand:uniform(3)`) hand out. So a
//! creation here is uniform over [`MIN`]..=`u32::MAX`, drawn from the OS.

/// The smallest creation handed out.
pub const MIN: u32 = 4;

/// A creation drawn from `next`, a source of uniformly random `u32`s:
/// values below [`MIN`] are drawn again, so the result stays uniform.
pub fn from_random(mut next: impl FnMut() -> u32) -> u32 {
    loop {
        let candidate = next();
        if candidate >= MIN {
            return candidate;
        }
    }
}

/// A creation drawn from the operating system's random source.
pub fn random() -> Result<u32, getrandom::Error> {
    let mut failure = None;
    let creation = from_random(|| match getrandom::u32() {
        Ok(n) => n,
        Err(e) => {
            failure = Some(e);
            // Ends the loop; the error is returned below.
            MIN
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(creation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_drawn_again() {
        let mut values = [0, 1, 2, 3, 7].into_iter();
        assert_eq!(from_random(|| values.next().unwrap()), 7);
    }

    #[test]
    fn the_bounds_are_creations() {
        assert_eq!(from_random(|| MIN), MIN);
        assert_eq!(from_random(|| u32::MAX), u32::MAX);
    }

    #[test]
    fn os_creations_are_in_range_and_vary() {
        let drawn: Vec<u32> = (0..64).map(|_| random().unwrap()).collect();
        assert!(drawn.iter().all(|&c| c >= MIN));
        let mut distinct = drawn.clone();
        distinct.sort_unstable();
        distinct.dedup();
        // 64 draws from 2^32 values: a repeat has odds of about 5e-7.
        assert!(distinct.len() >= 63, "{drawn:?}");
    }
}

//! Password hashes (argon2id, PHC strings) computed in memory that each thread keeps.
//!
//! argon2's own `hash_password`/`verify_password` allocate the whole work area (19 MiB with
//! the default parameters) on every call and free it after. glibc then raises its mmap
//! threshold to that size, so later work areas come from the thread's malloc arena and stay
//! there: a sign-in flood left ~58 MiB in each of seven arenas (400 MB of RSS for 40 MB of
//! live heap, `scripts/login-flood`, measured with heaptrack and /proc/PID/smaps). Here each
//! thread that checks passwords (the few password-check threads, see `web/session.rs`) keeps
//! one work area, sized for the parameters it last used and wiped after every use, and no
//! large allocation is ever freed. Results are identical to the crate's own functions (the
//! tests compare both ways).

use std::cell::RefCell;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// The largest work area a stored hash may ask for (256 MiB): a hash with a larger `m` is
/// refused rather than allocated.
const MAX_BLOCKS: usize = 256 * 1024;

thread_local! {
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    MEMORY.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() != blocks {
            *m = vec![Block::default(); blocks];
        }
        let out = f(&mut m[..]);
        // What is left is derived from a password: wipe it (the pages are resident anyway).
        m.fill(Block::default());
        out
    })
}

/// The raw argon2 output for `password` and `salt` under `argon`.
fn compute(argon: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> bool {
    let blocks = argon.params().block_count();
    if blocks > MAX_BLOCKS {
        return false;
    }
    with_memory(blocks, |mem| {
        argon
            .hash_password_into_with_memory(password, salt, out, mem)
            .is_ok()
    })
}

/// A new PHC string (argon2id, the crate's default parameters, a random salt).
pub fn hash(password: &str) -> String {
    use argon2::password_hash::rand_core::OsRng;
    let salt = SaltString::generate(&mut OsRng);
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut raw = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut raw).expect("a generated salt decodes");
    let mut out = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
    assert!(
        compute(&argon, password.as_bytes(), salt_bytes, &mut out),
        "argon2 hashing with default parameters"
    );
    PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).expect("default parameters encode"),
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).expect("output length is valid")),
    }
    .to_string()
}

/// Whether `password` matches the PHC string `stored` (argon2 of any variant, version and
/// parameters up to [`MAX_BLOCKS`]); the final comparison is constant-time (`Output`'s
/// equality). An unreadable hash never matches.
pub fn verify(stored: &str, password: &str) -> bool {
    let Ok(h) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(h.algorithm) else {
        return false;
    };
    let version = match h.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&h) else {
        return false;
    };
    let mut raw = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut raw) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    if !compute(&argon, password.as_bytes(), salt, &mut out) {
        return false;
    }
    Output::new(&out).is_ok_and(|o| o == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[test]
    fn the_same_hashes_as_the_crate_both_ways() {
        let ours = hash("correct horse");
        let h = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse", &h)
            .is_ok());
        assert!(Argon2::default().verify_password(b"wrong", &h).is_err());
        assert!(verify(&ours, "correct horse"));
        assert!(!verify(&ours, "correct horsf"));

        // Hashes the crate made, with other parameters and variants, still verify.
        let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
        for (alg, m, t, p) in [
            (Algorithm::Argon2id, 19_456, 2, 1),
            (Algorithm::Argon2id, 8, 1, 1),
            (Algorithm::Argon2i, 4096, 3, 2),
            (Algorithm::Argon2d, 1024, 1, 4),
        ] {
            let params = Params::new(m, t, p, None).unwrap();
            let theirs = Argon2::new(alg, Version::V0x13, params)
                .hash_password(b"pw", &salt)
                .unwrap()
                .to_string();
            assert!(verify(&theirs, "pw"), "{theirs}");
            assert!(!verify(&theirs, "pW"), "{theirs}");
        }
        // One thread alternating sizes keeps giving right answers.
        assert!(verify(&ours, "correct horse"));
    }

    #[test]
    fn unreadable_or_oversized_hashes_never_match() {
        for bad in [
            "",
            "plain text",
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ",
            "$argon2id$v=99$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$scrypt$ln=16,r=8,p=1$c29tZXNhbHQ$AAAA",
            // 4 GiB of work area.
            "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(!verify(bad, "pw"), "{bad}");
        }
    }
}

//! User password hashing with argon2id (OWASP's minimum parameters or stronger) and verification that takes
//! the same time whether or not the user exists.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use gatehouse_proto::Secret;

/// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1 (the minimum recommended).
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub fn hash(password: &Secret) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    hasher().hash_password(password.expose().as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// True when `password` matches `phc`. With `phc = None` (unknown user) a dummy hash is verified so the
/// response time does not reveal whether the username exists.
pub fn verify(password: &Secret, phc: Option<&str>) -> bool {
    static DUMMY: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| hash(&Secret::new("dummy password for timing")).unwrap_or_default());
    let (phc, known) = match phc {
        Some(phc) => (phc, true),
        None => (DUMMY.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    // Parameters come from the stored hash, so older hashes keep verifying after a parameter change.
    let ok = Argon2::default().verify_password(password.expose().as_bytes(), &parsed).is_ok();
    ok && known
}

/// Checks that a string is an argon2id PHC hash (for hashes given in configuration).
pub fn is_argon2id_phc(phc: &str) -> bool {
    PasswordHash::new(phc).map(|h| h.algorithm.as_str() == "argon2id").unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let phc = hash(&Secret::new("correct horse")).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(is_argon2id_phc(&phc));
        assert!(verify(&Secret::new("correct horse"), Some(&phc)));
        assert!(!verify(&Secret::new("wrong"), Some(&phc)));
        assert!(!verify(&Secret::new("correct horse"), None));
        assert!(!verify(&Secret::new("x"), Some("not a hash")));
    }
}

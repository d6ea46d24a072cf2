//! The one source of randomness for identifiers, codes, tokens and salts (the OS CSPRNG via `rand`).

/// `N` random bytes from the operating system's CSPRNG.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::fill(&mut out);
    out
}

/// A random token of `N` bytes, base64url (codes, refresh tokens, CSRF tokens, request URIs).
pub fn token<const N: usize>() -> String {
    gatehouse_proto::b64::encode(bytes::<N>())
}

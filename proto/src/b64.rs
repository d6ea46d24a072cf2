//! Base64url without padding (RFC 7515 §2, RFC 7636 App. A): the only base64 flavour OAuth and JOSE use.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes bytes as base64url without padding.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; padding, `+` and `/` are errors.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        for bytes in [&b""[..], b"f", b"fo", b"foo", &[0xff, 0xfe, 0xfd]] {
            assert_eq!(decode(&encode(bytes)).unwrap(), bytes);
        }
        assert!(decode("Zg==").is_none(), "padding is not base64url");
        assert!(decode("+/8").is_none(), "standard alphabet is not base64url");
    }
}

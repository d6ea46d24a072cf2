//! DPoP proofs through the one verifier (`gatehouse_proto::dpop`, RFC 9449 §4.3) at a fixed clock, for
//! `POST https://id.test/token`.
//!
//! Input: one selector byte, then data. Selector bits 0–1 pick what the data is:
//! - 0: the proof itself (a raw `DPoP` header value);
//! - 1: the proof's claims (any bytes), under a valid header, signed with the fixture key, so every claim
//!   check behind the signature runs (§4.3 (3), (8)–(12));
//! - 2: the proof's protected header (any bytes), over valid claims, signed with the fixture key (§4.3 (2)–(7));
//! - 3: several `DPoP` header values, one per line (§4.3 (1)).
//!
//! Bit 2: the server requires a nonce (§8); bit 3: an access token comes with the proof (`ath`, §4.3 (12)).

#![no_main]

use gatehouse_fuzz::{ACCESS_TOKEN, DPOP_METHOD, DPOP_URI, NOW, dpop_claims, dpop_header, nonce_issuer, sign_compact};
use gatehouse_proto::dpop::{self, Request, TimeWindow, VerifiedProof};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else { return };
    let with_nonce = selector & 0b0100 != 0;
    let with_access_token = selector & 0b1000 != 0;
    let nonces = nonce_issuer();
    let request = Request {
        method: DPOP_METHOD,
        uri: DPOP_URI,
        access_token: with_access_token.then_some(ACCESS_TOKEN),
        now: NOW,
        window: TimeWindow::default(),
        nonces: with_nonce.then_some(&nonces),
    };
    let outcome = match selector & 0b11 {
        0 => dpop::verify_proof(&String::from_utf8_lossy(data), &request),
        1 => dpop::verify_proof(&sign_compact(dpop_header().to_string().as_bytes(), data), &request),
        2 => {
            let claims = dpop_claims(with_access_token, with_nonce).to_string();
            dpop::verify_proof(&sign_compact(data, claims.as_bytes()), &request)
        }
        _ => {
            let text = String::from_utf8_lossy(data);
            dpop::verify(text.split('\n'), &request)
        }
    };
    if let Ok(VerifiedProof { jkt, jti, iat, replay_key }) = outcome {
        // What the verifier vouches for: a key thumbprint, a bounded jti, an iat inside the window.
        assert_eq!(jkt.len(), 43, "jkt is a base64url SHA-256");
        assert!(!jti.is_empty() && jti.len() <= 256);
        assert!(iat >= NOW - request.window.max_age && iat <= NOW + request.window.future_skew);
        assert_eq!(replay_key, format!("{jkt}:{jti}"));
    }
});

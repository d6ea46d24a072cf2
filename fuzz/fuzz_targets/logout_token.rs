//! Back-channel logout tokens as the gateway validates them (OpenID Connect Back-Channel Logout 1.0 §2.6), with
//! the token service's key set fixed (no JWKS fetch): the JOSE header and algorithm allow-list
//! (`oidc::jose::header`, RFC 8725 §3.1), explicit typing (`logout_token::check_typ`), the key by `kid`, then
//! the signature and every claim check (`logout_token::verify`) — `OidcClient::validate_logout_token` without
//! its I/O and its `jti` replay cache.
//!
//! Input: one selector byte, then data. Selector mod 3:
//! - 0: the token itself;
//! - 1: the token's claims (any bytes) under a valid header, signed with the fixture key (§2.6 steps 4–8);
//! - 2: the token's header (any bytes) over valid claims, signed with the fixture key (§2.6 steps 2–3).

#![no_main]

use gatehouse_bff::oidc::logout_token::{self, Expected, LogoutToken};
use gatehouse_bff::oidc::{OidcError, jose};
use gatehouse_fuzz::{
    CLIENT_ID, ISSUER, NOW, TOKEN_ALGS, logout_claims, logout_header, sign_compact, token_service_keys,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else { return };
    let token = match selector % 3 {
        0 => String::from_utf8_lossy(data).into_owned(),
        1 => sign_compact(logout_header().to_string().as_bytes(), data),
        _ => sign_compact(data, logout_claims().to_string().as_bytes()),
    };
    if let Ok((LogoutToken { sub, sid, jti }, acceptable_until)) = validate(&token) {
        // §2.6 step 6: sub or sid; §2.4: a jti; accepted tokens stay acceptable a while from now, not forever.
        assert!(sub.is_some() || sid.is_some());
        assert!(!jti.is_empty());
        assert!(acceptable_until >= NOW - 60, "accepted a token already past its acceptance");
    }
});

fn validate(token: &str) -> Result<(LogoutToken, i64), OidcError> {
    let allowed: Vec<String> = TOKEN_ALGS.map(str::to_owned).to_vec();
    let header = jose::header(token, &allowed)?;
    logout_token::check_typ(&header)?;
    let keys = token_service_keys();
    // As `OidcClient::key_for`: without `kid`, only a single published key may verify.
    let jwk = match header.kid.as_deref() {
        Some(kid) => keys.find(kid),
        None => match keys.keys.as_slice() {
            [only] => Some(only),
            _ => None,
        },
    }
    .ok_or_else(|| OidcError::InvalidToken("unknown kid".into()))?;
    let expected = Expected { issuer: ISSUER, client_id: CLIENT_ID, leeway: 30 };
    logout_token::verify(token, &header, jwk, &expected, NOW)
}

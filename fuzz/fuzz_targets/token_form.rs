//! Token requests as the token endpoint reads them (RFC 6749 §3.2, §4.1.3, §4.4, §6): the form body is parsed
//! (`Params::parse`), the client credentials are read from the `Authorization` header and the form
//! (`client_auth::presented`) and checked against the fixture clients (`client_auth::verify_secret`,
//! `client_auth::verify_assertion` for `private_key_jwt`), then the grant's parameters are parsed the way the
//! grant modules do: `grant_type` (`GrantType::parse`), `code_verifier` (`CodeVerifier::parse`), `scope`
//! (`Scopes::parse`) and `resource` (`resource::requested`, RFC 8707).
//!
//! Input: the `Authorization` header value, a newline, then the form body; without a newline the whole input is
//! the body and no header is sent.

#![no_main]

use gatehouse_fuzz::{ISSUER, NOW, apis, client, split_at_byte};
use gatehouse_idp::client_auth::{self, Presented};
use gatehouse_idp::params::Params;
use gatehouse_idp::resource;
use gatehouse_idp::scope::Scopes;
use gatehouse_proto::pkce::{CodeChallenge, CodeVerifier};
use gatehouse_proto::vocab::GrantType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (authorization, body) = match split_at_byte(data, b'\n') {
        (header, Some(body)) => (Some(String::from_utf8_lossy(header)), body),
        (body, None) => (None, body),
    };
    // As the endpoint does with a header that is not visible ASCII.
    let authorization = authorization.map(|value| if value.is_ascii() { value.into_owned() } else { "\u{0}".into() });
    let Ok(params) = Params::parse(body) else { return };

    // Client authentication (RFC 6749 §2.3).
    if let Ok(presented) = client_auth::presented(authorization.as_deref(), &params)
        && let Some(registered) = client(presented.client_id())
    {
        let authenticated = match &presented {
            Presented::Assertion { assertion, .. } => {
                client_auth::verify_assertion(&registered, assertion, ISSUER, NOW).map(|verified| {
                    assert!(!verified.jti.is_empty());
                })
            }
            _ => client_auth::verify_secret(&registered, &presented),
        };
        if authenticated.is_ok() {
            assert_eq!(presented.method(), registered.auth_method, "authenticated with another method");
        }
    }

    // The grant's parameters.
    if let Some(grant_type) = params.get("grant_type").and_then(GrantType::parse) {
        assert_eq!(GrantType::parse(grant_type.as_str()), Some(grant_type));
    }
    if let Some(Ok(verifier)) = params.get("code_verifier").map(CodeVerifier::parse) {
        // RFC 7636 §4.6: the S256 challenge of a verifier verifies it.
        assert!(CodeChallenge::s256(&verifier).verify(&verifier));
    }
    let granted = Scopes::parse("openid profile offline_access api api.read billing").expect("fixture scopes");
    let scope = match params.get("scope").map(Scopes::parse) {
        Some(Some(scope)) => {
            assert_eq!(Scopes::parse(&scope.to_string()).as_ref(), Some(&scope), "scope round trip");
            scope
        }
        Some(None) => return,
        None => granted,
    };
    if let Ok(Some(target)) = resource::requested(&params, &scope, &apis()) {
        assert!(!target.audiences.is_empty(), "RFC 8707: a target names its audiences");
        assert!(target.scope.is_subset_of_scopes(&scope), "a target never widens the scope");
    }
});

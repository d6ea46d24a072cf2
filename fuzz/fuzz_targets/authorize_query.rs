//! Authorization requests as the token service reads them (RFC 6749 §4.1.1, OIDC Core §3.1.2.1): the query or
//! form is parsed (`Params::parse`: repeated parameters refused, RFC 6749 §3.1), the client is looked up among
//! the fixture clients, and the request is validated (`authorize::validate`).
//!
//! Input: the raw query string (or `application/x-www-form-urlencoded` body). A request that validates is
//! turned into the redirect that carries the code (`authorize::response_url`), which must go to the registered
//! redirect URI and carry `state` and `iss` back unchanged.

#![no_main]

use gatehouse_fuzz::{ISSUER, client};
use gatehouse_idp::authorize::{self, AuthorizeError};
use gatehouse_idp::params::Params;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(params) = Params::parse(data) else { return };
    let registered = params.get("client_id").and_then(client);
    match authorize::validate(&params, registered.as_ref()) {
        Ok(request) => {
            let client = registered.expect("a request validates only for a registered client");
            assert!(client.redirect_uris.contains(&request.redirect_uri), "RFC 9700 §2.1: exact redirect URI");
            assert_eq!(request.code_challenge.len(), 43, "RFC 7636: an S256 challenge");
            let location =
                authorize::response_url(&request.redirect_uri, &[("code", "c")], request.state.as_deref(), ISSUER);
            let url = url::Url::parse(&location).expect("the code redirect is a URL");
            let state: Vec<String> =
                url.query_pairs().filter(|(n, _)| n == "state").map(|(_, v)| v.into_owned()).collect();
            assert_eq!(state, request.state.iter().cloned().collect::<Vec<_>>(), "state comes back unchanged");
            assert!(url.query_pairs().any(|(n, v)| n == "iss" && v == ISSUER), "RFC 9207: iss");
        }
        Err(AuthorizeError::Redirect { redirect_uri, .. }) => {
            // Errors are redirected only to a registered redirect URI (RFC 6749 §4.1.2.1).
            let client = registered.expect("an error is redirected only for a registered client");
            assert!(client.redirect_uris.contains(&redirect_uri));
        }
        Err(AuthorizeError::Page(_)) => {}
    }
});

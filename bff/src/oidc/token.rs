//! Pure request builders and response parsers for the token service's endpoints: authorization request
//! parameters (OIDC Core §3.1.2.1, RFC 7636, RFC 9449 §10), client authentication (RFC 6749 §2.3.1), token
//! responses (RFC 6749 §5.1, RFC 9449 §5) and error responses (RFC 6749 §5.2). No I/O.

use base64::Engine;
use serde::Deserialize;

use super::OidcError;
use super::metadata::ProviderMetadata;

/// What `/bff/login` asks for; the rest (client id, scopes, `dpop_jkt`) comes from the client's settings.
#[derive(Clone, Copy, Debug)]
pub struct AuthorizationRequest<'a> {
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    /// The S256 challenge of the transaction's `code_verifier` (RFC 7636 §4.2).
    pub code_challenge: &'a str,
    pub prompt: Option<&'a str>,
}

/// The authorization request's parameters, in a stable order (pushed to PAR or put in the query).
pub fn authorization_params(
    client_id: &str,
    scopes: &[String],
    request: &AuthorizationRequest<'_>,
    dpop_jkt: &str,
    metadata: &ProviderMetadata,
) -> Vec<(&'static str, String)> {
    let mut params = vec![
        ("response_type", "code".to_owned()),
        ("client_id", client_id.to_owned()),
        ("redirect_uri", request.redirect_uri.to_owned()),
        ("scope", scopes.join(" ")),
        ("state", request.state.to_owned()),
        ("nonce", request.nonce.to_owned()),
        // RFC 7636 §4.3; S256 only (RFC 9700 §2.1.1).
        ("code_challenge", request.code_challenge.to_owned()),
        ("code_challenge_method", "S256".to_owned()),
        // RFC 9449 §10: the code is bound to the DPoP key that will redeem it.
        ("dpop_jkt", dpop_jkt.to_owned()),
    ];
    // A prompt value the token service does not advertise is not sent (OIDC Prompt Create §4).
    if let Some(prompt) = request.prompt
        && metadata.prompt_values_supported.iter().any(|p| p == prompt)
    {
        params.push(("prompt", prompt.to_owned()));
    }
    params
}

/// `Authorization: Basic base64(urlencode(client_id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
pub fn basic_authorization(client_id: &str, secret: &str) -> String {
    let encode = |value: &str| url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
    let credentials = format!("{}:{}", encode(client_id), encode(secret));
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials))
}

/// A successful token response (RFC 6749 §5.1). `Debug` never shows a token.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let present = |t: &Option<String>| if t.is_some() { "Some(<redacted>)" } else { "None" };
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &format_args!("{}", present(&self.refresh_token)))
            .field("id_token", &format_args!("{}", present(&self.id_token)))
            .field("scope", &self.scope)
            .finish()
    }
}

/// An RFC 6749 §5.2 error body.
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The `error` of an error answer, if the body is one.
pub fn error_code(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorBody>(body).ok().map(|b| b.error)
}

/// Turns a non-success answer into an error: an RFC 6749 error from a 4xx is a refusal; everything else
/// (5xx, other statuses, bodies that are not an error object, the codes that mean "try later") means the
/// token service is unavailable.
pub fn error_answer(status: u16, body: &[u8]) -> OidcError {
    match serde_json::from_slice::<ErrorBody>(body) {
        // RFC 6749 §4.1.2.1 / RFC 9449 §8: these say "not now", not "no"; a session must survive them.
        Ok(e) if matches!(e.error.as_str(), "server_error" | "temporarily_unavailable" | "use_dpop_nonce") => {
            OidcError::Unavailable(format!("token service answered {status} {}", e.error))
        }
        Ok(e) if (400..500).contains(&status) => {
            OidcError::Refused { error: e.error, description: e.error_description }
        }
        _ => OidcError::Unavailable(format!("token service answered {status}")),
    }
}

/// Parses the token endpoint's answer. RFC 9449 §5: a DPoP-bound token comes with `token_type=DPoP`
/// (case-insensitive); a `Bearer` answer to a DPoP request is refused rather than used unbound.
pub fn parse_token_answer(status: u16, body: &[u8]) -> Result<TokenResponse, OidcError> {
    if status != 200 {
        return Err(error_answer(status, body));
    }
    let response: TokenResponse =
        serde_json::from_slice(body).map_err(|_| OidcError::Unavailable("unparsable token response".to_owned()))?;
    if !response.token_type.eq_ignore_ascii_case("dpop") {
        return Err(OidcError::Protocol(format!(
            "the token service issued a {:?} token, not a DPoP-bound one",
            response.token_type
        )));
    }
    if response.access_token.is_empty() {
        return Err(OidcError::Protocol("the token response has an empty access_token".to_owned()));
    }
    Ok(response)
}

/// A PAR response (RFC 9126 §2.2).
#[derive(Deserialize)]
pub struct PushedAuthorizationResponse {
    pub request_uri: String,
    #[serde(default)]
    pub expires_in: Option<i64>,
}

/// Parses the PAR endpoint's answer: 201 with `request_uri` (RFC 9126 §2.2; 200 tolerated).
pub fn parse_par_answer(status: u16, body: &[u8]) -> Result<PushedAuthorizationResponse, OidcError> {
    if status != 201 && status != 200 {
        return Err(error_answer(status, body));
    }
    let response: PushedAuthorizationResponse =
        serde_json::from_slice(body).map_err(|_| OidcError::Unavailable("unparsable PAR response".to_owned()))?;
    if response.request_uri.is_empty() {
        return Err(OidcError::Protocol("the PAR response has an empty request_uri".to_owned()));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(prompts: &[&str]) -> ProviderMetadata {
        serde_json::from_value(serde_json::json!({
            "issuer": "https://id.test",
            "authorization_endpoint": "https://id.test/authorize",
            "token_endpoint": "https://id.test/token",
            "jwks_uri": "https://id.test/jwks",
            "prompt_values_supported": prompts,
        }))
        .unwrap()
    }

    #[test]
    fn authorization_params_carry_pkce_nonce_and_dpop_jkt() {
        let request = AuthorizationRequest {
            redirect_uri: "https://app.test/bff/callback",
            state: "st",
            nonce: "no",
            code_challenge: "ch",
            prompt: Some("login"),
        };
        let scopes = vec!["openid".to_owned(), "api".to_owned()];
        let params = authorization_params("bff", &scopes, &request, "jkt-1", &metadata(&["none", "login"]));
        let get = |name: &str| params.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("scope"), Some("openid api"));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("dpop_jkt"), Some("jkt-1"));
        assert_eq!(get("prompt"), Some("login"));
        // OIDC Prompt Create §4: a value the token service does not advertise is not sent.
        let params = authorization_params("bff", &scopes, &request, "jkt-1", &metadata(&["none"]));
        assert!(params.iter().all(|(n, _)| *n != "prompt"));
    }

    /// RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    #[test]
    fn basic_authorization_urlencodes_both_parts() {
        let header = basic_authorization("my client", "s:e/c");
        let decoded = base64::engine::general_purpose::STANDARD.decode(header.strip_prefix("Basic ").unwrap()).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "my+client:s%3Ae%2Fc");
    }

    /// RFC 9449 §5: a Bearer answer to a DPoP request is refused; the type compares case-insensitively.
    #[test]
    fn token_answer_must_be_dpop() {
        let ok = parse_token_answer(200, br#"{"access_token":"at","token_type":"dpop","expires_in":60}"#).unwrap();
        assert_eq!(ok.expires_in, Some(60));
        let bearer = parse_token_answer(200, br#"{"access_token":"at","token_type":"Bearer"}"#);
        assert!(matches!(bearer, Err(OidcError::Protocol(_))));
        assert!(matches!(parse_token_answer(200, b"<html>"), Err(OidcError::Unavailable(_))));
    }

    /// A refusal (RFC 6749 §5.2) ends a session; an outage must not.
    #[test]
    fn errors_distinguish_refusal_from_outage() {
        let refused = parse_token_answer(400, br#"{"error":"invalid_grant","error_description":"used"}"#);
        assert!(
            matches!(refused, Err(OidcError::Refused { ref error, ref description }) if error == "invalid_grant" && description.as_deref() == Some("used"))
        );
        assert!(matches!(parse_token_answer(503, br#"{"error":"invalid_grant"}"#), Err(OidcError::Unavailable(_))));
        assert!(matches!(parse_token_answer(500, b""), Err(OidcError::Unavailable(_))));
        assert!(matches!(parse_token_answer(400, b"not json"), Err(OidcError::Unavailable(_))));
        assert!(matches!(
            parse_token_answer(400, br#"{"error":"temporarily_unavailable"}"#),
            Err(OidcError::Unavailable(_))
        ));
    }

    #[test]
    fn token_response_debug_is_redacted() {
        let response = parse_token_answer(
            200,
            br#"{"access_token":"AT-SECRET","token_type":"DPoP","refresh_token":"RT-SECRET","id_token":"IDT-SECRET"}"#,
        )
        .unwrap();
        let debug = format!("{response:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        assert!(debug.contains("DPoP"));
    }

    #[test]
    fn par_answer_needs_a_request_uri() {
        let ok = parse_par_answer(201, br#"{"request_uri":"urn:x","expires_in":60}"#).unwrap();
        assert_eq!(ok.request_uri, "urn:x");
        assert!(matches!(parse_par_answer(400, br#"{"error":"invalid_request"}"#), Err(OidcError::Refused { .. })));
        assert!(matches!(parse_par_answer(201, br#"{"request_uri":""}"#), Err(OidcError::Protocol(_))));
    }
}

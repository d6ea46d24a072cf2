//! OpenID Provider metadata (OIDC Discovery 1.0 §3, RFC 8414) and the JWK Set. The metadata lists only what
//! is implemented.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use gatehouse_proto::claims::SUPPORTED_CLAIMS;
use gatehouse_proto::vocab::{ClientAuthMethod, GrantType, SigningAlg};

use crate::client_auth::ASSERTION_ALGS;
use crate::scope::OIDC_SCOPES;
use crate::server::AppState;
use crate::settings::Settings;

/// Renders the discovery document once at start.
pub fn document(issuer: &str, settings: &Settings) -> Vec<u8> {
    let endpoint = |path: &str| format!("{}{}", issuer.trim_end_matches('/'), path);
    let mut scopes: Vec<String> = OIDC_SCOPES.iter().map(|s| (*s).to_owned()).collect();
    for api in &settings.apis {
        scopes.extend(api.scopes.iter().cloned());
    }
    let doc = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": endpoint("/authorize"),
        "token_endpoint": endpoint("/token"),
        "userinfo_endpoint": endpoint("/userinfo"),
        // RP-Initiated Logout 1.0 §2.1; Back-Channel Logout 1.0 §2.1 (logout tokens carry `sid`).
        "end_session_endpoint": endpoint("/end_session"),
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "jwks_uri": endpoint("/jwks"),
        "pushed_authorization_request_endpoint": endpoint("/par"),
        "require_pushed_authorization_requests": settings.require_pushed_authorization_requests,
        "introspection_endpoint": endpoint("/introspect"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "revocation_endpoint": endpoint("/revoke"),
        "revocation_endpoint_auth_methods_supported": ClientAuthMethod::ALL.map(ClientAuthMethod::as_str),
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GrantType::ALL.map(GrantType::as_str),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": SigningAlg::ALL.map(SigningAlg::as_str),
        "userinfo_signing_alg_values_supported": [],
        "token_endpoint_auth_methods_supported": ClientAuthMethod::ALL.map(ClientAuthMethod::as_str),
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "claims_supported": SUPPORTED_CLAIMS,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "authorization_response_iss_parameter_supported": true,
        "dpop_signing_alg_values_supported": gatehouse_proto::dpop::DPOP_ALGS,
        "ui_locales_supported": ["en"],
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}

pub async fn openid_configuration(State(state): State<AppState>) -> Response {
    json_bytes(state.discovery.clone(), "public, max-age=300")
}

pub async fn jwks(State(state): State<AppState>) -> Response {
    // Short cache: a rotation must reach verifiers within the key propagation time.
    json_bytes(state.keys.current().jwks_json().as_ref().clone(), "public, max-age=60")
}

fn json_bytes(body: Vec<u8>, cache: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

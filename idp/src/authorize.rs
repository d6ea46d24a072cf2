//! The authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1), validated in the order that decides where
//! an error may go: client and redirect URI first (errors shown on a page, never redirected: RFC 6749
//! §4.1.2.1, RFC 9700 §4.11.2), then everything else (errors redirected to the validated redirect URI).

use gatehouse_proto::pkce::{CodeChallenge, PkceError};
use gatehouse_proto::vocab::GrantType;
use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::params::Params;
use crate::scope::Scopes;
use crate::store::{ClientRecord, Epoch};

/// A validated authorization request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// RFC 9449 §10: the code is bound to this DPoP key (from `dpop_jkt` or the PAR request's proof).
    #[serde(default)]
    pub dpop_jkt: Option<String>,
}

/// OIDC Core §3.1.2.1 `prompt`, reduced to what changes behaviour here. `consent` and `select_account` are
/// accepted and satisfied (first-party clients, one account per session).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Prompt {
    Default,
    None,
    Login,
}

/// Where an authorization error goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthorizeError {
    /// Shown to the user on an error page; never redirected.
    Page(&'static str),
    /// Redirected to the validated redirect URI with `error`, `state` and `iss`.
    Redirect { redirect_uri: String, state: Option<String>, error: ErrorCode, description: &'static str },
}

const MAX_STATE: usize = 2048;
const MAX_NONCE: usize = 512;

/// Validates the request against the registered client (`None` when the `client_id` is unknown).
pub fn validate(params: &Params, client: Option<&ClientRecord>) -> Result<AuthorizeRequest, AuthorizeError> {
    if params.get("client_id").is_none() {
        return Err(AuthorizeError::Page("The request has no client_id."));
    }
    let client = client.ok_or(AuthorizeError::Page("The application that sent you here is not registered."))?;
    // RFC 6749 §3.1.2.3 / RFC 9700 §2.1: exact string comparison against the registered URIs.
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) => client
            .redirect_uris
            .iter()
            .find(|registered| registered.as_str() == uri)
            .ok_or(AuthorizeError::Page("The redirect_uri is not registered for this application."))?,
        None if client.redirect_uris.len() == 1 => &client.redirect_uris[0],
        None => return Err(AuthorizeError::Page("The request has no redirect_uri.")),
    };
    let state = params.get("state").map(str::to_owned);
    let redirect = |error, description| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error,
        description,
    };
    if state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
        return Err(AuthorizeError::Page("The state parameter is too long."));
    }
    // OIDC Core §6: request objects are not supported (and advertised as such).
    if params.contains("request") {
        return Err(redirect(ErrorCode::RequestNotSupported, "request objects are not supported"));
    }
    // OIDC Core §6.2: request objects by reference are not supported either (never fetched: catalogue
    // EP-DCR05); a `request_uri` of a pushed request (RFC 9126) never reaches this function.
    if params.contains("request_uri") {
        return Err(redirect(ErrorCode::RequestUriNotSupported, "request_uri is supported for pushed requests only"));
    }
    // RFC 6749 §4.1.1: response_type=code is the only flow.
    match params.get("response_type") {
        None => return Err(redirect(ErrorCode::InvalidRequest, "response_type is required")),
        Some("code") => {}
        Some(_) => return Err(redirect(ErrorCode::UnsupportedResponseType, "only response_type=code is supported")),
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return Err(redirect(ErrorCode::InvalidRequest, "only response_mode=query is supported"));
    }
    if !client.grant_types.contains(&GrantType::AuthorizationCode) {
        return Err(redirect(ErrorCode::UnauthorizedClient, "the client may not use the authorization code grant"));
    }
    // RFC 6749 §3.3: scopes the client may request.
    let scope = match params.get("scope").map(Scopes::parse) {
        None => return Err(redirect(ErrorCode::InvalidScope, "scope is required")),
        Some(None) => return Err(redirect(ErrorCode::InvalidScope, "scope contains invalid characters")),
        Some(Some(scope)) if scope.is_empty() => return Err(redirect(ErrorCode::InvalidScope, "scope is required")),
        Some(Some(scope)) => scope,
    };
    if !scope.is_subset_of(&client.scopes) {
        return Err(redirect(ErrorCode::InvalidScope, "a requested scope is not allowed for this client"));
    }
    // RFC 7636 §4.4.1 + RFC 9700 §2.1.1: PKCE with S256 for every client.
    let code_challenge = CodeChallenge::parse(params.get("code_challenge"), params.get("code_challenge_method"))
        .map_err(|e| {
            redirect(
                ErrorCode::InvalidRequest,
                match e {
                    PkceError::MissingChallenge => "code_challenge is required",
                    PkceError::UnsupportedMethod => "code_challenge_method must be S256",
                    _ => "code_challenge is malformed",
                },
            )
        })?;
    let prompt = parse_prompt(params.get("prompt"))
        .ok_or_else(|| redirect(ErrorCode::InvalidRequest, "prompt has an unsupported value or combination"))?;
    let max_age = match params.get("max_age") {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|age| *age >= 0)
                .ok_or_else(|| redirect(ErrorCode::InvalidRequest, "max_age must be a non-negative integer"))?,
        ),
    };
    let nonce = params.get("nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > MAX_NONCE) {
        return Err(redirect(ErrorCode::InvalidRequest, "nonce is too long"));
    }
    let login_hint = params.get("login_hint").filter(|h| h.len() <= 256).map(str::to_owned);
    // RFC 9449 §10: dpop_jkt is a JWK SHA-256 thumbprint (43 base64url characters).
    let dpop_jkt = match params.get("dpop_jkt") {
        None => None,
        Some(jkt) if jkt.len() == 43 && gatehouse_proto::b64::decode(jkt).is_some_and(|b| b.len() == 32) => {
            Some(jkt.to_owned())
        }
        Some(_) => return Err(redirect(ErrorCode::InvalidRequest, "dpop_jkt must be a JWK SHA-256 thumbprint")),
    };
    Ok(AuthorizeRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        scope: scope.to_string(),
        state,
        nonce,
        code_challenge: code_challenge.as_str().to_owned(),
        prompt,
        max_age,
        login_hint,
        dpop_jkt,
    })
}

/// OIDC Core §3.1.2.1: `none` must stand alone.
fn parse_prompt(value: Option<&str>) -> Option<Prompt> {
    let Some(value) = value else { return Some(Prompt::Default) };
    let values: Vec<&str> = value.split(' ').filter(|v| !v.is_empty()).collect();
    if values.iter().any(|v| !matches!(*v, "none" | "login" | "consent" | "select_account")) {
        return None;
    }
    if values.contains(&"none") {
        return (values.len() == 1).then_some(Prompt::None);
    }
    Some(if values.contains(&"login") { Prompt::Login } else { Prompt::Default })
}

/// Whether an existing login may be reused for this request, or the user must (re-)authenticate.
pub fn session_satisfies(request: &AuthorizeRequest, auth_time: Epoch, now: Epoch) -> bool {
    if request.prompt == Prompt::Login {
        return false;
    }
    // OIDC Core §3.1.2.1 max_age: re-authenticate when the last login is older.
    request.max_age.is_none_or(|max_age| now - auth_time <= max_age)
}

/// The redirect carrying a code or an error (RFC 6749 §4.1.2, RFC 9207 `iss`), built with `url::Url` so a
/// registered URI's own query is kept.
pub fn response_url(redirect_uri: &str, pairs: &[(&str, &str)], state: Option<&str>, issuer: &str) -> String {
    let mut url = match url::Url::parse(redirect_uri) {
        Ok(url) => url,
        Err(_) => return redirect_uri.to_owned(), // registered URIs were validated as absolute URLs
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in pairs {
            query.append_pair(name, value);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", issuer);
    }
    url.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_proto::vocab::{ClientAuthMethod, SigningAlg};

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const CALLBACK: &str = "https://app.example.com/bff/callback";

    fn client() -> ClientRecord {
        ClientRecord {
            client_id: "c1".into(),
            name: None,
            auth_method: ClientAuthMethod::ClientSecretBasic,
            secret_sha256: None,
            jwks: None,
            redirect_uris: vec![
                CALLBACK.into(),
                "https://app.example.com/other".into(),
                "https://app.example.com/q?foo=bar".into(),
            ],
            post_logout_redirect_uris: vec![],
            grant_types: vec![GrantType::AuthorizationCode],
            scopes: vec!["openid".into(), "profile".into(), "api".into()],
            id_token_signed_response_alg: SigningAlg::RS256,
            backchannel_logout_uri: None,
            source: String::new(),
            require_dpop: false,
            require_dpop_nonce: false,
            require_pushed_authorization_requests: false,
        }
    }

    fn query(extra: &str) -> String {
        format!(
            "client_id=c1&redirect_uri={}&response_type=code&scope=openid&state=s1&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
            url::form_urlencoded::byte_serialize(CALLBACK.as_bytes()).collect::<String>()
        )
    }

    fn run(q: &str) -> Result<AuthorizeRequest, AuthorizeError> {
        validate(&Params::parse(q.as_bytes()).unwrap(), Some(&client()))
    }

    fn redirected_error(q: &str) -> ErrorCode {
        match run(q) {
            Err(AuthorizeError::Redirect { error, state, redirect_uri, .. }) => {
                assert_eq!(redirect_uri, CALLBACK);
                assert_eq!(state.as_deref(), Some("s1"));
                error
            }
            other => panic!("expected a redirected error, got {other:?}"),
        }
    }

    #[test]
    fn happy_path() {
        let request = run(&query("&nonce=n&extra=ignored&max_age=10")).unwrap();
        assert_eq!(request.redirect_uri, CALLBACK);
        assert_eq!(request.nonce.as_deref(), Some("n"));
        assert_eq!(request.max_age, Some(10));
    }

    #[test]
    fn oauth_ru01_to_ru06_variants_get_an_error_page() {
        for variant in [
            "https://app.example.com/bff/callback/",
            "https://app.example.com/bff/Callback",
            "https://APP.example.com/bff/callback",
            "https://app.example.com/bff/callback/x",
            "https://app.example.com/bff/callbackx",
            "https://app.example.com/bff/callback/..;/admin",
            "https://app.example.com/bff/callback/../evil",
            "https://app.example.com/bff/callback/%2e%2e/evil",
            "https://app.example.com@evil.example/",
            "https://evil.example\\@app.example.com/",
            "https://app.example.com/bff/callback?next=https://evil",
            "https://app.example.com/bff/callback#x",
            "http://app.example.com/bff/callback",
            "https://app.example.com:443/bff/callback",
            "https://app.example.com./bff/callback",
            "javascript:alert(1)",
            // CS-OP-D05 / D06: a registered query must match exactly; none may be added.
            "https://app.example.com/q?foo=baz",
            "https://app.example.com/q?foo=bar&x=1",
            "https://app.example.com/q",
            "https://app.example.com/other?foo=bar",
        ] {
            let q = format!(
                "client_id=c1&redirect_uri={}&response_type=code&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=S256",
                url::form_urlencoded::byte_serialize(variant.as_bytes()).collect::<String>()
            );
            assert!(matches!(run(&q), Err(AuthorizeError::Page(_))), "{variant} was not refused");
        }
    }

    #[test]
    fn oauth_ru07_omitted_redirect_uri() {
        let q = format!(
            "client_id=c1&response_type=code&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=S256"
        );
        assert!(matches!(run(&q), Err(AuthorizeError::Page(_))), "several registered: no default");
        let mut single = client();
        single.redirect_uris.truncate(1);
        let request = validate(&Params::parse(q.as_bytes()).unwrap(), Some(&single)).unwrap();
        assert_eq!(request.redirect_uri, CALLBACK);
    }

    #[test]
    fn cs_op_b29_unknown_client_and_missing_client_id_get_a_page() {
        let p = Params::parse(query("").as_bytes()).unwrap();
        assert!(matches!(validate(&p, None), Err(AuthorizeError::Page(_))));
        let p = Params::parse(b"response_type=code").unwrap();
        assert!(matches!(validate(&p, Some(&client())), Err(AuthorizeError::Page(_))));
    }

    #[test]
    fn oauth_pk01_to_pk05_pkce_errors_are_redirected() {
        let base = query("").replace(&format!("&code_challenge={CHALLENGE}&code_challenge_method=S256"), "");
        assert_eq!(redirected_error(&base), ErrorCode::InvalidRequest);
        assert_eq!(redirected_error(&format!("{base}&code_challenge={CHALLENGE}")), ErrorCode::InvalidRequest);
        assert_eq!(
            redirected_error(&format!("{base}&code_challenge={CHALLENGE}&code_challenge_method=plain")),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            redirected_error(&format!("{base}&code_challenge=short&code_challenge_method=S256")),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn response_type_scope_prompt_and_request_objects() {
        assert_eq!(redirected_error(&query("").replace("response_type=code&", "")), ErrorCode::InvalidRequest);
        assert_eq!(
            redirected_error(&query("").replace("response_type=code", "response_type=token")),
            ErrorCode::UnsupportedResponseType
        );
        assert_eq!(
            redirected_error(&query("").replace("scope=openid", "scope=openid%20admin")),
            ErrorCode::InvalidScope
        );
        assert_eq!(redirected_error(&query("&prompt=none%20login")), ErrorCode::InvalidRequest);
        assert_eq!(redirected_error(&query("&max_age=-1")), ErrorCode::InvalidRequest);
        assert_eq!(redirected_error(&query("&request=eyJ")), ErrorCode::RequestNotSupported);
        assert_eq!(
            redirected_error(&query("&request_uri=https%3A%2F%2Fapp.example.com%2Fro")),
            ErrorCode::RequestUriNotSupported
        );
        assert_eq!(redirected_error(&query("&response_mode=fragment")), ErrorCode::InvalidRequest);
        assert_eq!(run(&query("&prompt=login")).unwrap().prompt, Prompt::Login);
        assert_eq!(run(&query("&prompt=none")).unwrap().prompt, Prompt::None);
        assert_eq!(run(&query("&prompt=consent")).unwrap().prompt, Prompt::Default);
    }

    #[test]
    fn unauthorized_grant() {
        let mut c = client();
        c.grant_types = vec![GrantType::ClientCredentials];
        let p = Params::parse(query("").as_bytes()).unwrap();
        assert!(matches!(
            validate(&p, Some(&c)),
            Err(AuthorizeError::Redirect { error: ErrorCode::UnauthorizedClient, .. })
        ));
    }

    #[test]
    fn max_age_and_prompt_login_force_reauthentication() {
        let mut request = run(&query("&max_age=10")).unwrap();
        assert!(session_satisfies(&request, 100, 110));
        assert!(!session_satisfies(&request, 100, 111));
        request.prompt = Prompt::Login;
        assert!(!session_satisfies(&request, 100, 100));
    }

    #[test]
    fn response_url_keeps_registered_query_and_adds_iss() {
        let url = response_url("https://a.example/cb?x=1", &[("code", "c")], Some("s t"), "https://id.example");
        assert_eq!(url, "https://a.example/cb?x=1&code=c&state=s+t&iss=https%3A%2F%2Fid.example");
    }
}

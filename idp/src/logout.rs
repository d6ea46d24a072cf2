//! RP-Initiated Logout (OpenID Connect RP-Initiated Logout 1.0): the protocol decisions of the end-session
//! endpoint, without I/O. `EndSessionRequest::parse` reads the parameters, `verify_id_token_hint` checks a hint
//! against our own keys, `EndSessionRequest::client_id` names the client, and `decide` takes the client record
//! and the current IdP session and answers what to do: end a session now or ask the user first, and where to send
//! the browser afterwards. The handler in `http/end_session.rs` does the lookups and the I/O.
//!
//! Policy: a valid `id_token_hint` whose `sid` is the browser's current session (or with no session in the
//! browser) ends that session at once; anything else asks the user to confirm first, so a cross-site request
//! cannot sign anyone out (ASVS 5.0 10.6.2, catalogue EP-ES04). A `post_logout_redirect_uri` is followed only
//! when it is registered for the client named by the hint or `client_id`, compared as an exact string
//! (catalogue CS-OP-L04/L05, OAUTH-OR04); otherwise the user sees an error page, never a redirect.

use gatehouse_proto::claims::{Audience, typ_matches};
use jsonwebtoken::Validation;
use serde::{Deserialize, Serialize};

use crate::keys::KeySet;
use crate::params::Params;
use crate::store::ClientRecord;
use crate::tokens::jose_alg;

/// Longest `id_token_hint` accepted (our ID tokens are far shorter).
const MAX_HINT_BYTES: usize = 8 * 1024;
/// Longest `client_id`, `post_logout_redirect_uri` or `state` accepted.
const MAX_PARAMETER_BYTES: usize = 2048;

/// The end-session request's parameters (RP-Initiated Logout §2). `logout_hint` and `ui_locales` are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndSessionRequest {
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
}

/// What a verified `id_token_hint` tells us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdTokenHint {
    /// The client the ID token was issued to (its `aud`, or `azp` among several audiences).
    pub client_id: String,
    pub sub: String,
    /// The IdP session the ID token was issued in.
    pub sid: Option<String>,
}

/// Why an `id_token_hint` was refused (logged; the user sees one message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HintRejection {
    /// Not a JWS we can read, too long, or an algorithm we never use (`none` included).
    Malformed,
    /// `typ` is not `JWT`: an access token or logout token is not an ID token.
    WrongType,
    /// Signed by a key that is not ours.
    UnknownKey,
    AlgorithmMismatch,
    BadSignature,
    WrongIssuer,
    /// No audience we can name the client by.
    NoClient,
}

/// Why an end-session request is refused. Every one is shown as an error page: never a redirect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogoutError {
    /// RFC 6749 §3.1: a parameter sent twice.
    DuplicateParameter,
    /// A parameter longer than any legitimate value.
    ParameterTooLong,
    InvalidHint(HintRejection),
    /// RP-Initiated Logout §2: `client_id` differs from the hint's audience.
    ClientMismatch,
    /// The hint or `client_id` names no registered client.
    UnknownClient,
    /// RP-Initiated Logout §3: a `post_logout_redirect_uri` without a client to check it against.
    RedirectWithoutClient,
    /// RP-Initiated Logout §3: not registered for the client (exact match).
    UnregisteredRedirect,
}

impl LogoutError {
    /// The message on the error page.
    pub fn message(self) -> &'static str {
        match self {
            Self::DuplicateParameter => "A request parameter was sent more than once.",
            Self::ParameterTooLong => "The sign-out request is malformed.",
            Self::InvalidHint(_) => "The sign-out request could not be verified.",
            Self::ClientMismatch => "The sign-out request names two different applications.",
            Self::UnknownClient => "The application that asked to sign you out is not registered.",
            Self::RedirectWithoutClient => "The sign-out request does not say which application sent it.",
            Self::UnregisteredRedirect => "The address to return to after signing out is not registered.",
        }
    }
}

/// Where the browser goes once signed out: a registered `post_logout_redirect_uri` and the client's `state`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostLogoutRedirect {
    pub uri: String,
    pub state: Option<String>,
}

impl PostLogoutRedirect {
    /// The `Location`: the registered URI with `state` appended when the client sent one (RP-Initiated Logout
    /// §3); nothing else is added.
    pub fn location(&self) -> String {
        let Ok(mut url) = url::Url::parse(&self.uri) else {
            return self.uri.clone(); // registered URIs were validated as absolute URLs
        };
        if let Some(state) = &self.state {
            url.query_pairs_mut().append_pair("state", state);
        }
        url.into()
    }
}

/// What the end-session endpoint does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// End the IdP session `sid` now (none: the browser has no session and the hint names none).
    EndNow { sid: Option<String> },
    /// Ask the user to confirm; confirming ends the browser's current session.
    Confirm,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub next: Next,
    /// Where to go afterwards; `None` shows the signed-out page.
    pub redirect: Option<PostLogoutRedirect>,
}

impl EndSessionRequest {
    /// Reads the parameters of a GET query or POST form (RP-Initiated Logout §2). Unknown ones are ignored.
    pub fn parse(params: &Params) -> Result<Self, LogoutError> {
        let take = |name: &str, limit: usize| match params.get(name) {
            Some(value) if value.len() > limit => Err(LogoutError::ParameterTooLong),
            value => Ok(value.map(str::to_owned)),
        };
        Ok(Self {
            id_token_hint: take("id_token_hint", MAX_HINT_BYTES)?,
            client_id: take("client_id", MAX_PARAMETER_BYTES)?,
            post_logout_redirect_uri: take("post_logout_redirect_uri", MAX_PARAMETER_BYTES)?,
            state: take("state", MAX_PARAMETER_BYTES)?,
        })
    }

    /// The client the request speaks for: the hint's audience, or `client_id`. RP-Initiated Logout §2: when
    /// both are given, they must name the same client.
    pub fn client_id<'a>(&'a self, hint: Option<&'a IdTokenHint>) -> Result<Option<&'a str>, LogoutError> {
        match (hint, self.client_id.as_deref()) {
            (Some(hint), Some(client_id)) if hint.client_id != client_id => Err(LogoutError::ClientMismatch),
            (Some(hint), _) => Ok(Some(hint.client_id.as_str())),
            (None, client_id) => Ok(client_id),
        }
    }
}

/// Decides the end-session request. `client` is the record of `request.client_id(hint)` (the caller refuses a
/// named client that does not exist); `current_sid` is the browser's live IdP session.
pub fn decide(
    request: &EndSessionRequest,
    hint: Option<&IdTokenHint>,
    client: Option<&ClientRecord>,
    current_sid: Option<&str>,
) -> Result<Decision, LogoutError> {
    let redirect = match &request.post_logout_redirect_uri {
        None => None,
        Some(uri) => {
            // RP-Initiated Logout §3: the URI must have been registered by the client the request speaks for.
            let client = client.ok_or(LogoutError::RedirectWithoutClient)?;
            // RP-Initiated Logout §3 (catalogue CS-OP-L05): exact string comparison, no normalisation.
            if !client.post_logout_redirect_uris.iter().any(|registered| registered == uri) {
                return Err(LogoutError::UnregisteredRedirect);
            }
            Some(PostLogoutRedirect { uri: uri.clone(), state: request.state.clone() })
        }
    };
    let next = match (hint, current_sid) {
        // RP-Initiated Logout §2: the hint names the session the browser is in: no need to ask.
        (Some(hint), Some(current)) if hint.sid.as_deref() == Some(current) => {
            Next::EndNow { sid: Some(current.to_owned()) }
        }
        // No session in this browser: end the one the hint names (its grants and clients), if any.
        (Some(hint), None) => Next::EndNow { sid: hint.sid.clone() },
        // Nothing to end and nothing to protect.
        (None, None) => Next::EndNow { sid: None },
        // ASVS 5.0 10.6.2: a request that does not prove it comes from the session's client asks the user first.
        (Some(_), Some(_)) | (None, Some(_)) => Next::Confirm,
    };
    Ok(Decision { next, redirect })
}

/// The claims of an `id_token_hint` we read; others are ignored.
#[derive(Deserialize)]
struct HintClaims {
    iss: String,
    sub: String,
    aud: Audience,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    sid: Option<String>,
}

/// Verifies an `id_token_hint` as an ID token we issued (RP-Initiated Logout §2, OIDC Core §3.1.3.7). An
/// expired hint is accepted: the spec says the OP SHOULD accept one (catalogue EP-ES02).
pub fn verify_id_token_hint(keys: &KeySet, issuer: &str, token: &str) -> Result<IdTokenHint, HintRejection> {
    if token.len() > MAX_HINT_BYTES {
        return Err(HintRejection::Malformed);
    }
    // Compact JWS, no duplicate members, no `crit`, NumericDates in seconds (RFC 8725).
    gatehouse_proto::jose::check_compact(token).map_err(|_| HintRejection::Malformed)?;
    // An `alg` we do not know (`none` included: catalogue CS-OP-L03) fails here.
    let header = jsonwebtoken::decode_header(token).map_err(|_| HintRejection::Malformed)?;
    // RFC 8725 §3.11: our ID tokens are typed `JWT`; an access token or a logout token is not a hint.
    if !typ_matches(header.typ.as_deref(), "jwt") {
        return Err(HintRejection::WrongType);
    }
    // OIDC Core §3.1.3.7 (6): signed by one of our keys (catalogue CS-OP-L02: a foreign key is refused).
    let kid = header.kid.ok_or(HintRejection::UnknownKey)?;
    let (alg, key) = keys.verifier(&kid).ok_or(HintRejection::UnknownKey)?;
    // RFC 8725 §3.1: the algorithm comes from our key, never from the token.
    if header.alg != jose_alg(alg) {
        return Err(HintRejection::AlgorithmMismatch);
    }
    let mut validation = Validation::new(jose_alg(alg));
    validation.validate_exp = false; // RP-Initiated Logout §2: expired hints are accepted
    validation.validate_aud = false; // the audience names the client, checked below
    validation.required_spec_claims.clear();
    let claims =
        jsonwebtoken::decode::<HintClaims>(token, key, &validation).map_err(|_| HintRejection::BadSignature)?.claims;
    // OIDC Core §3.1.3.7 (2): the issuer is us.
    if claims.iss != issuer {
        return Err(HintRejection::WrongIssuer);
    }
    // OIDC Core §3.1.3.7 (3)-(5): one audience is the client; among several, `azp` names it.
    let client_id = match (&claims.aud, claims.azp) {
        (Audience::One(aud), _) => aud.clone(),
        (Audience::Many(list), Some(azp)) if list.contains(&azp) => azp,
        (Audience::Many(list), None) if list.len() == 1 => list[0].clone(),
        _ => return Err(HintRejection::NoClient),
    };
    if client_id.is_empty() || claims.sub.is_empty() {
        return Err(HintRejection::NoClient);
    }
    Ok(IdTokenHint { client_id, sub: claims.sub, sid: claims.sid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySet;
    use crate::settings::MasterKey;
    use crate::store::{KeyState, SigningKeyRecord};
    use gatehouse_proto::claims::IdTokenClaims;
    use gatehouse_proto::vocab::{ClientAuthMethod, GrantType, SigningAlg};

    const ISSUER: &str = "https://id.example.com";
    const SIGNED_OUT: &str = "https://app.example.com/signed-out";

    fn client(post_logout: &[&str]) -> ClientRecord {
        ClientRecord {
            client_id: "web".into(),
            name: None,
            auth_method: ClientAuthMethod::ClientSecretBasic,
            secret_sha256: None,
            jwks: None,
            redirect_uris: vec!["https://app.example.com/cb".into()],
            post_logout_redirect_uris: post_logout.iter().map(|u| (*u).to_owned()).collect(),
            grant_types: vec![GrantType::AuthorizationCode],
            scopes: vec!["openid".into()],
            id_token_signed_response_alg: SigningAlg::RS256,
            backchannel_logout_uri: None,
            source: String::new(),
            require_dpop: false,
            require_dpop_nonce: false,
            require_pushed_authorization_requests: false,
        }
    }

    fn hint(sid: Option<&str>) -> IdTokenHint {
        IdTokenHint { client_id: "web".into(), sub: "sub-a".into(), sid: sid.map(str::to_owned) }
    }

    fn request(redirect: Option<&str>, state: Option<&str>) -> EndSessionRequest {
        EndSessionRequest {
            post_logout_redirect_uri: redirect.map(str::to_owned),
            state: state.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn parse_reads_the_parameters_and_refuses_oversized_ones() {
        let params =
            Params::parse(b"id_token_hint=h&client_id=web&post_logout_redirect_uri=u&state=s&logout_hint=x").unwrap();
        let parsed = EndSessionRequest::parse(&params).unwrap();
        assert_eq!(
            parsed,
            EndSessionRequest {
                id_token_hint: Some("h".into()),
                client_id: Some("web".into()),
                post_logout_redirect_uri: Some("u".into()),
                state: Some("s".into()),
            }
        );
        let long = format!("state={}", "a".repeat(MAX_PARAMETER_BYTES + 1));
        let params = Params::parse(long.as_bytes()).unwrap();
        assert_eq!(EndSessionRequest::parse(&params), Err(LogoutError::ParameterTooLong));
    }

    /// RP-Initiated Logout §2 (catalogue EP-ES03): `client_id` must be the hint's audience.
    #[test]
    fn client_comes_from_the_hint_or_client_id_and_they_must_agree() {
        let with_id = |id: Option<&str>| EndSessionRequest { client_id: id.map(str::to_owned), ..Default::default() };
        let h = hint(None);
        assert_eq!(with_id(None).client_id(Some(&h)), Ok(Some("web")));
        assert_eq!(with_id(Some("web")).client_id(Some(&h)), Ok(Some("web")));
        assert_eq!(with_id(Some("other")).client_id(Some(&h)), Err(LogoutError::ClientMismatch));
        assert_eq!(with_id(Some("other")).client_id(None), Ok(Some("other")));
        assert_eq!(with_id(None).client_id(None), Ok(None));
    }

    /// One row of the decision table.
    struct Case {
        name: &'static str,
        redirect: Option<&'static str>,
        state: Option<&'static str>,
        /// `Some(sid)`: a verified hint naming that session (or none).
        hint: Option<Option<&'static str>>,
        client: bool,
        current: Option<&'static str>,
        expected: Result<(Next, Option<Option<&'static str>>), LogoutError>,
    }

    /// RP-Initiated Logout §2-§3; catalogue CS-OP-L01, L04-L10, EP-ES04. `expected` is the next step and, when
    /// redirecting to the registered URI, the `state` it carries.
    #[test]
    fn decisions() {
        let registered = client(&[SIGNED_OUT]);
        let end = |sid: &str| Next::EndNow { sid: Some(sid.to_owned()) };
        let query_added: &'static str = "https://app.example.com/signed-out?foo=bar";
        let cases = [
            Case {
                name: "L01 hint of the current session",
                redirect: Some(SIGNED_OUT),
                state: Some("xyz"),
                hint: Some(Some("s1")),
                client: true,
                current: Some("s1"),
                expected: Ok((end("s1"), Some(Some("xyz")))),
            },
            Case {
                name: "L09 no state, no state added",
                redirect: Some(SIGNED_OUT),
                state: None,
                hint: Some(Some("s1")),
                client: true,
                current: Some("s1"),
                expected: Ok((end("s1"), Some(None))),
            },
            Case {
                name: "L08 hint only: signed-out page",
                redirect: None,
                state: None,
                hint: Some(Some("s1")),
                client: true,
                current: Some("s1"),
                expected: Ok((end("s1"), None)),
            },
            Case {
                name: "hint without a browser session ends the hinted one",
                redirect: None,
                state: None,
                hint: Some(Some("s1")),
                client: true,
                current: None,
                expected: Ok((end("s1"), None)),
            },
            Case {
                name: "hint of another session asks first",
                redirect: Some(SIGNED_OUT),
                state: None,
                hint: Some(Some("s0")),
                client: true,
                current: Some("s1"),
                expected: Ok((Next::Confirm, Some(None))),
            },
            Case {
                name: "hint without sid asks first",
                redirect: None,
                state: None,
                hint: Some(None),
                client: true,
                current: Some("s1"),
                expected: Ok((Next::Confirm, None)),
            },
            Case {
                name: "L07/EP-ES04 no parameters asks first",
                redirect: None,
                state: None,
                hint: None,
                client: false,
                current: Some("s1"),
                expected: Ok((Next::Confirm, None)),
            },
            Case {
                name: "L10 only state: asks, no redirect",
                redirect: None,
                state: Some("xyz"),
                hint: None,
                client: false,
                current: Some("s1"),
                expected: Ok((Next::Confirm, None)),
            },
            Case {
                name: "client_id without hint asks, then redirects",
                redirect: Some(SIGNED_OUT),
                state: None,
                hint: None,
                client: true,
                current: Some("s1"),
                expected: Ok((Next::Confirm, Some(None))),
            },
            Case {
                name: "nothing to end",
                redirect: None,
                state: None,
                hint: None,
                client: false,
                current: None,
                expected: Ok((Next::EndNow { sid: None }, None)),
            },
            Case {
                name: "L06 redirect without a client",
                redirect: Some(SIGNED_OUT),
                state: None,
                hint: None,
                client: false,
                current: Some("s1"),
                expected: Err(LogoutError::RedirectWithoutClient),
            },
            Case {
                name: "L04 unregistered redirect",
                redirect: Some("https://evil.example/"),
                state: None,
                hint: Some(Some("s1")),
                client: true,
                current: Some("s1"),
                expected: Err(LogoutError::UnregisteredRedirect),
            },
            Case {
                name: "L05 query added",
                redirect: Some(query_added),
                state: None,
                hint: Some(Some("s1")),
                client: true,
                current: Some("s1"),
                expected: Err(LogoutError::UnregisteredRedirect),
            },
        ];
        for case in cases {
            let request = request(case.redirect, case.state);
            let hint = case.hint.map(hint);
            let client = case.client.then_some(&registered);
            let expected = case.expected.map(|(next, redirect)| Decision {
                next,
                redirect: redirect
                    .map(|state| PostLogoutRedirect { uri: SIGNED_OUT.into(), state: state.map(str::to_owned) }),
            });
            assert_eq!(decide(&request, hint.as_ref(), client, case.current), expected, "{}", case.name);
        }
    }

    #[test]
    fn location_appends_only_state() {
        let to = |uri: &str, state: Option<&str>| {
            PostLogoutRedirect { uri: uri.into(), state: state.map(str::to_owned) }.location()
        };
        assert_eq!(to(SIGNED_OUT, Some("a b&c")), format!("{SIGNED_OUT}?state=a+b%26c"));
        assert_eq!(to(SIGNED_OUT, None), SIGNED_OUT);
        assert_eq!(to("https://app.example.com/out?lang=en", Some("x")), "https://app.example.com/out?lang=en&state=x");
    }

    // --- id_token_hint verification -------------------------------------------------------------------------

    /// A key set with one active RS256 key (generated and sealed as the store would hold it).
    fn keys() -> KeySet {
        let master = MasterKey([9; 32]);
        let record: SigningKeyRecord = crate::keys::generate(&master, SigningAlg::RS256, KeyState::Active, 1).unwrap();
        KeySet::from_records(&[record], &master).unwrap()
    }

    fn id_token(keys: &KeySet, typ: &str, iss: &str, aud: Audience, exp: i64) -> String {
        let claims = IdTokenClaims {
            iss: iss.into(),
            sub: "sub-a".into(),
            aud,
            exp,
            iat: exp - 300,
            auth_time: None,
            nonce: Some("n".into()),
            sid: Some("s1".into()),
            azp: None,
            profile: Default::default(),
        };
        crate::tokens::sign(keys, SigningAlg::RS256, typ, &claims).unwrap()
    }

    #[test]
    fn hint_of_ours_is_accepted_even_expired() {
        let keys = keys();
        let token = id_token(&keys, "JWT", ISSUER, Audience::One("web".into()), 1000); // long expired
        assert_eq!(
            verify_id_token_hint(&keys, ISSUER, &token),
            Ok(IdTokenHint { client_id: "web".into(), sub: "sub-a".into(), sid: Some("s1".into()) })
        );
        let many = Audience::Many(vec!["web".into(), "api".into()]);
        assert_eq!(
            verify_id_token_hint(&keys, ISSUER, &id_token(&keys, "JWT", ISSUER, many, 1000)),
            Err(HintRejection::NoClient)
        );
    }

    /// Catalogue CS-OP-L02/L03, EP-ES01: foreign keys, `alg: none`, tampering, other token types, other issuers.
    #[test]
    fn hints_that_are_not_our_id_tokens_are_refused() {
        let (ours, foreign) = (keys(), keys());
        let one = || Audience::One("web".into());
        let good = id_token(&ours, "JWT", ISSUER, one(), 1000);
        let by_foreign_key = id_token(&foreign, "JWT", ISSUER, one(), 1000);
        let access_token = id_token(&ours, "at+jwt", ISSUER, one(), 1000);
        let other_issuer = id_token(&ours, "JWT", "https://evil.example", one(), 1000);
        let parts: Vec<&str> = good.split('.').collect();
        let none_header = gatehouse_proto::b64::encode(br#"{"alg":"none","typ":"JWT"}"#);
        let alg_none = format!("{none_header}.{}.", parts[1]);
        let tampered_payload = gatehouse_proto::b64::encode(
            br#"{"iss":"https://id.example.com","sub":"sub-b","aud":"web","exp":1000,"iat":700,"sid":"s1"}"#,
        );
        let tampered = format!("{}.{tampered_payload}.{}", parts[0], parts[2]);
        for (token, expected) in [
            (by_foreign_key.as_str(), HintRejection::UnknownKey),
            (alg_none.as_str(), HintRejection::Malformed),
            (tampered.as_str(), HintRejection::BadSignature),
            (access_token.as_str(), HintRejection::WrongType),
            (other_issuer.as_str(), HintRejection::WrongIssuer),
            ("not-a-jwt", HintRejection::Malformed),
        ] {
            assert_eq!(verify_id_token_hint(&ours, ISSUER, token), Err(expected), "{token}");
        }
        let oversized = "a".repeat(MAX_HINT_BYTES + 1);
        assert_eq!(verify_id_token_hint(&ours, ISSUER, &oversized), Err(HintRejection::Malformed));
    }
}

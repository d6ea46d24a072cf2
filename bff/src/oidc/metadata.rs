//! The token service's discovery document (OpenID Connect Discovery 1.0 §3, RFC 8414 §2): what the gateway
//! reads of it, parsed into types. Pure: fetching and caching live in `OidcClient`.

use serde::Deserialize;
use url::Url;

use super::OidcError;

/// The members of the discovery document the gateway uses; unknown members are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ProviderMetadata {
    /// The issuer exactly as published; compared with the configured issuer and with `iss` values.
    pub issuer: String,
    #[serde(deserialize_with = "url_value")]
    pub authorization_endpoint: Url,
    #[serde(deserialize_with = "url_value")]
    pub token_endpoint: Url,
    #[serde(deserialize_with = "url_value")]
    pub jwks_uri: Url,
    /// RFC 9126 §5.
    #[serde(default, deserialize_with = "optional_url_value")]
    pub pushed_authorization_request_endpoint: Option<Url>,
    /// RP-Initiated Logout 1.0 §2.1.
    #[serde(default, deserialize_with = "optional_url_value")]
    pub end_session_endpoint: Option<Url>,
    /// RFC 8414 §2 (RFC 7009).
    #[serde(default, deserialize_with = "optional_url_value")]
    pub revocation_endpoint: Option<Url>,
    /// OpenID Connect Prompt Create 1.0 §4.
    #[serde(default)]
    pub prompt_values_supported: Vec<String>,
    /// RFC 9207 §3: the authorization response carries `iss`.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Vec<String>,
}

impl ProviderMetadata {
    /// Parses a discovery document and checks that it describes `expected_issuer` (OIDC Discovery §4.3: the
    /// `issuer` value MUST be identical to the issuer URL the document was fetched for).
    pub fn parse(body: &[u8], expected_issuer: &str) -> Result<Self, OidcError> {
        let metadata: Self = serde_json::from_slice(body)
            .map_err(|e| OidcError::Unavailable(format!("unparsable discovery document: {e}")))?;
        if metadata.issuer != expected_issuer {
            return Err(OidcError::Protocol(format!(
                "the discovery document names issuer {:?}, not the configured {expected_issuer:?}",
                metadata.issuer
            )));
        }
        Ok(metadata)
    }
}

// Endpoints are parsed into `Url`s (the `url` crate is built without its serde feature here).
fn url_value<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Url, D::Error> {
    let text = String::deserialize(deserializer)?;
    Url::parse(&text).map_err(serde::de::Error::custom)
}

fn optional_url_value<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Url>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        Some(text) => Url::parse(&text).map(Some).map_err(serde::de::Error::custom),
        None => Ok(None),
    }
}

/// The issuer as the token service publishes it: `url::Url` adds a trailing slash to a bare origin, which the
/// published issuer does not have (OIDC Discovery §3); any other path is kept as configured.
pub fn issuer_identifier(issuer: &Url) -> String {
    let text = issuer.as_str();
    if issuer.path() == "/" { text.trim_end_matches('/').to_owned() } else { text.to_owned() }
}

/// `<issuer>/.well-known/openid-configuration` (OIDC Discovery §4.1: appended to the issuer's path).
pub fn discovery_url(issuer: &Url) -> Url {
    let mut url = issuer.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend([".well-known", "openid-configuration"]);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(issuer: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "unknown_member": [1, 2, 3],
        }))
        .unwrap()
    }

    #[test]
    fn discovery_url_appends_to_the_issuer_path() {
        let bare = Url::parse("https://id.example.com").unwrap();
        assert_eq!(discovery_url(&bare).as_str(), "https://id.example.com/.well-known/openid-configuration");
        let tenant = Url::parse("https://id.example.com/tenant/").unwrap();
        assert_eq!(discovery_url(&tenant).as_str(), "https://id.example.com/tenant/.well-known/openid-configuration");
        assert_eq!(issuer_identifier(&bare), "https://id.example.com");
        assert_eq!(issuer_identifier(&Url::parse("https://id.example.com/t").unwrap()), "https://id.example.com/t");
    }

    /// OIDC Discovery §4.3: the document's issuer must be the configured one, exactly.
    #[test]
    fn discovery_issuer_must_match_exactly() {
        let parsed = ProviderMetadata::parse(&document("https://id.example.com"), "https://id.example.com").unwrap();
        assert!(parsed.pushed_authorization_request_endpoint.is_none());
        assert!(!parsed.authorization_response_iss_parameter_supported);
        let other = ProviderMetadata::parse(&document("https://evil.example.com"), "https://id.example.com");
        assert!(matches!(other, Err(OidcError::Protocol(_))));
        let slash = ProviderMetadata::parse(&document("https://id.example.com/"), "https://id.example.com");
        assert!(matches!(slash, Err(OidcError::Protocol(_))));
        assert!(matches!(ProviderMetadata::parse(b"{", "x"), Err(OidcError::Unavailable(_))));
    }
}

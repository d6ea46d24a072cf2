//! Scopes (RFC 6749 §3.3): parsing the space-delimited list, checking it against what a client may request,
//! and finding the API audiences that the granted scopes select (RFC 9068 §3 `aud`; RFC 8707 resources).

use crate::settings::ApiResource;

/// OpenID Connect scopes (OIDC Core §5.4, §11): not API scopes.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// A set of scope tokens, order-preserving and without duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(Vec<String>);

impl Scopes {
    /// Parses a `scope` parameter. `None` when a token has characters RFC 6749 §3.3 forbids.
    pub fn parse(value: &str) -> Option<Self> {
        let mut out: Vec<String> = Vec::new();
        for token in value.split(' ').filter(|t| !t.is_empty()) {
            // scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
            if !token.chars().all(|c| matches!(c as u32, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)) {
                return None;
            }
            if !out.iter().any(|t| t == token) {
                out.push(token.to_owned());
            }
        }
        Some(Self(out))
    }

    pub fn from_stored(value: &str) -> Self {
        Self::parse(value).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// True when every scope here is in `allowed`.
    pub fn is_subset_of<S: AsRef<str>>(&self, allowed: &[S]) -> bool {
        self.0.iter().all(|s| allowed.iter().any(|a| a.as_ref() == s))
    }

    pub fn is_subset_of_scopes(&self, other: &Scopes) -> bool {
        self.0.iter().all(|s| other.contains(s))
    }

    /// The API scopes only (everything that is not an OpenID Connect scope).
    pub fn api_scopes(&self) -> Scopes {
        Scopes(self.0.iter().filter(|s| !OIDC_SCOPES.contains(&s.as_str())).cloned().collect())
    }

    /// The audiences of the APIs whose scopes are included, in configuration order.
    pub fn audiences(&self, apis: &[ApiResource]) -> Vec<String> {
        apis.iter().filter(|api| api.scopes.iter().any(|s| self.contains(s))).map(|api| api.audience.clone()).collect()
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order_independence() {
        let a = Scopes::parse("openid  profile openid api").unwrap();
        assert_eq!(a.to_string(), "openid profile api");
        assert!(Scopes::parse("bad\"scope").is_none());
        assert!(Scopes::parse("bad\\scope").is_none());
        let b = Scopes::parse("api profile openid").unwrap();
        assert!(a.is_subset_of_scopes(&b) && b.is_subset_of_scopes(&a));
        assert_eq!(a.api_scopes().to_string(), "api");
    }

    #[test]
    fn audiences_follow_api_scopes() {
        let apis = vec![
            ApiResource { audience: "https://a".into(), scopes: vec!["a.read".into()] },
            ApiResource { audience: "https://b".into(), scopes: vec!["b".into()] },
        ];
        assert_eq!(Scopes::parse("openid a.read").unwrap().audiences(&apis), vec!["https://a"]);
        assert!(Scopes::parse("openid").unwrap().audiences(&apis).is_empty());
        assert_eq!(Scopes::parse("b a.read").unwrap().audiences(&apis).len(), 2);
    }
}

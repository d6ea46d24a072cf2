//! Claim sets: the OpenID Connect standard claims a user carries (OIDC Core §5.1) and which scope releases
//! which claim (OIDC Core §5.4).

use serde::{Deserialize, Serialize};

/// A user's standard claims. Only what is set is released.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

impl StandardClaims {
    /// The claims released for the granted scopes (OIDC Core §5.4): `profile` → name claims, `email` → email.
    pub fn released_for<'a>(&self, scopes: impl IntoIterator<Item = &'a str>) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        let mut put = |key: &str, value: Option<serde_json::Value>| {
            if let Some(value) = value {
                out.insert(key.to_owned(), value);
            }
        };
        for scope in scopes {
            match scope {
                "profile" => {
                    put("name", self.name.clone().map(Into::into));
                    put("given_name", self.given_name.clone().map(Into::into));
                    put("family_name", self.family_name.clone().map(Into::into));
                    put("preferred_username", self.preferred_username.clone().map(Into::into));
                }
                "email" => {
                    put("email", self.email.clone().map(Into::into));
                    put("email_verified", self.email_verified.map(Into::into));
                }
                _ => {}
            }
        }
        out
    }
}

/// The scope values whose claims `released_for` knows.
pub const CLAIM_SCOPES: [&str; 2] = ["profile", "email"];

/// Claim names this project can release (advertised as `claims_supported`).
pub const SUPPORTED_CLAIMS: [&str; 15] = [
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "sid",
    "azp",
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "email",
    "email_verified",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_release_their_claims_only() {
        let claims = StandardClaims {
            name: Some("Alice".into()),
            email: Some("alice@example.com".into()),
            email_verified: Some(true),
            ..Default::default()
        };
        let none = claims.released_for(["openid"]);
        assert!(none.is_empty());
        let profile = claims.released_for(["openid", "profile"]);
        assert_eq!(profile.get("name").unwrap(), "Alice");
        assert!(profile.get("email").is_none());
        let email = claims.released_for(["email"]);
        assert_eq!(email.get("email").unwrap(), "alice@example.com");
        assert_eq!(email.get("email_verified").unwrap(), true);
    }
}

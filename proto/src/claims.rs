//! Claim sets: the OpenID Connect standard claims a user carries (OIDC Core §5.1) and which scope releases
//! which claim (OIDC Core §5.4); the JWT claim sets of access tokens (RFC 9068), ID tokens (OIDC Core §2) and
//! back-channel logout tokens (Back-Channel Logout 1.0 §2.4).

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
    pub fn released_for<'a>(
        &self,
        scopes: impl IntoIterator<Item = &'a str>,
    ) -> serde_json::Map<String, serde_json::Value> {
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

/// `aud`: one string or an array (RFC 7519 §4.1.3). Serialises a single audience as a string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn from_list(mut list: Vec<String>) -> Self {
        if list.len() == 1 { Self::One(list.remove(0)) } else { Self::Many(list) }
    }

    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(a) => a == audience,
            Self::Many(list) => list.iter().any(|a| a == audience),
        }
    }
}

/// Confirmation claim (RFC 7800); `jkt` binds a token to a DPoP key (RFC 9449 §6.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    pub jkt: String,
}

/// JWT access token claims (RFC 9068 §2.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

impl AccessTokenClaims {
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.as_deref().unwrap_or("").split(' ').filter(|s| !s.is_empty())
    }
}

/// ID token claims (OIDC Core §2), plus the standard claims released for the granted scopes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    #[serde(flatten)]
    pub profile: serde_json::Map<String, serde_json::Value>,
}

/// JOSE `typ` of a JWT access token (RFC 9068 §2.1). Compared case-insensitively, `application/` optional.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// True when a JOSE `typ` names the media type `expected` (RFC 7515 §4.1.9: `application/` may be omitted and
/// media types compare case-insensitively).
pub fn typ_matches(typ: Option<&str>, expected: &str) -> bool {
    let Some(typ) = typ else { return false };
    let typ = typ.to_ascii_lowercase();
    typ == expected || typ.strip_prefix("application/") == Some(expected)
}

/// The event a logout token carries (Back-Channel Logout §2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// JOSE `typ` of a logout token (Back-Channel Logout §2.4, errata 1: explicit typing).
pub const LOGOUT_TOKEN_TYP: &str = "logout+jwt";
/// The claims of a logout token (Back-Channel Logout §2.4). It never carries a `nonce` (§2.4: so it cannot be
/// mistaken for an ID token), and this type has no field for one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutTokenClaims {
    pub iss: String,
    /// The client the token is for.
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub sub: String,
    pub sid: String,
    pub events: LogoutEvents,
}

/// `events`: exactly `{"http://schemas.openid.net/event/backchannel-logout": {}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogoutEvents {
    #[serde(rename = "http://schemas.openid.net/event/backchannel-logout")]
    pub backchannel_logout: EmptyObject,
}

/// A JSON object with no members (`{}`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyObject {}

#[cfg(test)]
mod token_claim_tests {
    use super::*;

    #[test]
    fn audience_serialises_one_as_string() {
        assert_eq!(serde_json::to_value(Audience::from_list(vec!["a".into()])).unwrap(), "a");
        assert_eq!(
            serde_json::to_value(Audience::from_list(vec!["a".into(), "b".into()])).unwrap(),
            serde_json::json!(["a", "b"])
        );
        let parsed: Audience = serde_json::from_value(serde_json::json!(["x", "y"])).unwrap();
        assert!(parsed.contains("y") && !parsed.contains("z"));
    }

    #[test]
    fn typ_matching() {
        assert!(typ_matches(Some("at+jwt"), ACCESS_TOKEN_TYP));
        assert!(typ_matches(Some("application/AT+JWT"), ACCESS_TOKEN_TYP));
        assert!(!typ_matches(Some("JWT"), ACCESS_TOKEN_TYP));
        assert!(!typ_matches(None, ACCESS_TOKEN_TYP));
    }
}

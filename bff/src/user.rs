//! The `/bff/user` document, in the shape Duende BFF's user endpoint returns
//! (docs.duendesoftware.com/bff/fundamentals/session/management/user): a JSON array of `{"type", "value"}`
//! claims from the session's ID token, followed by the BFF claims `bff:logout_url`, `bff:session_expires_in`
//! and `bff:session_state`.
//!
//! ```json
//! [ { "type": "sid", "value": "173E7880…" }, { "type": "sub", "value": "88421113" },
//!   { "type": "bff:logout_url", "value": "/bff/logout?sid=173E7880…" },
//!   { "type": "bff:session_expires_in", "value": 28799 } ]
//! ```
//!
//! Protocol-only claims (OpenID Connect Core §2: `iss`, `aud`, `exp`, `iat`, `nbf`, `nonce`, `at_hash`,
//! `c_hash`, `azp`, `jti`) describe the token, not the user, and are left out.

use serde_json::{Map, Value, json};

/// ID token claims that describe the token rather than the user (OpenID Connect Core §2, §3.1.3.6,
/// RFC 7519 §4.1).
const PROTOCOL_CLAIMS: [&str; 10] = ["iss", "aud", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "azp", "jti"];
/// Prefix of the claims the gateway itself adds; the token service cannot supply them.
const BFF_PREFIX: &str = "bff:";

/// The claims array Duende BFF returns: `[{"type":"sub","value":"..."}, ...]` from the ID token claims (a JSON
/// array claim becomes several entries with the same type; numbers/bools as JSON values; objects as JSON text;
/// nulls dropped), minus protocol-only claims and any `bff:` claim, then `bff:logout_url`,
/// `bff:session_expires_in` (seconds, number), and `bff:session_state` when Some.
pub fn user_document(
    claims: &Map<String, Value>,
    logout_url: &str,
    session_expires_in: i64,
    session_state: Option<&str>,
) -> Value {
    let mut document = Vec::with_capacity(claims.len() + 3);
    for (name, value) in claims {
        if PROTOCOL_CLAIMS.contains(&name.as_str()) || name.starts_with(BFF_PREFIX) {
            continue;
        }
        match value {
            Value::Array(items) => {
                document.extend(items.iter().filter_map(claim_value).map(|value| entry(name, value)));
            }
            other => document.extend(claim_value(other).map(|value| entry(name, value))),
        }
    }
    document.push(entry("bff:logout_url", Value::String(logout_url.to_owned())));
    document.push(entry("bff:session_expires_in", Value::from(session_expires_in)));
    if let Some(state) = session_state {
        document.push(entry("bff:session_state", Value::String(state.to_owned())));
    }
    Value::Array(document)
}

/// `/bff/logout?sid=<percent-encoded sid>`
pub fn logout_url(sid: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("sid", sid).finish();
    format!("/bff/logout?{query}")
}

/// One claim value as the document shows it: strings, numbers and bools as themselves, objects and nested
/// arrays as their JSON text (as ASP.NET Core's claim mapping does), null as nothing.
fn claim_value(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Some(value.clone()),
        Value::Object(_) | Value::Array(_) => Some(Value::String(value.to_string())),
    }
}

fn entry(claim_type: &str, value: Value) -> Value {
    json!({ "type": claim_type, "value": value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn values_of<'a>(document: &'a Value, claim_type: &str) -> Vec<&'a Value> {
        document.as_array().unwrap().iter().filter(|e| e["type"] == claim_type).map(|e| &e["value"]).collect()
    }

    #[test]
    fn duende_shape_with_bff_claims_last() {
        let claims = claims(json!({
            "sub": "88421113", "sid": "173E788068FFB728806501F4F46C52D6", "idp": "local", "name": "Bob Smith",
        }));
        let document = user_document(&claims, "/bff/logout?sid=173E788068FFB728806501F4F46C52D6", 28799, Some("q.0"));
        let entries = document.as_array().unwrap();
        assert_eq!(entries.len(), 7);
        for e in entries {
            let object = e.as_object().unwrap();
            assert_eq!(object.len(), 2, "{e}");
            assert!(object["type"].is_string(), "{e}");
        }
        assert_eq!(
            entries[4],
            json!({"type": "bff:logout_url", "value": "/bff/logout?sid=173E788068FFB728806501F4F46C52D6"})
        );
        assert_eq!(entries[5], json!({"type": "bff:session_expires_in", "value": 28799}));
        assert_eq!(entries[6], json!({"type": "bff:session_state", "value": "q.0"}));
        assert_eq!(values_of(&document, "sub"), [&json!("88421113")]);
        assert_eq!(values_of(&document, "name"), [&json!("Bob Smith")]);
    }

    #[test]
    fn session_state_only_when_some() {
        let document = user_document(&claims(json!({"sub": "1"})), "/bff/logout?sid=s", 10, None);
        assert!(values_of(&document, "bff:session_state").is_empty());
        assert_eq!(document.as_array().unwrap().len(), 3);
    }

    #[test]
    fn protocol_claims_are_removed_user_claims_kept() {
        let claims = claims(json!({
            "iss": "https://idp", "aud": ["bff"], "exp": 2, "iat": 1, "nbf": 1, "nonce": "n", "at_hash": "a",
            "c_hash": "c", "azp": "bff", "jti": "j",
            "sub": "u1", "sid": "s1", "auth_time": 1700000000, "amr": ["pwd", "mfa"], "idp": "local",
            "email": "bob@example.com", "email_verified": true,
        }));
        let document = user_document(&claims, "/bff/logout?sid=s1", 60, None);
        for gone in PROTOCOL_CLAIMS {
            assert!(values_of(&document, gone).is_empty(), "{gone} leaked");
        }
        assert_eq!(values_of(&document, "auth_time"), [&json!(1700000000)]);
        assert_eq!(values_of(&document, "amr"), [&json!("pwd"), &json!("mfa")]);
        assert_eq!(values_of(&document, "email_verified"), [&json!(true)]);
        assert_eq!(values_of(&document, "sid"), [&json!("s1")]);
        assert_eq!(values_of(&document, "idp"), [&json!("local")]);
        assert_eq!(values_of(&document, "email"), [&json!("bob@example.com")]);
    }

    #[test]
    fn arrays_objects_and_nulls() {
        let claims = claims(json!({
            "role": ["admin", "user", null, 3, {"k": 1}, ["x"]],
            "address": {"country": "NZ"},
            "middle_name": null,
        }));
        let document = user_document(&claims, "/bff/logout?sid=s", 1, None);
        assert_eq!(
            values_of(&document, "role"),
            [&json!("admin"), &json!("user"), &json!(3), &json!("{\"k\":1}"), &json!("[\"x\"]")]
        );
        assert_eq!(values_of(&document, "address"), [&json!("{\"country\":\"NZ\"}")]);
        assert!(values_of(&document, "middle_name").is_empty());
    }

    #[test]
    fn token_service_cannot_supply_bff_claims() {
        let claims =
            claims(json!({"sub": "1", "bff:logout_url": "https://evil.example/", "bff:session_expires_in": 1}));
        let document = user_document(&claims, "/bff/logout?sid=s", 99, None);
        assert_eq!(values_of(&document, "bff:logout_url"), [&json!("/bff/logout?sid=s")]);
        assert_eq!(values_of(&document, "bff:session_expires_in"), [&json!(99)]);
    }

    #[test]
    fn logout_url_percent_encodes_sid() {
        assert_eq!(logout_url("173E788068FFB728806501F4F46C52D6"), "/bff/logout?sid=173E788068FFB728806501F4F46C52D6");
        assert_eq!(logout_url("a&b=c d/é#"), "/bff/logout?sid=a%26b%3Dc+d%2F%C3%A9%23");
        assert_eq!(logout_url(""), "/bff/logout?sid=");
    }
}

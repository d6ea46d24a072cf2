//! Resource indicators (RFC 8707) at the token endpoint: a client names the API it wants a token for with
//! `resource` (repeatable), and gets an access token whose `aud` is exactly those APIs and whose `scope` keeps
//! only their scopes (plus the OpenID Connect ones). A gateway uses this to give each upstream a token that no
//! other upstream would accept (RFC 9700 §2.3, catalogue BFF-PX11).
//!
//! Without `resource` nothing changes: the audience is every API the granted scopes select.

use crate::error::{ErrorCode, OAuthError};
use crate::params::Params;
use crate::scope::{OIDC_SCOPES, Scopes};
use crate::settings::ApiResource;

/// What one token is issued for: its audiences and its scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub audiences: Vec<String>,
    pub scope: Scopes,
}

/// Longest `resource` value looked at, and most `resource` parameters per request.
const MAX_RESOURCE_LEN: usize = 2048;
const MAX_RESOURCES: usize = 16;

/// The target a token request asks for with `resource`, within `scope` (what the grant allows). `None` without
/// `resource`. Each value must be an absolute URI without a fragment (RFC 8707 §2) that is the audience of a
/// configured API one of whose scopes is in `scope`; anything else is `invalid_target` (RFC 8707 §2).
pub fn requested(params: &Params, scope: &Scopes, apis: &[ApiResource]) -> Result<Option<Target>, OAuthError> {
    let values: Vec<&str> = params.get_all("resource").collect();
    if values.is_empty() {
        return Ok(None);
    }
    if values.len() > MAX_RESOURCES {
        return Err(OAuthError::new(ErrorCode::InvalidTarget, "too many resource parameters"));
    }
    let mut audiences: Vec<String> = Vec::new();
    let mut selected: Vec<&ApiResource> = Vec::new();
    for value in values {
        if value.len() > MAX_RESOURCE_LEN {
            return Err(OAuthError::new(ErrorCode::InvalidTarget, "resource is too long"));
        }
        let uri = url::Url::parse(value)
            .map_err(|_| OAuthError::new(ErrorCode::InvalidTarget, "resource must be an absolute URI"))?;
        if uri.fragment().is_some() {
            return Err(OAuthError::new(ErrorCode::InvalidTarget, "resource must not contain a fragment"));
        }
        let api = apis
            .iter()
            .find(|api| api.audience == value && api.scopes.iter().any(|s| scope.contains(s)))
            .ok_or(OAuthError::new(ErrorCode::InvalidTarget, "resource is unknown or not within the granted scope"))?;
        if !audiences.iter().any(|a| a == value) {
            audiences.push(value.to_owned());
            selected.push(api);
        }
    }
    let kept: Vec<&str> = scope
        .iter()
        .filter(|s| OIDC_SCOPES.contains(s) || selected.iter().any(|api| api.scopes.iter().any(|a| a == s)))
        .collect();
    Ok(Some(Target { audiences, scope: Scopes::from_stored(&kept.join(" ")) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apis() -> Vec<ApiResource> {
        vec![
            ApiResource { audience: "https://orders.example".into(), scopes: vec!["orders".into()] },
            ApiResource { audience: "https://billing.example".into(), scopes: vec!["billing".into()] },
        ]
    }

    fn params(query: &str) -> Params {
        Params::parse(query.as_bytes()).unwrap()
    }

    fn granted() -> Scopes {
        Scopes::parse("openid profile offline_access orders billing").unwrap()
    }

    #[test]
    fn without_resource_nothing_changes() {
        assert_eq!(requested(&params("scope=orders"), &granted(), &apis()).unwrap(), None);
    }

    #[test]
    fn one_resource_narrows_audience_and_scope() {
        let target = requested(&params("resource=https%3A%2F%2Forders.example"), &granted(), &apis()).unwrap().unwrap();
        assert_eq!(target.audiences, ["https://orders.example"]);
        assert_eq!(target.scope.to_string(), "openid profile offline_access orders");
    }

    #[test]
    fn several_resources_are_all_audiences() {
        let query = "resource=https%3A%2F%2Forders.example&resource=https%3A%2F%2Fbilling.example\
                     &resource=https%3A%2F%2Forders.example";
        let target = requested(&params(query), &granted(), &apis()).unwrap().unwrap();
        assert_eq!(target.audiences, ["https://orders.example", "https://billing.example"]);
        assert_eq!(target.scope.to_string(), "openid profile offline_access orders billing");
    }

    #[test]
    fn unknown_relative_fragment_or_ungranted_resources_are_invalid_target() {
        let narrow = Scopes::parse("openid orders").unwrap();
        for (query, scope) in [
            ("resource=https%3A%2F%2Fevil.example", granted()),
            ("resource=%2Forders", granted()),
            ("resource=https%3A%2F%2Forders.example%23frag", granted()),
            ("resource=https%3A%2F%2Fbilling.example", narrow),
            ("resource=https%3A%2F%2FORDERS.example%2F", granted()),
        ] {
            let error = requested(&params(query), &scope, &apis()).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidTarget, "{query}");
        }
    }
}

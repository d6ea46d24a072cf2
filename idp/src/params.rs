//! Request parameters of `application/x-www-form-urlencoded` bodies and query strings, parsed once.
//! RFC 6749 §3.1/§3.2: a parameter sent more than once is an error — except `resource`, which RFC 8707 §2
//! lets a client repeat; parameters without a value are treated as omitted; unknown parameters are ignored by
//! the callers.

/// Parameters that may appear more than once (RFC 8707 §2 `resource`).
const REPEATABLE: [&str; 1] = ["resource"];

#[derive(Clone, Debug, Default)]
pub struct Params(Vec<(String, String)>);

/// A parameter appeared twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateParameter(pub String);

impl Params {
    pub fn parse(raw: &[u8]) -> Result<Self, DuplicateParameter> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded(raw) {
            if !REPEATABLE.contains(&name.as_str()) && pairs.iter().any(|(n, _)| *n == name) {
                return Err(DuplicateParameter(name));
            }
            pairs.push((name, value));
        }
        Ok(Self(pairs))
    }

    /// The value of a parameter; an empty value counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// Every non-empty value of a repeatable parameter, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(n, v)| n == name && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }
}

fn form_urlencoded(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_and_empty_is_absent() {
        assert!(Params::parse(b"a=1&a=2").is_err());
        let p = Params::parse(b"a=1&b=&c=x%20y").unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some("x y"));
    }

    #[test]
    fn resource_may_repeat() {
        let p = Params::parse(b"resource=https%3A%2F%2Fa&resource=https%3A%2F%2Fb&scope=x").unwrap();
        assert_eq!(p.get_all("resource").collect::<Vec<_>>(), ["https://a", "https://b"]);
        assert!(Params::parse(b"scope=a&scope=b").is_err());
    }
}

//! Round-trip properties of what the token service parses (proptest): form / query encode → `Params::parse`
//! (RFC 6749 §3.1, §3.2; `application/x-www-form-urlencoded`), scope encode → parse (RFC 6749 §3.3), and the
//! authorization response's redirect URL (RFC 6749 §4.1.2, RFC 9207) read back by a client. The hostile-input
//! side is fuzzed in `fuzz/` (`authorize_query`, `token_form`).
//!
//!     cargo test -p gatehouse-idp --test roundtrip

use gatehouse_idp::authorize;
use gatehouse_idp::params::{DuplicateParameter, Params};
use gatehouse_idp::scope::Scopes;
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, ..ProptestConfig::default() }
}

/// Parameter names (any text but `resource`, which may repeat) and values (any text).
fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::btree_map(
        any::<String>().prop_filter("resource may repeat", |n| n != "resource"),
        any::<String>(),
        0..12,
    )
    .prop_map(|map| map.into_iter().collect::<Vec<_>>())
    .prop_shuffle()
}

fn encode(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

proptest! {
    #![proptest_config(config(256))]

    /// Distinct parameters, form-encoded as a client library does, parse back to the same names and values in
    /// the same order; an empty value counts as absent.
    #[test]
    fn form_encode_parse(pairs in pairs()) {
        let params = Params::parse(encode(&pairs).as_bytes()).unwrap();
        prop_assert_eq!(params.pairs(), pairs.as_slice());
        for (name, value) in &pairs {
            prop_assert_eq!(params.get(name), Some(value.as_str()).filter(|v| !v.is_empty()));
        }
    }

    /// RFC 6749 §3.1: any parameter sent twice is refused, except `resource` (RFC 8707 §2), whose values come
    /// back in order.
    #[test]
    fn repeated_parameters(pairs in pairs(), at in any::<prop::sample::Index>(), resources in proptest::collection::vec("[ -~]{1,30}", 1..5)) {
        if !pairs.is_empty() {
            let repeated = pairs[at.index(pairs.len())].clone();
            let mut with_repeat = pairs.clone();
            with_repeat.push(repeated.clone());
            prop_assert_eq!(Params::parse(encode(&with_repeat).as_bytes()).unwrap_err(), DuplicateParameter(repeated.0));
        }
        let mut with_resources = pairs.clone();
        with_resources.extend(resources.iter().map(|r| ("resource".to_owned(), r.clone())));
        let params = Params::parse(encode(&with_resources).as_bytes()).unwrap();
        prop_assert_eq!(params.get_all("resource").collect::<Vec<_>>(), resources.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// RFC 6749 §3.3: a scope list written out parses to itself (order kept, duplicates dropped).
    #[test]
    fn scope_encode_parse(tokens in proptest::collection::vec("[!#-\\[\\]-~]{1,12}", 0..8)) {
        let scopes = Scopes::parse(&tokens.join(" ")).unwrap();
        prop_assert_eq!(Scopes::parse(&scopes.to_string()), Some(scopes.clone()));
        let mut distinct: Vec<&str> = Vec::new();
        for token in &tokens {
            if !distinct.contains(&token.as_str()) {
                distinct.push(token);
            }
        }
        prop_assert_eq!(scopes.iter().collect::<Vec<_>>(), distinct);
    }

    /// RFC 6749 §4.1.2 / RFC 9207: the redirect that carries a code keeps the registered URI's own query and
    /// carries `code`, `state` and `iss` so that the client reads them back unchanged.
    #[test]
    fn authorization_response_encode_parse(
        query in proptest::option::of("[a-z]{1,5}=[a-z0-9]{0,5}"),
        code in "[A-Za-z0-9_-]{1,64}",
        state in proptest::option::of(any::<String>().prop_filter("non-empty", |s| !s.is_empty())),
    ) {
        let registered = match &query {
            Some(query) => format!("https://app.test/cb?{query}"),
            None => "https://app.test/cb".to_owned(),
        };
        let location = authorize::response_url(&registered, &[("code", &code)], state.as_deref(), "https://id.test");
        let url = url::Url::parse(&location).unwrap();
        let mut expected: Vec<(String, String)> = Vec::new();
        if let Some(query) = &query {
            expected.extend(url::form_urlencoded::parse(query.as_bytes()).into_owned());
        }
        expected.push(("code".into(), code));
        expected.extend(state.map(|s| ("state".to_owned(), s)));
        expected.push(("iss".into(), "https://id.test".into()));
        prop_assert_eq!(url.query_pairs().into_owned().collect::<Vec<_>>(), expected);
        prop_assert_eq!(url.path(), "/cb");
    }
}

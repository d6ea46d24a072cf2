//! The file's shape as serde sees it, and turning a `toml::Value` tree into it while collecting *every*
//! unknown key (`serde_ignored`) and *every* type error with its key path (`serde_path_to_error`).
//!
//! Every field is optional here; what is required, and every range and cross-field rule, is checked in
//! `validate`, which sees all fields at once and so can report all problems in one pass.

use gatehouse_proto::Secret;
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Visitor};

/// Keys whose values are secrets: a type error there never repeats the value.
const SECRET_KEYS: [&str; 5] = ["master_key", "secret", "password", "client_secret", "keys"];

/// How many type errors are collected before giving up (each one removes a key and retries).
const MAX_TYPE_ERRORS: usize = 64;

/// The outcome of deserialising the tree: the raw config (absent only when type errors could not be
/// worked around), every unknown key and every type error, each with its key path (`idp.clients[0].colour`).
pub struct Deserialized {
    pub raw: Option<RawConfig>,
    pub unknown_keys: Vec<String>,
    pub type_errors: Vec<(String, String)>,
}

/// Deserialises `tree`. A type error is recorded, the offending key is removed and deserialisation is retried,
/// so one run reports all of them; the removed keys then count as unset (validation may add "required"
/// problems for them, which the caller drops as duplicates).
pub fn deserialize(mut tree: toml::Table) -> Deserialized {
    let mut type_errors = Vec::new();
    while type_errors.len() < MAX_TYPE_ERRORS {
        let mut unknown_keys = Vec::new();
        let value = toml::Value::Table(tree.clone());
        let mut record = |path: serde_ignored::Path<'_>| unknown_keys.push(ignored_key_path(&path));
        let ignored = serde_ignored::Deserializer::new(value, &mut record);
        match serde_path_to_error::deserialize::<_, RawConfig>(ignored) {
            Ok(raw) => return Deserialized { raw: Some(raw), unknown_keys, type_errors },
            Err(error) => {
                let path = error.path().clone();
                let key = key_path(&path);
                let secret = match path.iter().next_back() {
                    Some(serde_path_to_error::Segment::Map { key }) => SECRET_KEYS.contains(&key.as_str()),
                    _ => false,
                };
                let message =
                    if secret { "must be a string".to_owned() } else { error.into_inner().message().to_owned() };
                type_errors.push((key, message));
                if !remove_key(&mut tree, &path) {
                    break;
                }
            }
        }
    }
    Deserialized { raw: None, unknown_keys: Vec::new(), type_errors }
}

/// The documented keys one level below `parent` (a key path such as `idp.clients[2]`), for "did you mean"
/// hints. Read from the serde derives themselves, so they cannot drift from the structs.
pub fn known_keys(parent: &str) -> &'static [&'static str] {
    let mut shape = String::new();
    let mut in_index = false;
    for c in parent.chars() {
        match c {
            '[' => {
                in_index = true;
                shape.push_str("[]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => shape.push(c),
        }
    }
    match shape.as_str() {
        "" => field_names::<RawConfig>(),
        "log" => field_names::<RawLog>(),
        "idp" => field_names::<RawIdp>(),
        "idp.tokens" => field_names::<RawTokens>(),
        "idp.login" => field_names::<RawLogin>(),
        "idp.session" => field_names::<RawSession>(),
        "idp.signing" => field_names::<RawSigning>(),
        "idp.dpop" => field_names::<RawDpop>(),
        "idp.apis[]" => field_names::<RawApi>(),
        "idp.clients[]" => field_names::<RawClient>(),
        "idp.users[]" => field_names::<RawUser>(),
        "bff" => field_names::<RawBff>(),
        "bff.tls" => field_names::<RawBffTls>(),
        "bff.oidc" => field_names::<RawBffOidc>(),
        "bff.cookie" => field_names::<RawBffCookie>(),
        "bff.session" => field_names::<RawBffSession>(),
        "bff.routes[]" => field_names::<RawRoute>(),
        "demo_api" => field_names::<RawDemoApi>(),
        "admin" => field_names::<RawAdmin>(),
        _ => &[],
    }
}

// ------------------------------------------------------------------------------------------------------------
// The raw structs (documented in config/gatehouse.toml)

#[derive(Default, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub log: RawLog,
    pub idp: Option<RawIdp>,
    pub bff: Option<RawBff>,
    pub demo_api: Option<RawDemoApi>,
    pub admin: Option<RawAdmin>,
}

#[derive(Default, Deserialize)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

#[derive(Default, Deserialize)]
pub struct RawIdp {
    pub enabled: Option<bool>,
    pub issuer: Option<String>,
    pub listen: Option<String>,
    pub data_dir: Option<String>,
    pub store_url: Option<String>,
    pub master_key: Option<Secret>,
    pub master_key_file: Option<String>,
    pub max_body_bytes: Option<i64>,
    pub require_pushed_authorization_requests: Option<bool>,
    #[serde(default)]
    pub tokens: RawTokens,
    #[serde(default)]
    pub login: RawLogin,
    #[serde(default)]
    pub session: RawSession,
    #[serde(default)]
    pub signing: RawSigning,
    #[serde(default)]
    pub dpop: RawDpop,
    #[serde(default)]
    pub apis: Vec<RawApi>,
    #[serde(default)]
    pub clients: Vec<RawClient>,
    #[serde(default)]
    pub users: Vec<RawUser>,
}

#[derive(Default, Deserialize)]
pub struct RawTokens {
    pub access_token_ttl_seconds: Option<i64>,
    pub id_token_ttl_seconds: Option<i64>,
    pub code_ttl_seconds: Option<i64>,
    pub refresh_token_idle_ttl_seconds: Option<i64>,
    pub refresh_token_absolute_ttl_seconds: Option<i64>,
    pub refresh_reuse_grace_seconds: Option<i64>,
}

#[derive(Default, Deserialize)]
pub struct RawLogin {
    pub max_failures_per_username: Option<i64>,
    pub max_failures_per_ip: Option<i64>,
    pub failure_window_seconds: Option<i64>,
}

#[derive(Default, Deserialize)]
pub struct RawSession {
    pub idle_timeout_seconds: Option<i64>,
    pub absolute_lifetime_seconds: Option<i64>,
}

#[derive(Default, Deserialize)]
pub struct RawSigning {
    pub id_token_alg: Option<String>,
    pub access_token_alg: Option<String>,
    pub key_reload_interval_seconds: Option<i64>,
    pub rotation_interval_seconds: Option<i64>,
    pub propagation_time_seconds: Option<i64>,
    pub retention_time_seconds: Option<i64>,
}

#[derive(Default, Deserialize)]
pub struct RawDpop {
    pub require_nonce: Option<bool>,
    pub nonce_lifetime_seconds: Option<i64>,
    pub proof_max_age_seconds: Option<i64>,
    pub proof_future_skew_seconds: Option<i64>,
}

#[derive(Default, Deserialize)]
pub struct RawApi {
    pub audience: Option<String>,
    pub scopes: Option<Vec<String>>,
}

#[derive(Default, Deserialize)]
pub struct RawClient {
    pub client_id: Option<String>,
    pub name: Option<String>,
    pub auth_method: Option<String>,
    pub secret: Option<Secret>,
    pub secret_file: Option<String>,
    /// An inline table `{ keys = [...] }` or a JSON string.
    pub jwks: Option<toml::Value>,
    pub jwks_file: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub id_token_signed_response_alg: Option<String>,
    pub backchannel_logout_uri: Option<String>,
    pub require_dpop: Option<bool>,
    pub require_dpop_nonce: Option<bool>,
    pub require_pushed_authorization_requests: Option<bool>,
}

#[derive(Default, Deserialize)]
pub struct RawUser {
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<String>,
    pub password_hash: Option<String>,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub preferred_username: Option<String>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
}

#[derive(Default, Deserialize)]
pub struct RawBff {
    pub enabled: Option<bool>,
    pub listen: Option<String>,
    pub public_origin: Option<String>,
    pub threads: Option<i64>,
    pub grace_period_seconds: Option<i64>,
    pub graceful_shutdown_timeout_seconds: Option<i64>,
    pub frontend_dir: Option<String>,
    pub frontend_dev_server: Option<String>,
    pub tls: Option<RawBffTls>,
    #[serde(default)]
    pub oidc: RawBffOidc,
    #[serde(default)]
    pub cookie: RawBffCookie,
    #[serde(default)]
    pub session: RawBffSession,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Default, Deserialize)]
pub struct RawBffTls {
    pub listen: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Default, Deserialize)]
pub struct RawBffOidc {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub use_par: Option<bool>,
    pub id_token_algs: Option<Vec<String>>,
    pub timeout_seconds: Option<i64>,
}

#[derive(Default, Deserialize)]
pub struct RawBffCookie {
    pub name: Option<String>,
    pub same_site: Option<String>,
    pub keys: Option<Vec<Secret>>,
    pub keys_file: Option<String>,
}

#[derive(Default, Deserialize)]
pub struct RawBffSession {
    pub idle_timeout_seconds: Option<i64>,
    pub absolute_lifetime_seconds: Option<i64>,
    pub refresh_skew_seconds: Option<i64>,
    pub cache_capacity: Option<i64>,
    pub store: Option<String>,
    pub store_file: Option<String>,
    pub mode: Option<String>,
}

#[derive(Default, Deserialize)]
pub struct RawRoute {
    pub path: Option<String>,
    pub upstreams: Option<Vec<String>>,
    pub strip_prefix: Option<bool>,
    pub token: Option<String>,
    pub require_csrf: Option<bool>,
    pub required_scopes: Option<Vec<String>>,
    pub resource: Option<String>,
    pub public_base: Option<String>,
    pub connect_timeout_seconds: Option<i64>,
    pub read_timeout_seconds: Option<i64>,
    pub max_body_bytes: Option<i64>,
    pub websockets: Option<bool>,
    pub methods: Option<Vec<String>>,
}

#[derive(Default, Deserialize)]
pub struct RawAdmin {
    pub enabled: Option<bool>,
    pub listen: Option<String>,
}

#[derive(Default, Deserialize)]
pub struct RawDemoApi {
    pub enabled: Option<bool>,
    pub listen: Option<String>,
    pub audience: Option<String>,
    pub public_base: Option<String>,
}

// ------------------------------------------------------------------------------------------------------------
// Helpers

/// serde_ignored's path → `idp.clients[0].colour` (its `?` segments for `Option`/newtypes are dropped).
fn ignored_key_path(path: &serde_ignored::Path<'_>) -> String {
    fn walk(path: &serde_ignored::Path<'_>, out: &mut String) {
        match path {
            serde_ignored::Path::Root => {}
            serde_ignored::Path::Seq { parent, index } => {
                walk(parent, out);
                out.push_str(&format!("[{index}]"));
            }
            serde_ignored::Path::Map { parent, key } => {
                walk(parent, out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    let mut out = String::new();
    walk(path, &mut out);
    out
}

/// serde_path_to_error's path → `idp.clients[0].secret`.
fn key_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key } | serde_path_to_error::Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    if out.is_empty() { "(file)".to_owned() } else { out }
}

/// Removes the key a type error points at: the innermost table key on the path (for an item of a list of
/// plain values, the whole list). False when there is nothing to remove, which ends the retry loop.
fn remove_key(tree: &mut toml::Table, path: &serde_path_to_error::Path) -> bool {
    let segments: Vec<&serde_path_to_error::Segment> = path.iter().collect();
    let Some(last) = segments.iter().rposition(|s| matches!(s, serde_path_to_error::Segment::Map { .. })) else {
        return false;
    };
    let serde_path_to_error::Segment::Map { key } = segments[last] else { return false };
    let mut root = toml::Value::Table(std::mem::take(tree));
    let removed = remove_at(&mut root, &segments[..last], key);
    if let toml::Value::Table(table) = root {
        *tree = table;
    }
    removed
}

fn remove_at(node: &mut toml::Value, route: &[&serde_path_to_error::Segment], key: &str) -> bool {
    match (route.split_first(), node) {
        (None, toml::Value::Table(table)) => table.remove(key).is_some(),
        (Some((serde_path_to_error::Segment::Map { key: step }, rest)), toml::Value::Table(table)) => {
            table.get_mut(step.as_str()).is_some_and(|next| remove_at(next, rest, key))
        }
        (Some((serde_path_to_error::Segment::Seq { index }, rest)), toml::Value::Array(items)) => {
            items.get_mut(*index).is_some_and(|next| remove_at(next, rest, key))
        }
        _ => false,
    }
}

/// The field names of a struct deriving `Deserialize` (serde passes them to `deserialize_struct`).
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Introspect<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Introspect<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("field names only"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("field names only"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Introspect(&mut fields));
    fields
}

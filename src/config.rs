//! Configuration: one TOML file (documented in `config/gatehouse.toml`), overridable key by key from the
//! environment (`GATEHOUSE_` + key path in upper case, `__` between levels, array items by index), secrets also
//! from `*_file`. Unknown keys are collected with `serde_ignored` and rejected, all listed; `validate` turns them into typed settings and gathers
//! every problem, each naming its key.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gatehouse_idp::settings::{
    ApiResource, DpopSettings, LoginSettings, MasterKey, SeedClient, SeedPassword, SeedUser, SessionSettings, Settings,
    SigningSettings, TokenSettings, check_issuer,
};
use gatehouse_idp::store::ClientRecord;
use gatehouse_proto::claims::StandardClaims;
use gatehouse_proto::vocab::{ClientAuthMethod, GrantType, SigningAlg};
use gatehouse_proto::{JwkSet, Secret, b64};
use serde::Deserialize;

/// Environment variables the CLI itself reads; never treated as config overrides.
pub const RESERVED_ENV: [&str; 1] = ["GATEHOUSE_CONFIG"];
pub const ENV_PREFIX: &str = "GATEHOUSE_";

// ------------------------------------------------------------------------------------------------------------
// Raw file shape

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub log: RawLog,
    pub idp: Option<RawIdp>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawIdp {
    pub issuer: Option<String>,
    pub listen: Option<String>,
    pub data_dir: Option<String>,
    pub store_url: Option<String>,
    pub master_key: Option<String>,
    pub master_key_file: Option<String>,
    pub max_body_bytes: Option<i64>,
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

#[derive(Debug, Default, Deserialize)]
pub struct RawTokens {
    pub access_token_ttl_seconds: Option<i64>,
    pub id_token_ttl_seconds: Option<i64>,
    pub code_ttl_seconds: Option<i64>,
    pub refresh_token_idle_ttl_seconds: Option<i64>,
    pub refresh_token_absolute_ttl_seconds: Option<i64>,
    pub refresh_reuse_grace_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLogin {
    pub max_failures_per_username: Option<u32>,
    pub max_failures_per_ip: Option<u32>,
    pub failure_window_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSession {
    pub idle_timeout_seconds: Option<i64>,
    pub absolute_lifetime_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSigning {
    pub id_token_alg: Option<String>,
    pub access_token_alg: Option<String>,
    pub key_reload_interval_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawDpop {
    pub require_nonce: Option<bool>,
    pub nonce_lifetime_seconds: Option<i64>,
    pub proof_max_age_seconds: Option<i64>,
    pub proof_future_skew_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawApi {
    pub audience: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawClient {
    pub client_id: Option<String>,
    pub name: Option<String>,
    pub auth_method: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
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
}

#[derive(Debug, Default, Deserialize)]
pub struct RawUser {
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub password_hash: Option<String>,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub preferred_username: Option<String>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
}

// ------------------------------------------------------------------------------------------------------------
// Validated shape

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug)]
pub struct Config {
    pub log_format: LogFormat,
    pub log_level: String,
    pub idp: IdpConfig,
}

#[derive(Debug)]
pub struct IdpConfig {
    pub settings: Settings,
    /// Where the master key file lives when the key is not given inline (created by `serve` when missing).
    pub master_key_source: MasterKeySource,
    pub users: Vec<SeedUser>,
    pub clients: Vec<SeedClient>,
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub enum MasterKeySource {
    Inline,
    /// A file; `generated_default` when it is the default path (may be created on first start).
    File {
        path: PathBuf,
        default_path: bool,
    },
}

/// One configuration problem, naming its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { key: key.into(), message: message.into() });
    }
}

// ------------------------------------------------------------------------------------------------------------
// Loading

/// Reads, overlays the environment and validates. `env` is injected (tests pass their own).
pub fn load(path: &Path, env: &[(String, String)]) -> Result<Config, Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem { key: path.display().to_string(), message: format!("cannot read the configuration file: {e}") }]
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, &base, env)
}

/// Parses configuration text; relative paths are resolved against `base` (the config file's directory).
pub fn parse(text: &str, base: &Path, env: &[(String, String)]) -> Result<Config, Vec<Problem>> {
    let mut tree: toml::Table = match text.parse() {
        Ok(tree) => tree,
        Err(e) => return Err(vec![Problem { key: "(file)".into(), message: one_line(&e.to_string()) }]),
    };
    let mut problems = Problems::default();
    overlay_env(&mut tree, env, &mut problems);
    // Unknown keys are rejected, all of them at once: serde_ignored reports each one's path.
    let mut unknown = Vec::new();
    let raw: Result<RawConfig, _> =
        serde_ignored::deserialize(toml::Value::Table(tree), |path| unknown.push(path.to_string()));
    for key in unknown {
        problems.add(key_path(&key), "unknown key (see config/gatehouse.toml for the documented keys)");
    }
    let raw = match raw {
        Ok(raw) if problems.0.is_empty() => raw,
        Ok(_) => return Err(problems.0),
        Err(e) => {
            problems.add("(file)", one_line(&e.to_string()));
            return Err(problems.0);
        }
    };
    validate(raw, base)
}

/// `idp.?.clients.0.colour` (serde_ignored's form) → `idp.clients[0].colour`.
fn key_path(raw: &str) -> String {
    let mut out = String::new();
    for segment in raw.split('.').filter(|s| *s != "?") {
        if segment.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Applies `GATEHOUSE_A__B__0__C=value` overrides onto the parsed file.
fn overlay_env(tree: &mut toml::Table, env: &[(String, String)], problems: &mut Problems) {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        if RESERVED_ENV.contains(&name.as_str()) || rest.is_empty() {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(String::is_empty) {
            problems.add(name.clone(), "malformed override: empty key segment");
            continue;
        }
        if let Err(message) = set_path(tree, &path, parse_env_value(value)) {
            problems.add(name.clone(), message);
        }
    }
}

/// An env value as TOML when it is a bool, number or array; otherwise a string.
fn parse_env_value(value: &str) -> toml::Value {
    let trimmed = value.trim();
    if trimmed == "true"
        || trimmed == "false"
        || trimmed.starts_with('[')
        || trimmed.parse::<i64>().is_ok()
        || trimmed.parse::<f64>().is_ok()
    {
        if let Ok(table) = format!("v = {trimmed}").parse::<toml::Table>()
            && let Some(v) = table.get("v")
        {
            return v.clone();
        }
    }
    toml::Value::String(value.to_owned())
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (head, rest) = path.split_first().ok_or("empty key")?;
    if rest.is_empty() {
        table.insert(head.clone(), value);
        return Ok(());
    }
    let entry = table.entry(head.clone()).or_insert_with(|| {
        if rest[0].parse::<usize>().is_ok() {
            toml::Value::Array(Vec::new())
        } else {
            toml::Value::Table(toml::Table::new())
        }
    });
    set_value(entry, rest, value)
}

fn set_value(node: &mut toml::Value, path: &[String], value: toml::Value) -> Result<(), String> {
    match node {
        toml::Value::Table(table) => set_path(table, path, value),
        toml::Value::Array(items) => {
            let index: usize = path[0].parse().map_err(|_| format!("{} is a list: use a numeric index", path[0]))?;
            if index > items.len() {
                return Err(format!("index {index} skips items: the list has {} entries", items.len()));
            }
            if index == items.len() {
                items.push(toml::Value::Table(toml::Table::new()));
            }
            if path.len() == 1 {
                items[index] = value;
                Ok(())
            } else {
                set_value(&mut items[index], &path[1..], value)
            }
        }
        _ => Err(format!("{} is not a table", path[0])),
    }
}

// ------------------------------------------------------------------------------------------------------------
// Validation

const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

fn validate(raw: RawConfig, base: &Path) -> Result<Config, Vec<Problem>> {
    let mut p = Problems::default();
    let log_format = match raw.log.format.as_deref().unwrap_or("pretty") {
        "pretty" => LogFormat::Pretty,
        "json" => LogFormat::Json,
        other => {
            p.add("log.format", format!("{other:?} is not one of \"pretty\", \"json\""));
            LogFormat::Pretty
        }
    };
    let log_level = raw.log.level.unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        p.add("log.level", format!("{log_level:?} is not a valid filter (try \"info\" or \"gatehouse=debug,info\")"));
    }
    let Some(idp) = raw.idp else {
        p.add("idp", "the [idp] section is required");
        return Err(p.0);
    };
    let idp = validate_idp(idp, base, &mut p);
    match idp {
        Some(idp) if p.0.is_empty() => Ok(Config { log_format, log_level, idp }),
        _ => Err(p.0),
    }
}

fn positive(p: &mut Problems, key: &str, value: Option<i64>, default: i64) -> i64 {
    match value {
        None => default,
        Some(v) if v > 0 => v,
        Some(v) => {
            p.add(key, format!("must be a positive number of seconds, not {v}"));
            default
        }
    }
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() { path.to_path_buf() } else { base.join(path) }
}

/// A secret given inline or in a file (trailing newline trimmed); both is an error.
fn secret_from(
    p: &mut Problems,
    key: &str,
    inline: Option<String>,
    file: Option<String>,
    base: &Path,
) -> Option<String> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            p.add(key, format!("set either {key} or {key}_file, not both"));
            None
        }
        (Some(value), None) => Some(value),
        (None, Some(file)) => match std::fs::read_to_string(resolve(base, &file)) {
            Ok(text) => {
                Some(text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text).to_owned())
            }
            Err(e) => {
                p.add(format!("{key}_file"), format!("cannot read {file}: {e}"));
                None
            }
        },
        (None, None) => None,
    }
}

fn validate_idp(raw: RawIdp, base: &Path, p: &mut Problems) -> Option<IdpConfig> {
    let issuer = match raw.issuer.as_deref().map(url::Url::parse) {
        None => {
            p.add(
                "idp.issuer",
                "required (e.g. \"https://id.example.com\", or \"http://localhost:9000\" for development)",
            );
            None
        }
        Some(Err(e)) => {
            p.add("idp.issuer", format!("not a URL: {e}"));
            None
        }
        Some(Ok(url)) => match check_issuer(&url) {
            Ok(()) => Some(url),
            Err(why) => {
                p.add("idp.issuer", why);
                None
            }
        },
    };
    let listen = raw.listen.as_deref().unwrap_or("127.0.0.1:9000");
    let listen = match listen.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            p.add("idp.listen", format!("{listen:?} is not a socket address like \"127.0.0.1:9000\""));
            None
        }
    };
    let data_dir = resolve(base, raw.data_dir.as_deref().unwrap_or("data"));
    let store_url = raw.store_url.unwrap_or_else(|| format!("sqlite://{}", data_dir.join("gatehouse.db").display()));
    if !store_url.starts_with("sqlite:") {
        p.add("idp.store_url", "only sqlite:// store URLs are supported in this version");
    }
    let (master_key, master_key_source) = match (raw.master_key, raw.master_key_file) {
        (Some(_), Some(_)) => {
            p.add("idp.master_key", "set either idp.master_key or idp.master_key_file, not both");
            (None, MasterKeySource::Inline)
        }
        (Some(inline), None) => match parse_master_key(&inline) {
            Some(key) => (Some(key), MasterKeySource::Inline),
            None => {
                p.add(
                    "idp.master_key",
                    "must be 32 bytes, base64url (43 characters; `openssl rand 32 | basenc --base64url`)",
                );
                (None, MasterKeySource::Inline)
            }
        },
        (None, file) => {
            let default_path = file.is_none();
            let path = file.map(|f| resolve(base, &f)).unwrap_or_else(|| data_dir.join("master.key"));
            // The key itself is read when the store is opened (serve may create the default file).
            (Some(MasterKey([0; 32])), MasterKeySource::File { path, default_path })
        }
    };
    let max_body_bytes = match raw.max_body_bytes {
        None => 64 * 1024,
        Some(v) if (1024..=16 * 1024 * 1024).contains(&v) => v as usize,
        Some(v) => {
            p.add("idp.max_body_bytes", format!("must be between 1024 and 16777216, not {v}"));
            64 * 1024
        }
    };
    let d = TokenSettings::default();
    let t = &raw.tokens;
    let tokens = TokenSettings {
        access_token_ttl: positive(
            p,
            "idp.tokens.access_token_ttl_seconds",
            t.access_token_ttl_seconds,
            d.access_token_ttl,
        ),
        id_token_ttl: positive(p, "idp.tokens.id_token_ttl_seconds", t.id_token_ttl_seconds, d.id_token_ttl),
        code_ttl: positive(p, "idp.tokens.code_ttl_seconds", t.code_ttl_seconds, d.code_ttl),
        refresh_token_idle_ttl: positive(
            p,
            "idp.tokens.refresh_token_idle_ttl_seconds",
            t.refresh_token_idle_ttl_seconds,
            d.refresh_token_idle_ttl,
        ),
        refresh_token_absolute_ttl: positive(
            p,
            "idp.tokens.refresh_token_absolute_ttl_seconds",
            t.refresh_token_absolute_ttl_seconds,
            d.refresh_token_absolute_ttl,
        ),
        refresh_reuse_grace: match t.refresh_reuse_grace_seconds {
            None => d.refresh_reuse_grace,
            Some(v) if (0..=300).contains(&v) => v,
            Some(v) => {
                p.add("idp.tokens.refresh_reuse_grace_seconds", format!("must be 0 to 300, not {v}"));
                d.refresh_reuse_grace
            }
        },
    };
    if tokens.code_ttl > 60 {
        p.add("idp.tokens.code_ttl_seconds", "authorization codes live at most 60 seconds (RFC 9700, FAPI 2.0)");
    }
    if tokens.refresh_token_idle_ttl > tokens.refresh_token_absolute_ttl {
        p.add("idp.tokens.refresh_token_idle_ttl_seconds", "must not exceed refresh_token_absolute_ttl_seconds");
    }
    let dl = LoginSettings::default();
    let login = LoginSettings {
        max_failures_per_username: raw.login.max_failures_per_username.unwrap_or(dl.max_failures_per_username).max(1),
        max_failures_per_ip: raw.login.max_failures_per_ip.unwrap_or(dl.max_failures_per_ip).max(1),
        failure_window: positive(
            p,
            "idp.login.failure_window_seconds",
            raw.login.failure_window_seconds,
            dl.failure_window,
        ),
    };
    let ds = SessionSettings::default();
    let session = SessionSettings {
        idle_timeout: positive(
            p,
            "idp.session.idle_timeout_seconds",
            raw.session.idle_timeout_seconds,
            ds.idle_timeout,
        ),
        absolute_lifetime: positive(
            p,
            "idp.session.absolute_lifetime_seconds",
            raw.session.absolute_lifetime_seconds,
            ds.absolute_lifetime,
        ),
    };
    let dg = SigningSettings::default();
    let mut alg = |key: &str, value: Option<String>, default: SigningAlg| match value {
        None => default,
        Some(v) => SigningAlg::parse(&v).unwrap_or_else(|| {
            p.add(key, format!("{v:?} is not one of \"RS256\", \"ES256\""));
            default
        }),
    };
    let id_token_alg = alg("idp.signing.id_token_alg", raw.signing.id_token_alg, dg.id_token_alg);
    let access_token_alg = alg("idp.signing.access_token_alg", raw.signing.access_token_alg, dg.access_token_alg);
    let signing = SigningSettings {
        id_token_alg,
        access_token_alg,
        key_reload_interval: positive(
            p,
            "idp.signing.key_reload_interval_seconds",
            raw.signing.key_reload_interval_seconds,
            dg.key_reload_interval,
        ),
    };
    let dd = DpopSettings::default();
    let dpop = DpopSettings {
        require_nonce: raw.dpop.require_nonce.unwrap_or(dd.require_nonce),
        nonce_lifetime: positive(
            p,
            "idp.dpop.nonce_lifetime_seconds",
            raw.dpop.nonce_lifetime_seconds,
            dd.nonce_lifetime,
        ),
        window: gatehouse_proto::dpop::TimeWindow {
            max_age: positive(p, "idp.dpop.proof_max_age_seconds", raw.dpop.proof_max_age_seconds, dd.window.max_age),
            future_skew: positive(
                p,
                "idp.dpop.proof_future_skew_seconds",
                raw.dpop.proof_future_skew_seconds,
                dd.window.future_skew,
            ),
        },
    };
    if dpop.window.max_age < 10 || dpop.window.future_skew < 10 {
        p.add("idp.dpop", "accept at least 10 seconds of clock skew and proof age (catalogue DD5)");
    }
    let apis = validate_apis(raw.apis, p);
    let api_scopes: BTreeSet<String> = apis.iter().flat_map(|a| a.scopes.iter().cloned()).collect();
    let clients = validate_clients(raw.clients, base, id_token_alg, &api_scopes, p);
    let users = validate_users(raw.users, base, p);
    let settings = Settings {
        issuer: issuer?,
        listen: listen?,
        store_url,
        master_key: master_key?,
        tokens,
        login,
        session,
        signing,
        dpop,
        apis,
        max_body_bytes,
    };
    Some(IdpConfig { settings, master_key_source, users, clients, data_dir })
}

pub fn parse_master_key(text: &str) -> Option<MasterKey> {
    let bytes = b64::decode(text.trim())?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok().map(MasterKey)
}

fn validate_apis(raw: Vec<RawApi>, p: &mut Problems) -> Vec<ApiResource> {
    let mut seen_audiences = BTreeSet::new();
    let mut seen_scopes = BTreeSet::new();
    let mut apis = Vec::new();
    for (i, api) in raw.into_iter().enumerate() {
        let key = format!("idp.apis[{i}]");
        let Some(audience) = api.audience.filter(|a| !a.is_empty()) else {
            p.add(format!("{key}.audience"), "required");
            continue;
        };
        if !seen_audiences.insert(audience.clone()) {
            p.add(format!("{key}.audience"), format!("{audience:?} is declared twice"));
        }
        if api.scopes.is_empty() {
            p.add(format!("{key}.scopes"), "at least one scope");
        }
        for (j, scope) in api.scopes.iter().enumerate() {
            if OIDC_SCOPES.contains(&scope.as_str()) {
                p.add(format!("{key}.scopes[{j}]"), format!("{scope:?} is an OpenID Connect scope, not an API scope"));
            } else if !seen_scopes.insert(scope.clone()) {
                p.add(format!("{key}.scopes[{j}]"), format!("{scope:?} already belongs to another API"));
            }
        }
        apis.push(ApiResource { audience, scopes: api.scopes });
    }
    apis
}

fn validate_clients(
    raw: Vec<RawClient>,
    base: &Path,
    default_alg: SigningAlg,
    api_scopes: &BTreeSet<String>,
    p: &mut Problems,
) -> Vec<SeedClient> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, c) in raw.into_iter().enumerate() {
        let key = format!("idp.clients[{i}]");
        let before = p.0.len();
        let client_id = c.client_id.unwrap_or_default();
        if client_id.is_empty() {
            p.add(format!("{key}.client_id"), "required");
        } else if !seen.insert(client_id.clone()) {
            p.add(format!("{key}.client_id"), format!("{client_id:?} is declared twice"));
        }
        let auth_method = match c.auth_method.as_deref() {
            None => ClientAuthMethod::ClientSecretBasic,
            Some(m) => ClientAuthMethod::parse(m).unwrap_or_else(|| {
                p.add(
                    format!("{key}.auth_method"),
                    format!("{m:?} is not one of client_secret_basic, client_secret_post, private_key_jwt, none"),
                );
                ClientAuthMethod::ClientSecretBasic
            }),
        };
        let secret = secret_from(p, &format!("{key}.secret"), c.secret, c.secret_file, base);
        match (auth_method, &secret) {
            (ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost, None) => {
                p.add(format!("{key}.secret"), "required for client_secret_basic/client_secret_post (or secret_file)")
            }
            (ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost, Some(s)) if s.len() < 32 => p
                .add(
                    format!("{key}.secret"),
                    "must be at least 32 characters (use `gatehouse clients add` to generate one)",
                ),
            (ClientAuthMethod::PrivateKeyJwt | ClientAuthMethod::None, Some(_)) => {
                p.add(format!("{key}.secret"), "only client_secret_basic/client_secret_post clients have a secret")
            }
            _ => {}
        }
        let jwks = match (c.jwks, c.jwks_file) {
            (Some(_), Some(_)) => {
                p.add(format!("{key}.jwks"), "set either jwks or jwks_file, not both");
                None
            }
            (Some(toml::Value::String(json)), None) => parse_jwks(p, &format!("{key}.jwks"), &json),
            (Some(value), None) => match serde_json::to_string(&value) {
                Ok(json) => parse_jwks(p, &format!("{key}.jwks"), &json),
                Err(e) => {
                    p.add(format!("{key}.jwks"), e.to_string());
                    None
                }
            },
            (None, Some(file)) => match std::fs::read_to_string(resolve(base, &file)) {
                Ok(json) => parse_jwks(p, &format!("{key}.jwks_file"), &json),
                Err(e) => {
                    p.add(format!("{key}.jwks_file"), format!("cannot read {file}: {e}"));
                    None
                }
            },
            (None, None) => None,
        };
        let grant_types: Vec<GrantType> = match c.grant_types {
            None => vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(j, g)| {
                    GrantType::parse(g).or_else(|| {
                        p.add(
                            format!("{key}.grant_types[{j}]"),
                            format!("{g:?} is not one of authorization_code, refresh_token, client_credentials"),
                        );
                        None
                    })
                })
                .collect(),
        };
        let scopes = c.scopes.unwrap_or_else(|| vec!["openid".into()]);
        for (j, scope) in scopes.iter().enumerate() {
            if !OIDC_SCOPES.contains(&scope.as_str()) && !api_scopes.contains(scope) {
                p.add(
                    format!("{key}.scopes[{j}]"),
                    format!("{scope:?} is neither an OpenID Connect scope nor a scope of a configured API"),
                );
            }
        }
        let id_token_alg = match c.id_token_signed_response_alg {
            None => default_alg,
            Some(a) => SigningAlg::parse(&a).unwrap_or_else(|| {
                p.add(format!("{key}.id_token_signed_response_alg"), format!("{a:?} is not one of RS256, ES256"));
                default_alg
            }),
        };
        let record = ClientRecord {
            client_id,
            name: c.name,
            auth_method,
            secret_sha256: None,
            jwks,
            redirect_uris: c.redirect_uris,
            post_logout_redirect_uris: c.post_logout_redirect_uris,
            grant_types,
            scopes,
            id_token_signed_response_alg: id_token_alg,
            backchannel_logout_uri: c.backchannel_logout_uri,
            source: "config".into(),
        };
        for problem in gatehouse_idp::admin::check_client(&record) {
            let (field, message) = problem.split_once(": ").unwrap_or(("", &problem));
            let field = field.split_whitespace().next().unwrap_or(field);
            let field = if field == "redirect" { "redirect_uris" } else { field };
            p.add(format!("{key}.{field}"), message.to_owned());
        }
        if p.0.len() == before {
            out.push(SeedClient { record, secret: secret.map(Secret::new) });
        }
    }
    out
}

fn parse_jwks(p: &mut Problems, key: &str, json: &str) -> Option<JwkSet> {
    match serde_json::from_str::<JwkSet>(json) {
        Ok(set) => Some(set),
        Err(e) => {
            p.add(key, format!("not a JWK Set: {e}"));
            None
        }
    }
}

fn validate_users(raw: Vec<RawUser>, base: &Path, p: &mut Problems) -> Vec<SeedUser> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, u) in raw.into_iter().enumerate() {
        let key = format!("idp.users[{i}]");
        let username = u.username.unwrap_or_default();
        if username.is_empty() {
            p.add(format!("{key}.username"), "required");
            continue;
        }
        if !seen.insert(username.clone()) {
            p.add(format!("{key}.username"), format!("{username:?} is declared twice"));
        }
        let plain = secret_from(p, &format!("{key}.password"), u.password, u.password_file, base);
        let password = match (plain, u.password_hash) {
            (Some(_), Some(_)) => {
                p.add(format!("{key}.password"), "set one of password, password_file, password_hash");
                continue;
            }
            (Some(plain), None) if !plain.is_empty() => SeedPassword::Plain(Secret::new(plain)),
            (None, Some(hash)) if gatehouse_idp::password::is_argon2id_phc(&hash) => SeedPassword::Hash(hash),
            (None, Some(_)) => {
                p.add(format!("{key}.password_hash"), "must be an argon2id PHC string ($argon2id$v=19$...)");
                continue;
            }
            _ => {
                p.add(format!("{key}.password"), "required: one of password, password_file, password_hash");
                continue;
            }
        };
        let claims = StandardClaims {
            name: u.name,
            given_name: u.given_name,
            family_name: u.family_name,
            preferred_username: u.preferred_username,
            email: u.email,
            email_verified: u.email_verified,
        };
        out.push(SeedUser { username, password, claims });
    }
    out
}

/// The environment as (name, value) pairs, for `load`.
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = include_str!("../config/gatehouse.toml");

    fn demo_with(env: &[(&str, &str)]) -> Result<Config, Vec<Problem>> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        parse(DEMO, Path::new("config"), &env)
    }

    fn keys(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn the_demo_config_is_valid() {
        let config = demo_with(&[]).unwrap();
        let idp = &config.idp;
        assert_eq!(idp.settings.issuer.as_str(), "http://localhost:9000/");
        assert_eq!(idp.settings.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(idp.users.len(), 2);
        assert_eq!(idp.clients.len(), 2);
        assert!(matches!(idp.master_key_source, MasterKeySource::File { default_path: true, .. }));
    }

    #[test]
    fn every_unknown_key_is_reported() {
        let text = "[idp]\nissuer = \"http://localhost:9000\"\nbogus = 1\n[idp.tokens]\nttl = 3\n[[idp.clients]]\nclient_id = \"x\"\ncolour = \"red\"\n[extra]\n";
        let problems = parse(text, Path::new("."), &[]).unwrap_err();
        let keys = keys(&problems);
        for expected in ["idp.bogus", "idp.tokens.ttl", "idp.clients[0].colour", "extra"] {
            assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
        }
    }

    #[test]
    fn env_overrides_nested_keys_and_array_items() {
        let config = demo_with(&[
            ("GATEHOUSE_IDP__LISTEN", "127.0.0.1:9100"),
            ("GATEHOUSE_IDP__TOKENS__ACCESS_TOKEN_TTL_SECONDS", "60"),
            ("GATEHOUSE_IDP__CLIENTS__0__NAME", "Renamed"),
            ("GATEHOUSE_CONFIG", "ignored.toml"),
        ])
        .unwrap();
        assert_eq!(config.idp.settings.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(config.idp.settings.tokens.access_token_ttl, 60);
        assert_eq!(config.idp.clients[0].record.name.as_deref(), Some("Renamed"));
        let problems = demo_with(&[("GATEHOUSE_IDP__NOPE", "1")]).unwrap_err();
        assert!(keys(&problems).iter().any(|k| k.contains("nope")), "{problems:?}");
    }

    #[test]
    fn secrets_from_files_and_not_both() {
        let dir = std::env::temp_dir().join(format!("gh-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret"), "s".repeat(40) + "\n").unwrap();
        let text = format!(
            "[idp]\nissuer = \"http://localhost:9000\"\n[[idp.apis]]\naudience = \"a\"\nscopes = [\"api\"]\n[[idp.clients]]\nclient_id = \"m\"\nsecret_file = \"secret\"\ngrant_types = [\"client_credentials\"]\nscopes = [\"api\"]\n"
        );
        let config = parse(&text, &dir, &[]).unwrap();
        assert_eq!(config.idp.clients[0].secret.as_ref().unwrap().expose(), "s".repeat(40));
        let both = text.replace("secret_file = \"secret\"", "secret_file = \"secret\"\nsecret = \"x\"");
        let problems = parse(&both, &dir, &[]).unwrap_err();
        assert!(problems.iter().any(|p| p.message.contains("not both")), "{problems:?}");
    }

    #[test]
    fn semantic_problems_are_all_listed_with_their_keys() {
        let text = r#"
[idp]
issuer = "http://id.example.com"
listen = "nowhere"
[idp.tokens]
code_ttl_seconds = 600
[[idp.clients]]
client_id = "a"
secret = "short"
redirect_uris = ["https://ok.example/cb", "https://bad.example/cb#frag"]
scopes = ["openid", "unknown"]
[[idp.clients]]
client_id = "a"
auth_method = "none"
redirect_uris = ["https://x.example/cb"]
"#;
        let problems = parse(text, Path::new("."), &[]).unwrap_err();
        let keys = keys(&problems);
        for expected in [
            "idp.issuer",
            "idp.listen",
            "idp.tokens.code_ttl_seconds",
            "idp.clients[0].secret",
            "idp.clients[0].redirect_uris",
            "idp.clients[0].scopes[1]",
            "idp.clients[1].client_id",
        ] {
            assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
        }
        let issuer = problems.iter().find(|p| p.key == "idp.issuer").unwrap();
        assert!(issuer.message.contains("loopback"), "{issuer}");
    }

    #[test]
    fn master_key_inline() {
        let key = b64::encode([5u8; 32]);
        let config = demo_with(&[("GATEHOUSE_IDP__MASTER_KEY", &key)]).unwrap();
        assert_eq!(config.idp.settings.master_key.0, [5; 32]);
        assert!(demo_with(&[("GATEHOUSE_IDP__MASTER_KEY", "short")]).is_err());
    }
}

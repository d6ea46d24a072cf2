//! Configuration of the `gatehouse` binary: one TOML file (every key documented in `config/gatehouse.toml`),
//! every key overridable from the environment, secrets also from files.
//!
//! `load` reads the file, writes the environment overrides onto its tree (`env`), deserialises it while
//! collecting every unknown key and every type error (`raw`), then turns the raw values into typed settings,
//! gathering every remaining problem (`validate`). The caller gets either a valid `Config` or the complete list
//! of problems, each naming its key path (`idp.clients[0].redirect_uris[1]`) — and the environment variable,
//! when one set it — most with a hint. Nothing here panics on bad input, and nothing is global: the
//! environment is passed in.

mod env;
mod gateway;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gatehouse_idp::settings::{
    ApiResource, DpopSettings, LoginSettings, MasterKey, SeedClient, SeedUser, SessionSettings, Settings,
    SigningSettings, TokenSettings,
};
use url::Url;

pub use env::process_env;
pub use validate::{MIN_PASSWORD_CHARS, decode_master_key};

/// A valid configuration.
#[derive(Debug)]
pub struct Config {
    pub log: LogSettings,
    pub idp: IdpConfig,
    /// The gateway (`[bff]`), when configured.
    pub bff: Option<gatehouse_bff::BffSettings>,
    /// The demo API run in process (`[demo_api]`), when configured.
    pub demo_api: Option<DemoApiConfig>,
    /// The admin listener (`[admin]`: health and readiness), when configured.
    pub admin: Option<AdminConfig>,
    /// Things that are allowed but worth a warning (`config check` prints them, `serve` logs them).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter directive (`RUST_LOG` wins when set).
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The admin listener: operators' endpoints (`/healthz`, `/readyz`), apart from user traffic.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

/// The example API started beside the gateway in the demo.
#[derive(Debug, Clone)]
pub struct DemoApiConfig {
    pub listen: SocketAddr,
    pub issuer: String,
    pub audience: String,
    pub public_base: String,
}

/// The token service's part of the file.
#[derive(Debug)]
pub struct IdpConfig {
    /// `serve` runs the token service (`idp.enabled`, default true). Off, the process runs only the gateway and
    /// the demo API, which still use `issuer` (and the gateway `data_dir`); admin commands ignore it.
    pub enabled: bool,
    pub issuer: Url,
    pub listen: SocketAddr,
    /// Absolute; holds the embedded store and the default master key file.
    pub data_dir: PathBuf,
    /// `sqlite://` with an absolute path, or `sqlite::memory:`.
    pub store_url: String,
    pub master_key: MasterKeySource,
    pub max_body_bytes: usize,
    /// Every client must push its authorization requests (RFC 9126).
    pub require_pushed_authorization_requests: bool,
    pub tokens: TokenSettings,
    pub login: LoginSettings,
    pub session: SessionSettings,
    pub signing: SigningSettings,
    pub dpop: DpopSettings,
    pub apis: Vec<ApiResource>,
    pub clients: Vec<SeedClient>,
    pub users: Vec<ConfigUser>,
}

/// A user declared in the file.
#[derive(Debug)]
pub struct ConfigUser {
    pub seed: SeedUser,
    /// The plain password is written in the file itself (`password = "…"`), the demo style: only such
    /// passwords are ever shown, and only by `serve` in a loopback demo.
    pub password_in_file: bool,
}

/// Where the master key comes from.
#[derive(Debug)]
pub enum MasterKeySource {
    /// `idp.master_key` (in the file or from `GATEHOUSE_IDP__MASTER_KEY`).
    Inline(MasterKey),
    /// `idp.master_key_file`, read when the configuration was loaded.
    File { path: PathBuf, key: MasterKey },
    /// Neither was set: `<data_dir>/master.key`; `None` until `serve` (or `keys rotate`) creates it.
    Default { path: PathBuf, key: Option<MasterKey> },
}

impl IdpConfig {
    /// The token service's settings, with the master key the caller read or created.
    pub fn settings(&self, master_key: MasterKey) -> Settings {
        Settings {
            issuer: self.issuer.clone(),
            listen: self.listen,
            store_url: self.store_url.clone(),
            master_key,
            tokens: self.tokens.clone(),
            login: self.login.clone(),
            session: self.session.clone(),
            signing: self.signing.clone(),
            dpop: self.dpop.clone(),
            apis: self.apis.clone(),
            max_body_bytes: self.max_body_bytes,
            require_pushed_authorization_requests: self.require_pushed_authorization_requests,
        }
    }

    /// The users to seed into the store.
    pub fn seed_users(&self) -> Vec<SeedUser> {
        self.users.iter().map(|u| u.seed.clone()).collect()
    }

    /// The issuer is the published one, without the trailing slash `url::Url` adds to a bare origin.
    pub fn issuer_text(&self) -> String {
        let text = self.issuer.as_str();
        if self.issuer.path() == "/" { text.trim_end_matches('/').to_owned() } else { text.to_owned() }
    }

    /// A local demo: the issuer names a loopback host and the listener is bound to a loopback address.
    pub fn is_loopback_demo(&self) -> bool {
        validate::is_loopback_host(&self.issuer) && self.listen.ip().is_loopback()
    }

    /// Every scope a client may be given: the OpenID Connect scopes and each API's scopes.
    pub fn is_known_scope(&self, scope: &str) -> bool {
        validate::OIDC_SCOPES.contains(&scope) || self.apis.iter().any(|api| api.scopes.iter().any(|s| s == scope))
    }
}

/// One configuration problem: the key it is about, the environment variable that set that key (if any), what
/// is wrong, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub env: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), env: None, message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn set_by(mut self, variable: impl Into<String>) -> Self {
        self.env = Some(variable.into());
        self
    }
}

impl fmt::Display for Problem {
    /// `idp.listen (GATEHOUSE_IDP__LISTEN): "x" is not a socket address …`; the hint is shown separately.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.env {
            Some(variable) => write!(f, "{} (set by {variable}): {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Reads the file at `path`, applies the overrides in `env` (`process_env()` in the binary) and validates.
/// Relative paths in the file are relative to the file's directory.
pub fn load(path: &Path, env: &[(String, String)]) -> Result<Config, Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![
            Problem::new(path.display().to_string(), format!("cannot read the configuration file: {e}")).with_hint(
                "pass --config PATH or set GATEHOUSE_CONFIG; config/gatehouse.toml is the documented example",
            ),
        ]
    })?;
    let directory = path.parent().unwrap_or(Path::new(""));
    let directory = std::path::absolute(directory).unwrap_or_else(|_| directory.to_path_buf());
    parse(&text, &directory, env)
}

/// The cookie keys the file at `path` (with the overrides in `env`) sets now, newest first, for a running gateway
/// to switch to (`serve` calls this on SIGHUP): `bff.cookie.keys`, then `bff.cookie.keys_file`. `None` when it sets
/// none (the running gateway then keeps its keys). Only the keys are re-read, but a file with any syntax, type or
/// unknown-key problem is refused as a whole, as `serve` would refuse it.
pub fn load_cookie_keys(
    path: &Path,
    env: &[(String, String)],
) -> Result<Option<Vec<gatehouse_bff::settings::CookieKey>>, Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem::new(path.display().to_string(), format!("cannot read the configuration file: {e}"))]
    })?;
    let directory = path.parent().unwrap_or(Path::new(""));
    let base = std::path::absolute(directory).unwrap_or_else(|_| directory.to_path_buf());
    let mut tree: toml::Table = text.parse().map_err(|error| vec![syntax_problem(&text, &error)])?;
    let (_, mut problems) = env::overlay(&mut tree, env);
    let deserialized = raw::deserialize(tree);
    problems.extend(deserialized.unknown_keys.into_iter().map(unknown_key));
    problems.extend(deserialized.type_errors.into_iter().map(|(key, message)| Problem::new(key, message)));
    let bff = match deserialized.raw.and_then(|raw| raw.bff) {
        Some(bff) if bff.enabled != Some(false) => bff,
        _ => {
            problems.push(Problem::new("bff", "the gateway is not configured in this file (any more)"));
            return Err(problems);
        }
    };
    let mut found = validate::Problems::default();
    let keys = gateway::cookie_keys(&mut found, bff.cookie.keys, bff.cookie.keys_file, &base);
    problems.extend(found.0);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok((!keys.is_empty()).then_some(keys))
}

/// Parses configuration text; relative paths are resolved against `base` (the file's directory).
pub fn parse(text: &str, base: &Path, env: &[(String, String)]) -> Result<Config, Vec<Problem>> {
    let mut tree: toml::Table = match text.parse() {
        Ok(tree) => tree,
        Err(error) => return Err(vec![syntax_problem(text, &error)]),
    };
    let (origins, mut problems) = env::overlay(&mut tree, env);
    let deserialized = raw::deserialize(tree);
    for key in deserialized.unknown_keys {
        problems.push(unknown_key(key));
    }
    let mut mistyped = Vec::new();
    for (key, message) in deserialized.type_errors {
        let hint = match origin(&origins, &key) {
            Some(variable) => format!(
                "{variable} is read as TOML when it looks like a number, boolean or list; \
                 to pass text, wrap it in double quotes ('\"…\"')"
            ),
            None => "see config/gatehouse.toml for this key's type".to_owned(),
        };
        problems.push(Problem::new(key.clone(), message).with_hint(hint));
        mistyped.push(key);
    }
    let mut config = None;
    if let Some(raw) = deserialized.raw {
        match validate::validate(raw, base) {
            Ok(valid) => config = Some(valid),
            // A mistyped key was removed before validation, which may now call it missing: said already.
            Err(found) => problems.extend(found.into_iter().filter(|p| !mistyped.iter().any(|k| covers(k, &p.key)))),
        }
    }
    for problem in &mut problems {
        if problem.env.is_none() {
            problem.env = origin(&origins, &problem.key);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    problems.retain(|p| seen.insert((p.key.clone(), p.message.clone())));
    match config {
        Some(mut config) if problems.is_empty() => {
            // A password from the environment is not "written in the file": never shown.
            for (i, user) in config.idp.users.iter_mut().enumerate() {
                if origins.contains_key(&format!("idp.users[{i}].password")) {
                    user.password_in_file = false;
                }
            }
            Ok(config)
        }
        _ => Err(problems),
    }
}

/// A TOML syntax error, with its line and column but without the offending line (it may hold a secret).
fn syntax_problem(text: &str, error: &toml::de::Error) -> Problem {
    let message = error.message().trim().to_owned();
    let Some(span) = error.span() else {
        return Problem::new("(file)", format!("not valid TOML: {message}"));
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Problem::new("(file)", format!("not valid TOML at line {line}, column {column}: {message}"))
}

/// An unknown key, with the closest documented key as a suggestion, or the keys allowed there.
fn unknown_key(key: String) -> Problem {
    let (parent, leaf) = key.rsplit_once('.').unwrap_or(("", key.as_str()));
    let known = raw::known_keys(parent);
    let closest = known.iter().map(|k| (edit_distance(leaf, k), *k)).min();
    let hint = match closest {
        Some((distance, suggestion)) if distance <= 2.max(leaf.len() / 3) => format!("did you mean `{suggestion}`?"),
        _ if known.is_empty() => "see config/gatehouse.toml for the documented keys".to_owned(),
        _ => format!("keys allowed here: {}", known.join(", ")),
    };
    Problem::new(key, "unknown key").with_hint(hint)
}

/// The environment variable that set `key` or a key containing it.
fn origin(origins: &BTreeMap<String, String>, key: &str) -> Option<String> {
    origins.iter().filter(|(set, _)| covers(set, key)).max_by_key(|(set, _)| set.len()).map(|(_, v)| v.clone())
}

/// Whether key path `outer` is `inner` or contains it (`idp.clients` covers `idp.clients[0].secret`).
fn covers(outer: &str, inner: &str) -> bool {
    inner.strip_prefix(outer).is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use gatehouse_idp::settings::SeedPassword;
    use gatehouse_proto::b64;

    use super::*;

    const DEMO: &str = include_str!("../config/gatehouse.toml");

    /// A fresh directory standing in for the config file's directory.
    /// Holds `examples/spa`, which the demo's `bff.frontend_dir` ("../examples/spa" from `config/`) names.
    fn config_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("examples/spa")).expect("spa dir");
        dir
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn demo_with(pairs: &[(&str, &str)]) -> Result<Config, Vec<Problem>> {
        let dir = config_dir();
        parse(DEMO, &dir.path().join("config"), &env(pairs))
    }

    fn problems_of(text: &str) -> Vec<Problem> {
        let dir = config_dir();
        parse(text, dir.path(), &[]).expect_err("problems expected")
    }

    fn keys(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    fn problem<'a>(problems: &'a [Problem], key: &str) -> &'a Problem {
        problems.iter().find(|p| p.key == key).unwrap_or_else(|| panic!("no problem for {key} in {problems:#?}"))
    }

    const MINIMAL: &str = "[idp]\nissuer = \"http://localhost:9000\"\n";

    #[test]
    fn the_demo_config_is_valid() {
        let dir = config_dir();
        let config = parse(DEMO, &dir.path().join("config"), &[]).unwrap();
        let idp = &config.idp;
        assert_eq!(idp.issuer_text(), "http://localhost:9000");
        assert_eq!(idp.listen.to_string(), "127.0.0.1:9000");
        // data_dir = "../data" is relative to the file's directory: <repo>/config/../data = <repo>/data.
        assert_eq!(idp.data_dir, dir.path().join("data"));
        assert_eq!(idp.store_url, format!("sqlite://{}", dir.path().join("data/gatehouse.db").display()));
        let MasterKeySource::Default { key: None, path } = &idp.master_key else { panic!("{:?}", idp.master_key) };
        assert_eq!(*path, dir.path().join("data/master.key"));
        assert_eq!(idp.tokens, TokenSettings::default());
        assert_eq!(
            idp.apis,
            vec![ApiResource { audience: "http://localhost:8080/api".into(), scopes: vec!["api".into()] }]
        );
        let client_ids: Vec<&str> = idp.clients.iter().map(|c| c.record.client_id.as_str()).collect();
        assert_eq!(client_ids, ["gatehouse-bff", "demo-m2m"]);
        let bff = &idp.clients[0];
        assert_eq!(bff.secret.as_ref().unwrap().expose(), "demo-bff-secret-0123456789abcdefghijklmnopqrstuv");
        assert_eq!(bff.record.backchannel_logout_uri.as_deref(), Some("http://localhost:8080/bff/backchannel"));
        let alice = &idp.users[0];
        assert_eq!(alice.seed.username, "alice");
        assert!(alice.password_in_file);
        assert!(matches!(&alice.seed.password, SeedPassword::Plain(p) if p.expose() == "alice-password"));
        assert_eq!(alice.seed.claims.name.as_deref(), Some("Alice Liddell"));
        assert_eq!(alice.seed.claims.email_verified, Some(true));
        assert_eq!(idp.users[1].seed.claims.email.as_deref(), Some("bob@example.com"));
        assert!(idp.is_loopback_demo());
        assert_eq!(config.log.format, LogFormat::Pretty);
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_path_and_a_suggestion() {
        let text = r#"
colour = "red"
[idp]
issuer = "http://localhost:9000"
bogus = 1
[idp.tokens]
acess_token_ttl_seconds = 3
[[idp.clients]]
client_id = "x"
colour = "red"
[[idp.clients]]
client_id = "y"
redirect_uri = ["https://y.example/cb"]
[extra]
a = 1
"#;
        let problems = problems_of(text);
        let keys = keys(&problems);
        for expected in [
            "colour",
            "idp.bogus",
            "idp.tokens.acess_token_ttl_seconds",
            "idp.clients[0].colour",
            "idp.clients[1].redirect_uri",
            "extra",
        ] {
            assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
        }
        let typo = problem(&problems, "idp.tokens.acess_token_ttl_seconds");
        assert_eq!(typo.hint.as_deref(), Some("did you mean `access_token_ttl_seconds`?"));
        let typo = problem(&problems, "idp.clients[1].redirect_uri");
        assert_eq!(typo.hint.as_deref(), Some("did you mean `redirect_uris`?"));
        assert!(problem(&problems, "extra").hint.as_deref().unwrap().contains("log, idp"));
    }

    #[test]
    fn every_type_error_is_reported_with_its_path_and_secrets_are_not_echoed() {
        let text = r#"
[idp]
issuer = "http://localhost:9000"
listen = 9000
[idp.tokens]
access_token_ttl_seconds = "five minutes"
[[idp.users]]
username = "carol"
password = 12345678
[[idp.clients]]
client_id = "c"
scopes = ["openid", 7]
"#;
        let problems = problems_of(text);
        let keys = keys(&problems);
        for expected in
            ["idp.listen", "idp.tokens.access_token_ttl_seconds", "idp.users[0].password", "idp.clients[0].scopes[1]"]
        {
            assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
        }
        assert!(problem(&problems, "idp.tokens.access_token_ttl_seconds").message.contains("five minutes"));
        let password = problem(&problems, "idp.users[0].password");
        assert!(!password.message.contains("12345678"), "{password}");
        // The removed key is not reported a second time as missing.
        assert_eq!(keys.iter().filter(|k| **k == "idp.users[0].password").count(), 1, "{problems:#?}");
    }

    #[test]
    fn env_overrides_nested_keys_and_list_items() {
        let config = demo_with(&[
            ("GATEHOUSE_IDP__LISTEN", "127.0.0.1:9100"),
            ("GATEHOUSE_IDP__TOKENS__ACCESS_TOKEN_TTL_SECONDS", "60"),
            ("gatehouse_ignored_lowercase_prefix", "x"),
            ("GATEHOUSE_IDP__CLIENTS__0__SECRET", "another-secret-of-at-least-32-characters"),
            ("GATEHOUSE_IDP__CLIENTS__1__SCOPES", "[\"api\"]"),
            ("GATEHOUSE_Idp__Users__0__Name", "Alice L."),
            ("GATEHOUSE_LOG__FORMAT", "json"),
            ("GATEHOUSE_CONFIG", "ignored.toml"),
        ])
        .unwrap();
        assert_eq!(config.idp.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(config.idp.tokens.access_token_ttl, 60);
        assert_eq!(config.idp.clients[0].secret.as_ref().unwrap().expose(), "another-secret-of-at-least-32-characters");
        assert_eq!(config.idp.users[0].seed.claims.name.as_deref(), Some("Alice L."));
        assert_eq!(config.log.format, LogFormat::Json);
    }

    #[test]
    fn env_overrides_can_add_list_items() {
        let config = demo_with(&[
            ("GATEHOUSE_IDP__USERS__2__USERNAME", "carol"),
            ("GATEHOUSE_IDP__USERS__2__PASSWORD", "carol-password"),
            ("GATEHOUSE_IDP__USERS__0__PASSWORD", "from-the-environment"),
        ])
        .unwrap();
        assert_eq!(config.idp.users[2].seed.username, "carol");
        // Passwords from the environment are never "written in the file", so never shown.
        assert!(!config.idp.users[2].password_in_file);
        assert!(!config.idp.users[0].password_in_file);
        assert!(config.idp.users[1].password_in_file);
    }

    #[test]
    fn env_problems_name_the_variable() {
        let problems = demo_with(&[
            ("GATEHOUSE_IDP__NOPE", "1"),
            ("GATEHOUSE_IDP__TOKENS__CODE_TTL_SECONDS", "600"),
            ("GATEHOUSE_IDP__LISTEN__PORT", "1"),
            ("GATEHOUSE_IDP__USERS__0__PASSWORD", "12345678"),
        ])
        .unwrap_err();
        let unknown = problem(&problems, "idp.nope");
        assert_eq!(unknown.env.as_deref(), Some("GATEHOUSE_IDP__NOPE"));
        assert!(unknown.to_string().contains("GATEHOUSE_IDP__NOPE"), "{unknown}");
        let ttl = problem(&problems, "idp.tokens.code_ttl_seconds");
        assert_eq!(ttl.env.as_deref(), Some("GATEHOUSE_IDP__TOKENS__CODE_TTL_SECONDS"));
        assert_eq!(problem(&problems, "idp.listen.port").env.as_deref(), Some("GATEHOUSE_IDP__LISTEN__PORT"));
        // A number where a string is expected: the hint says how to quote it.
        let password = problem(&problems, "idp.users[0].password");
        assert!(password.hint.as_deref().unwrap().contains("double quotes"), "{password:?}");
        let quoted = demo_with(&[("GATEHOUSE_IDP__USERS__0__PASSWORD", "\"12345678\"")]).unwrap();
        assert!(matches!(&quoted.idp.users[0].seed.password, SeedPassword::Plain(p) if p.expose() == "12345678"));
    }

    #[test]
    fn secrets_come_from_files_relative_to_the_config_directory() {
        let dir = config_dir();
        std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
        std::fs::write(dir.path().join("secrets/m2m"), format!("{}\n", "s".repeat(40))).unwrap();
        std::fs::write(dir.path().join("secrets/carol"), "carol-password\r\n").unwrap();
        std::fs::write(dir.path().join("secrets/master"), format!("{}\n", b64::encode([9u8; 32]))).unwrap();
        let text = r#"
[idp]
issuer = "https://id.example.com"
master_key_file = "secrets/master"
[[idp.apis]]
audience = "https://api.example.com"
scopes = ["api"]
[[idp.clients]]
client_id = "m2m"
secret_file = "secrets/m2m"
grant_types = ["client_credentials"]
scopes = ["api"]
[[idp.users]]
username = "carol"
password_file = "secrets/carol"
"#;
        let config = parse(text, dir.path(), &[]).unwrap();
        assert_eq!(config.idp.clients[0].secret.as_ref().unwrap().expose(), "s".repeat(40));
        assert!(matches!(&config.idp.users[0].seed.password, SeedPassword::Plain(p) if p.expose() == "carol-password"));
        assert!(!config.idp.users[0].password_in_file);
        assert!(matches!(&config.idp.master_key, MasterKeySource::File { key, .. } if key.0 == [9; 32]));
        let missing = parse(&text.replace("secrets/m2m", "secrets/nothing"), dir.path(), &[]).unwrap_err();
        assert_eq!(keys(&missing), ["idp.clients[0].secret_file"]);
    }

    #[test]
    fn a_secret_and_its_file_together_are_refused() {
        let dir = config_dir();
        std::fs::write(dir.path().join("pw"), "carol-password\n").unwrap();
        std::fs::write(dir.path().join("key"), b64::encode([1u8; 32])).unwrap();
        let key = b64::encode([1u8; 32]);
        let secret = "x".repeat(40);
        let text = format!(
            r#"{MINIMAL}master_key = "{key}"
master_key_file = "key"
[[idp.users]]
username = "carol"
password = "carol-password"
password_file = "pw"
[[idp.clients]]
client_id = "c"
redirect_uris = ["http://localhost/cb"]
secret = "{secret}"
secret_file = "pw"
"#
        );
        let problems = parse(&text, dir.path(), &[]).unwrap_err();
        for key in ["idp.master_key", "idp.users[0].password", "idp.clients[0].secret"] {
            assert!(problem(&problems, key).message.contains("not both"), "{problems:#?}");
        }
        assert_eq!(problems.len(), 3, "{problems:#?}");
    }

    #[test]
    fn a_plain_http_issuer_off_loopback_is_refused_with_the_reason() {
        let problems = problems_of("[idp]\nissuer = \"http://id.example.com\"\n");
        let issuer = problem(&problems, "idp.issuer");
        assert!(issuer.message.contains("plain http is allowed only for a loopback issuer"), "{issuer}");
        assert!(issuer.hint.is_some());
        assert!(problem(&problems_of("[idp]\nissuer = \"not a url\"\n"), "idp.issuer").message.contains("not a URL"));
        assert_eq!(keys(&problems_of("[idp]\n")), ["idp.issuer"]);
    }

    #[test]
    fn bad_redirect_uris_are_reported_with_their_index() {
        let secret = "x".repeat(40);
        let text = format!(
            r#"{MINIMAL}[[idp.clients]]
client_id = "app"
secret = "{secret}"
redirect_uris = ["https://ok.example/cb", "https://bad.example/cb#frag", "http://app.example/cb"]
post_logout_redirect_uris = ["/relative"]
backchannel_logout_uri = "ftp://x.example/"
"#
        );
        let problems = problems_of(&text);
        assert_eq!(
            keys(&problems),
            [
                "idp.clients[0].backchannel_logout_uri",
                "idp.clients[0].redirect_uris[1]",
                "idp.clients[0].redirect_uris[2]",
                "idp.clients[0].post_logout_redirect_uris[0]",
            ]
        );
        assert!(problem(&problems, "idp.clients[0].redirect_uris[1]").message.contains("fragment"));
        assert!(problem(&problems, "idp.clients[0].redirect_uris[2]").message.contains("loopback"));
    }

    #[test]
    fn code_lifetimes_over_60_seconds_are_refused() {
        let problems = problems_of(&format!("{MINIMAL}[idp.tokens]\ncode_ttl_seconds = 61\n"));
        assert!(problem(&problems, "idp.tokens.code_ttl_seconds").message.contains("at most 60 seconds"));
        let problems =
            problems_of(&format!("{MINIMAL}[idp.tokens]\ncode_ttl_seconds = 0\nid_token_ttl_seconds = -5\n"));
        assert_eq!(keys(&problems), ["idp.tokens.id_token_ttl_seconds", "idp.tokens.code_ttl_seconds"]);
    }

    #[test]
    fn duplicate_client_ids_and_semantic_problems_are_all_listed() {
        let text = r#"
[log]
format = "xml"
[idp]
issuer = "http://localhost:9000"
listen = "nowhere"
[[idp.apis]]
audience = "https://api.example.com"
scopes = ["api", "openid"]
[[idp.apis]]
audience = "https://other.example.com"
scopes = ["api"]
[[idp.clients]]
client_id = "a"
secret = "short"
redirect_uris = ["https://a.example/cb"]
scopes = ["openid", "unknown"]
[[idp.clients]]
client_id = "a"
auth_method = "none"
secret = "a-secret-that-is-long-enough-0123456789"
grant_types = ["client_credentials", "password"]
[[idp.users]]
username = "dave"
password_hash = "$2b$10$notargon"
[[idp.users]]
username = "has space"
password = "short"
"#;
        let problems = problems_of(text);
        let keys = keys(&problems);
        for expected in [
            "log.format",
            "idp.listen",
            "idp.apis[0].scopes[1]",
            "idp.apis[1].scopes[0]",
            "idp.clients[0].secret",
            "idp.clients[0].scopes[1]",
            "idp.clients[1].client_id",
            "idp.clients[1].secret",
            "idp.clients[1].grant_types",
            "idp.clients[1].grant_types[1]",
            "idp.users[0].password_hash",
            "idp.users[1].username",
            "idp.users[1].password",
        ] {
            assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
        }
        assert!(problem(&problems, "idp.clients[1].client_id").message.contains("declared twice"));
        assert!(problems.iter().all(|p| !p.message.contains("short\"")), "a secret was echoed: {problems:#?}");
    }

    #[test]
    fn master_keys_inline_and_from_the_default_file() {
        let key = b64::encode([5u8; 32]);
        let config = demo_with(&[("GATEHOUSE_IDP__MASTER_KEY", &key)]).unwrap();
        assert!(matches!(config.idp.master_key, MasterKeySource::Inline(k) if k.0 == [5; 32]));
        let problems = demo_with(&[("GATEHOUSE_IDP__MASTER_KEY", "short")]).unwrap_err();
        assert_eq!(problem(&problems, "idp.master_key").env.as_deref(), Some("GATEHOUSE_IDP__MASTER_KEY"));
        let dir = config_dir();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("data/master.key"), format!("{}\n", b64::encode([6u8; 32]))).unwrap();
        let config = parse(MINIMAL, dir.path(), &[]).unwrap();
        assert!(matches!(config.idp.master_key, MasterKeySource::Default { key: Some(k), .. } if k.0 == [6; 32]));
        std::fs::write(dir.path().join("data/master.key"), "garbage").unwrap();
        assert_eq!(keys(&parse(MINIMAL, dir.path(), &[]).unwrap_err()), ["idp.master_key_file"]);
    }

    #[test]
    fn syntax_errors_give_the_position_without_the_line() {
        let problems = problems_of("[idp]\nissuer = \"http://localhost:9000\"\npassword = \"hunter2-secret\n");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("line 3"), "{}", problems[0]);
        assert!(!problems[0].message.contains("hunter2"), "{}", problems[0]);
    }

    #[test]
    fn store_urls_resolve_against_the_config_directory() {
        let dir = config_dir();
        let text = format!("{MINIMAL}store_url = \"sqlite://db/x.db?mode=rwc\"\n");
        let config = parse(&text, dir.path(), &[]).unwrap();
        assert_eq!(config.idp.store_url, format!("sqlite://{}?mode=rwc", dir.path().join("db/x.db").display()));
        let config = parse(&format!("{MINIMAL}store_url = \"sqlite::memory:\"\n"), dir.path(), &[]).unwrap();
        assert_eq!(config.idp.store_url, "sqlite::memory:");
        assert_eq!(keys(&problems_of(&format!("{MINIMAL}store_url = \"postgres://x\"\n"))), ["idp.store_url"]);
    }

    #[test]
    fn gateway_sessions_are_stored_next_to_the_token_service_data_unless_memory_is_chosen() {
        use gatehouse_bff::settings::SessionStoreSettings;
        let dir = config_dir();
        let base = dir.path().join("config");
        let store = |pairs: &[(&str, &str)]| parse(DEMO, &base, &env(pairs)).map(|c| c.bff.unwrap().session.store);
        let default = SessionStoreSettings::Sqlite { path: dir.path().join("data/gateway-sessions.db") };
        assert_eq!(store(&[]).unwrap(), default);
        assert_eq!(store(&[("GATEHOUSE_BFF__SESSION__STORE", "memory")]).unwrap(), SessionStoreSettings::Memory);
        let data_dir = store(&[("GATEHOUSE_IDP__DATA_DIR", "/var/lib/gatehouse")]).unwrap();
        assert_eq!(data_dir, SessionStoreSettings::Sqlite { path: "/var/lib/gatehouse/gateway-sessions.db".into() });
        let file = store(&[("GATEHOUSE_BFF__SESSION__STORE_FILE", "../state/s.db")]).unwrap();
        assert_eq!(file, SessionStoreSettings::Sqlite { path: dir.path().join("state/s.db") });

        let problems = store(&[("GATEHOUSE_BFF__SESSION__STORE", "redis")]).unwrap_err();
        let problem = problem(&problems, "bff.session.store");
        assert_eq!(problem.env.as_deref(), Some("GATEHOUSE_BFF__SESSION__STORE"));
        assert!(problem.hint.as_deref().unwrap().contains("memory"), "{problem:?}");
        let problems =
            store(&[("GATEHOUSE_BFF__SESSION__STORE", "memory"), ("GATEHOUSE_BFF__SESSION__STORE_FILE", "s.db")])
                .unwrap_err();
        assert_eq!(keys(&problems), ["bff.session.store_file"]);
        let problems = store(&[("GATEHOUSE_BFF__SESSION__STORE_FILE", "''")]).unwrap_err();
        assert_eq!(keys(&problems), ["bff.session.store_file"]);
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("acess", "access"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn bff_session_mode_defaults_to_server_and_accepts_cookie() {
        use gatehouse_bff::settings::SessionMode;
        let mode = |pairs: &[(&str, &str)]| demo_with(pairs).unwrap().bff.unwrap().session.mode;
        assert_eq!(mode(&[]), SessionMode::Server);
        assert_eq!(mode(&[("GATEHOUSE_BFF__SESSION__MODE", "cookie")]), SessionMode::Cookie);
        let problems = demo_with(&[("GATEHOUSE_BFF__SESSION__MODE", "browser")]).unwrap_err();
        assert!(problem(&problems, "bff.session.mode").hint.as_deref().unwrap().contains("cookie"));
    }

    #[test]
    fn a_route_resource_must_be_an_absolute_uri_without_fragment() {
        let resource = |value: &str| demo_with(&[("GATEHOUSE_BFF__ROUTES__0__RESOURCE", value)]);
        let config = resource("https://orders.example").unwrap();
        assert_eq!(config.bff.unwrap().routes[0].resource.as_deref(), Some("https://orders.example"));
        assert_eq!(demo_with(&[]).unwrap().bff.unwrap().routes[0].resource, None);
        for bad in ["/orders", "https://orders.example#x", "not a uri"] {
            let problems = resource(bad).unwrap_err();
            assert!(problem(&problems, "bff.routes[0].resource").hint.is_some(), "{bad}");
        }
    }

    #[test]
    fn route_methods_are_http_methods_and_never_trace_or_connect() {
        let methods = |value: &str| demo_with(&[("GATEHOUSE_BFF__ROUTES__0__METHODS", value)]);
        let config = methods("[\"GET\", \"POST\"]").unwrap();
        assert_eq!(config.bff.unwrap().routes[0].methods, [http::Method::GET, http::Method::POST]);
        for bad in ["[\"TRACE\"]", "[\"CONNECT\"]", "[\"G ET\"]"] {
            let problems = methods(bad).unwrap_err();
            assert!(problem(&problems, "bff.routes[0].methods[0]").hint.is_some(), "{bad}");
        }
    }

    #[test]
    fn the_token_service_runs_by_default_and_can_be_left_to_another_process() {
        assert!(demo_with(&[]).unwrap().idp.enabled);
        let gateway_only = demo_with(&[("GATEHOUSE_IDP__ENABLED", "false")]).unwrap();
        assert!(!gateway_only.idp.enabled);
        assert!(gateway_only.bff.is_some() && gateway_only.demo_api.is_some());
        let problems = demo_with(&[
            ("GATEHOUSE_IDP__ENABLED", "false"),
            ("GATEHOUSE_BFF__ENABLED", "false"),
            ("GATEHOUSE_DEMO_API__ENABLED", "false"),
        ])
        .unwrap_err();
        let nothing = problem(&problems, "idp.enabled");
        assert_eq!(nothing.env.as_deref(), Some("GATEHOUSE_IDP__ENABLED"));
        assert!(nothing.message.contains("nothing"), "{nothing}");
        let mistyped = demo_with(&[("GATEHOUSE_IDP__ENABLED", "\"no\"")]).unwrap_err();
        assert_eq!(keys(&mistyped), ["idp.enabled"]);
    }

    #[test]
    fn cookie_keys_are_read_again_from_the_file_the_key_file_and_the_environment() {
        let dir = config_dir();
        let file = dir.path().join("config/gatehouse.toml");
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        let key = |id: &str, byte: u8| format!("{id}:{}", b64::encode([byte; 32]));
        let write =
            |extra: &str| std::fs::write(&file, DEMO.replace("# keys = [\"k2:...\", \"k1:...\"]", extra)).unwrap();
        let ids = |keys: Vec<gatehouse_bff::settings::CookieKey>| -> Vec<(String, u8)> {
            keys.into_iter().map(|k| (k.id, k.key[0])).collect()
        };

        // None set: nothing to switch to.
        write("");
        assert!(load_cookie_keys(&file, &[]).unwrap().is_none());
        // The file's list, then the key file's lines (relative to the file's directory), newest first.
        std::fs::write(dir.path().join("config/cookie.keys"), format!("# rotated weekly\n{}\n\n", key("k1", 1)))
            .unwrap();
        write(&format!("keys = [\"{}\"]\nkeys_file = \"cookie.keys\"", key("k2", 2)));
        let loaded = load_cookie_keys(&file, &[]).unwrap().unwrap();
        assert_eq!(ids(loaded), [("k2".to_owned(), 2), ("k1".to_owned(), 1)]);
        // The environment overrides the file, as at start.
        let overridden = env(&[("GATEHOUSE_BFF__COOKIE__KEYS", &format!("[\"{}\"]", key("k3", 3)))]);
        assert_eq!(ids(load_cookie_keys(&file, &overridden).unwrap().unwrap())[0], ("k3".to_owned(), 3));

        // A bad key, a syntax error, an unknown key or a missing gateway: problems, never keys.
        write("keys = [\"k2:short\"]");
        assert_eq!(keys(&load_cookie_keys(&file, &[]).unwrap_err()), ["bff.cookie.keys[0]"]);
        write(&format!("keys = [\"{}\"", key("k2", 2)));
        assert_eq!(keys(&load_cookie_keys(&file, &[]).unwrap_err()), ["(file)"]);
        write(&format!("keys = [\"{}\"]\nkey_rotation = true", key("k2", 2)));
        assert_eq!(keys(&load_cookie_keys(&file, &[]).unwrap_err()), ["bff.cookie.key_rotation"]);
        write(&format!("keys = [\"{}\"]", key("k2", 2)));
        let off = env(&[("GATEHOUSE_BFF__ENABLED", "false")]);
        assert_eq!(keys(&load_cookie_keys(&file, &off).unwrap_err()), ["bff"]);
        assert!(load_cookie_keys(&dir.path().join("missing.toml"), &[]).is_err());
    }
}

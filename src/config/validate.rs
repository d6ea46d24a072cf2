//! Raw values → typed configuration. Every problem is gathered (never only the first), each names its key path
//! and most carry a hint. Files that secrets and keys may come from (`*_file`) are read here, relative to the
//! configuration file's directory; a trailing newline is trimmed from secrets read from files.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use gatehouse_idp::admin;
use gatehouse_idp::settings::{
    ApiResource, DpopSettings, LoginSettings, MasterKey, SeedClient, SeedPassword, SeedUser, SessionSettings,
    SigningSettings, TokenSettings, check_issuer,
};
use gatehouse_idp::store::ClientRecord;
use gatehouse_proto::claims::StandardClaims;
use gatehouse_proto::vocab::{ClientAuthMethod, GrantType, SigningAlg};
use gatehouse_proto::{JwkSet, Secret, b64};
use url::Url;

use super::raw::{
    RawApi, RawClient, RawConfig, RawDpop, RawIdp, RawLog, RawLogin, RawSession, RawSigning, RawTokens, RawUser,
};
use super::{Config, ConfigUser, IdpConfig, LogFormat, LogSettings, MasterKeySource, Problem};

/// The OpenID Connect scopes (OIDC Core §5.4, §11); every other scope a client uses must belong to an API.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// A client secret shorter than this is refused (a generated one has 43 characters: 256 bits).
const MIN_CLIENT_SECRET_CHARS: usize = 32;
/// A user password shorter than this is refused (the same rule as `gatehouse users add`).
pub const MIN_PASSWORD_CHARS: usize = 8;

/// How long verifiers may cache the JWK Set (the token service's `Cache-Control: max-age`).
const JWKS_MAX_AGE: i64 = 60;

const SECRET_HINT: &str = "`gatehouse clients add` prints a generated 256-bit secret; or run \
                           `head -c 32 /dev/urandom | basenc --base64url`";
const REDIRECT_HINT: &str = "an absolute https URL (http only on localhost, 127.0.0.1 or [::1]) without a \
                             fragment, exactly as the client sends it";

/// Validates the whole file.
pub fn validate(raw: RawConfig, base: &Path) -> Result<Config, Vec<Problem>> {
    let mut p = Problems::default();
    let mut notes = Vec::new();
    let log = log_settings(raw.log, &mut p);
    let idp = match raw.idp {
        Some(idp) => idp_config(idp, base, &mut p, &mut notes),
        None => {
            p.hint("idp", "the [idp] section is required", "start from config/gatehouse.toml");
            None
        }
    };
    let bff = match (raw.bff, &idp) {
        (Some(bff), Some(idp)) => super::gateway::bff(bff, idp, base, &mut p, &mut notes),
        _ => None,
    };
    let demo_api = match (raw.demo_api, &idp) {
        (Some(demo), Some(idp)) => super::gateway::demo_api(demo, idp, &mut p),
        _ => None,
    };
    let admin = raw.admin.and_then(|admin| super::gateway::admin(admin, &mut p));
    if let Some(idp) = &idp
        && !idp.enabled
        && bff.is_none()
        && demo_api.is_none()
    {
        p.hint(
            "idp.enabled",
            "the token service is off and neither [bff] nor [demo_api] is on: `serve` would run nothing",
            "set idp.enabled = true, or enable the gateway ([bff]) this process should run",
        );
    }
    match idp {
        Some(idp) if p.0.is_empty() => Ok(Config { log, idp, bff, demo_api, admin, notes }),
        _ => Err(p.0),
    }
}

fn log_settings(raw: RawLog, p: &mut Problems) -> LogSettings {
    let format = match raw.format.as_deref().unwrap_or("pretty") {
        "pretty" => LogFormat::Pretty,
        "json" => LogFormat::Json,
        other => {
            p.hint("log.format", format!("{other:?} is not a log format"), "use \"pretty\" or \"json\"");
            LogFormat::Pretty
        }
    };
    let level = raw.level.unwrap_or_else(|| "info".to_owned());
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&level) {
        p.hint(
            "log.level",
            format!("{level:?} is not a filter directive: {e}"),
            "e.g. \"info\" or \"gatehouse_idp=debug,info\"",
        );
    }
    LogSettings { format, level }
}

fn idp_config(raw: RawIdp, base: &Path, p: &mut Problems, notes: &mut Vec<String>) -> Option<IdpConfig> {
    let issuer = issuer(raw.issuer, p);
    let listen = listen(raw.listen, p);
    let data_dir = resolve(base, raw.data_dir.as_deref().unwrap_or("data"));
    let store_url = store_url(raw.store_url, base, &data_dir, p);
    let master_key = master_key(raw.master_key, raw.master_key_file, base, &data_dir, p, notes);
    let max_body_bytes = match raw.max_body_bytes {
        None => 64 * 1024,
        Some(v @ 1024..=16_777_216) => v as usize,
        Some(v) => {
            p.hint("idp.max_body_bytes", format!("{v} is out of range"), "between 1024 and 16777216 (bytes)");
            64 * 1024
        }
    };
    let tokens = tokens(&raw.tokens, p);
    let login = login(&raw.login, p);
    let session = session(&raw.session, p);
    let signing = signing(raw.signing, &tokens, p);
    let dpop = dpop(&raw.dpop, p);
    let apis = apis(raw.apis, p);
    let clients = clients(raw.clients, base, signing.id_token_alg, &apis, p);
    let users = users(raw.users, base, p);
    let issuer = issuer?;
    if issuer.scheme() == "http" {
        notes.push(format!(
            "idp.issuer: insecure plain-http issuer {} (allowed on loopback for development only; \
             the token service's cookies are then sent without Secure)",
            issuer.as_str().trim_end_matches('/')
        ));
    }
    if let Some(MasterKeySource::Default { path, .. }) = &master_key
        && !is_loopback_host(&issuer)
    {
        notes.push(format!(
            "idp.master_key_file is not set: using {} (created at first start); production deployments should \
             set idp.master_key_file or GATEHOUSE_IDP__MASTER_KEY",
            path.display()
        ));
    }
    Some(IdpConfig {
        enabled: raw.enabled.unwrap_or(true),
        issuer,
        listen: listen?,
        data_dir,
        store_url: store_url?,
        master_key: master_key?,
        max_body_bytes,
        require_pushed_authorization_requests: raw.require_pushed_authorization_requests.unwrap_or(false),
        tokens,
        login,
        session,
        signing,
        dpop,
        apis,
        clients,
        users,
    })
}

fn issuer(raw: Option<String>, p: &mut Problems) -> Option<Url> {
    let hint = "e.g. \"https://id.example.com\", or \"http://localhost:9000\" for development";
    let Some(text) = raw else {
        p.hint("idp.issuer", "required", hint);
        return None;
    };
    let url = match Url::parse(&text) {
        Ok(url) => url,
        Err(e) => {
            p.hint("idp.issuer", format!("{text:?} is not a URL ({e})"), hint);
            return None;
        }
    };
    match check_issuer(&url) {
        Ok(()) => Some(url),
        Err(why) => {
            p.hint("idp.issuer", why, hint);
            None
        }
    }
}

fn listen(raw: Option<String>, p: &mut Problems) -> Option<SocketAddr> {
    let text = raw.unwrap_or_else(|| "127.0.0.1:9000".to_owned());
    match text.parse() {
        Ok(address) => Some(address),
        Err(_) => {
            p.hint(
                "idp.listen",
                format!("{text:?} is not a socket address"),
                "an IP address and port such as \"127.0.0.1:9000\" or \"[::]:9000\"",
            );
            None
        }
    }
}

/// `sqlite://PATH` with PATH made absolute against the config directory, or `sqlite::memory:`.
fn store_url(raw: Option<String>, base: &Path, data_dir: &Path, p: &mut Problems) -> Option<String> {
    let Some(text) = raw else {
        return Some(format!("sqlite://{}", data_dir.join("gatehouse.db").display()));
    };
    let Some(rest) = text.strip_prefix("sqlite://").or_else(|| text.strip_prefix("sqlite:")) else {
        p.hint(
            "idp.store_url",
            "only SQLite store URLs are supported in this version",
            "\"sqlite://PATH\" (relative to the configuration file's directory), or leave it unset",
        );
        return None;
    };
    let (path, options) = match rest.split_once('?') {
        Some((path, options)) => (path, format!("?{options}")),
        None => (rest, String::new()),
    };
    if path.is_empty() || path == ":memory:" {
        return Some(text);
    }
    Some(format!("sqlite://{}{options}", resolve(base, path).display()))
}

fn master_key(
    inline: Option<Secret>,
    file: Option<String>,
    base: &Path,
    data_dir: &Path,
    p: &mut Problems,
    notes: &mut Vec<String>,
) -> Option<MasterKeySource> {
    let format_hint = "32 random bytes, base64url-encoded (43 characters): \
                       `head -c 32 /dev/urandom | basenc --base64url | tr -d =`";
    match (inline, file) {
        (Some(_), Some(_)) => {
            p.hint(
                "idp.master_key",
                "set either idp.master_key or idp.master_key_file, not both",
                "keep master_key_file in production",
            );
            None
        }
        (Some(key), None) => match decode_master_key(key.expose().as_bytes()) {
            Some(key) => Some(MasterKeySource::Inline(key)),
            None => {
                p.hint("idp.master_key", "not a 32-byte base64url key", format_hint);
                None
            }
        },
        (None, Some(file)) => {
            let path = resolve(base, &file);
            match std::fs::read(&path) {
                Ok(bytes) => match decode_master_key(&bytes) {
                    Some(key) => {
                        note_loose_permissions(&path, notes);
                        Some(MasterKeySource::File { path, key })
                    }
                    None => {
                        p.hint("idp.master_key_file", format!("{} does not hold a key", path.display()), format_hint);
                        None
                    }
                },
                Err(e) => {
                    p.hint("idp.master_key_file", format!("cannot read {}: {e}", path.display()), format_hint);
                    None
                }
            }
        }
        (None, None) => {
            let path = data_dir.join("master.key");
            match std::fs::read(&path) {
                Ok(bytes) => match decode_master_key(&bytes) {
                    Some(key) => {
                        note_loose_permissions(&path, notes);
                        Some(MasterKeySource::Default { path, key: Some(key) })
                    }
                    None => {
                        p.hint(
                            "idp.master_key_file",
                            format!("the default master key file {} does not hold a key", path.display()),
                            format_hint,
                        );
                        None
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Some(MasterKeySource::Default { path, key: None })
                }
                Err(e) => {
                    p.hint(
                        "idp.master_key_file",
                        format!("cannot read the default master key file {}: {e}", path.display()),
                        "fix its permissions, or set idp.master_key_file",
                    );
                    None
                }
            }
        }
    }
}

/// A master key as stored: base64url text (padding and surrounding whitespace allowed) of exactly 32 bytes.
pub fn decode_master_key(bytes: &[u8]) -> Option<MasterKey> {
    let text = std::str::from_utf8(bytes).ok()?.trim().trim_end_matches('=');
    let decoded = b64::decode(text)?;
    <[u8; 32]>::try_from(decoded.as_slice()).ok().map(MasterKey)
}

fn note_loose_permissions(path: &Path, notes: &mut Vec<String>) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            notes.push(format!("idp.master_key_file: {} is readable by other users; `chmod 600` it", path.display()));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, notes);
}

fn tokens(raw: &RawTokens, p: &mut Problems) -> TokenSettings {
    let d = TokenSettings::default();
    let key = |name: &str| format!("idp.tokens.{name}");
    let tokens = TokenSettings {
        access_token_ttl: seconds(
            p,
            &key("access_token_ttl_seconds"),
            raw.access_token_ttl_seconds,
            d.access_token_ttl,
        ),
        id_token_ttl: seconds(p, &key("id_token_ttl_seconds"), raw.id_token_ttl_seconds, d.id_token_ttl),
        code_ttl: seconds(p, &key("code_ttl_seconds"), raw.code_ttl_seconds, d.code_ttl),
        refresh_token_idle_ttl: seconds(
            p,
            &key("refresh_token_idle_ttl_seconds"),
            raw.refresh_token_idle_ttl_seconds,
            d.refresh_token_idle_ttl,
        ),
        refresh_token_absolute_ttl: seconds(
            p,
            &key("refresh_token_absolute_ttl_seconds"),
            raw.refresh_token_absolute_ttl_seconds,
            d.refresh_token_absolute_ttl,
        ),
        refresh_reuse_grace: match raw.refresh_reuse_grace_seconds {
            None => d.refresh_reuse_grace,
            Some(v @ 0..=300) => v,
            Some(v) => {
                p.hint(key("refresh_reuse_grace_seconds"), format!("{v} is out of range"), "0 to 300 seconds");
                d.refresh_reuse_grace
            }
        },
    };
    if tokens.code_ttl > 60 {
        p.hint(
            key("code_ttl_seconds"),
            format!("{} seconds is too long: authorization codes live at most 60 seconds", tokens.code_ttl),
            "a code is redeemed right after the redirect; 60 or less (the default is 60)",
        );
    }
    if tokens.refresh_token_idle_ttl > tokens.refresh_token_absolute_ttl {
        p.hint(
            key("refresh_token_idle_ttl_seconds"),
            "longer than refresh_token_absolute_ttl_seconds",
            "the idle lifetime must not exceed the absolute lifetime",
        );
    }
    tokens
}

fn login(raw: &RawLogin, p: &mut Problems) -> LoginSettings {
    let d = LoginSettings::default();
    let mut count = |name: &str, value: Option<i64>, default: u32| match value {
        None => default,
        Some(v) => match u32::try_from(v) {
            Ok(v) if v >= 1 => v,
            _ => {
                p.hint(format!("idp.login.{name}"), format!("{v} is out of range"), "a count of at least 1");
                default
            }
        },
    };
    let max_failures_per_username =
        count("max_failures_per_username", raw.max_failures_per_username, d.max_failures_per_username);
    let max_failures_per_ip = count("max_failures_per_ip", raw.max_failures_per_ip, d.max_failures_per_ip);
    LoginSettings {
        max_failures_per_username,
        max_failures_per_ip,
        failure_window: seconds(p, "idp.login.failure_window_seconds", raw.failure_window_seconds, d.failure_window),
    }
}

fn session(raw: &RawSession, p: &mut Problems) -> SessionSettings {
    let d = SessionSettings::default();
    let session = SessionSettings {
        idle_timeout: seconds(p, "idp.session.idle_timeout_seconds", raw.idle_timeout_seconds, d.idle_timeout),
        absolute_lifetime: seconds(
            p,
            "idp.session.absolute_lifetime_seconds",
            raw.absolute_lifetime_seconds,
            d.absolute_lifetime,
        ),
    };
    if session.idle_timeout > session.absolute_lifetime {
        p.hint(
            "idp.session.idle_timeout_seconds",
            "longer than absolute_lifetime_seconds",
            "the idle timeout must not exceed the absolute lifetime",
        );
    }
    session
}

fn signing(raw: RawSigning, tokens: &TokenSettings, p: &mut Problems) -> SigningSettings {
    let d = SigningSettings::default();
    let mut alg = |name: &str, value: Option<String>, default: SigningAlg| match value {
        None => default,
        Some(v) => SigningAlg::parse(&v).unwrap_or_else(|| {
            p.hint(
                format!("idp.signing.{name}"),
                format!("{v:?} is not a supported algorithm"),
                "\"RS256\" or \"ES256\"",
            );
            default
        }),
    };
    let id_token_alg = alg("id_token_alg", raw.id_token_alg, d.id_token_alg);
    let access_token_alg = alg("access_token_alg", raw.access_token_alg, d.access_token_alg);
    let key = |name: &str| format!("idp.signing.{name}");
    let signing = SigningSettings {
        id_token_alg,
        access_token_alg,
        key_reload_interval: seconds(
            p,
            &key("key_reload_interval_seconds"),
            raw.key_reload_interval_seconds,
            d.key_reload_interval,
        ),
        rotation_interval: seconds(
            p,
            &key("rotation_interval_seconds"),
            raw.rotation_interval_seconds,
            d.rotation_interval,
        ),
        propagation_time: seconds(
            p,
            &key("propagation_time_seconds"),
            raw.propagation_time_seconds,
            d.propagation_time,
        ),
        retention_time: seconds(p, &key("retention_time_seconds"), raw.retention_time_seconds, d.retention_time),
    };
    // The rules of the key lifecycle (idp/src/keys.rs): verifiers caching the JWK Set (max-age 60 s) must see a
    // key before it signs, and a retired key must stay published until every token it signed has expired.
    let min_propagation = JWKS_MAX_AGE + signing.key_reload_interval;
    if signing.propagation_time <= min_propagation {
        p.hint(
            key("propagation_time_seconds"),
            format!("{} seconds is too short: verifiers cache the JWK Set", signing.propagation_time),
            format!("more than {min_propagation} (60 s of JWK Set caching + key_reload_interval_seconds)"),
        );
    }
    if signing.propagation_time >= signing.rotation_interval {
        p.hint(
            key("propagation_time_seconds"),
            "not shorter than rotation_interval_seconds",
            "a successor key is published propagation_time before the rotation: keep it below the rotation interval",
        );
    }
    let min_retention = tokens.access_token_ttl.max(tokens.id_token_ttl) + signing.key_reload_interval;
    if signing.retention_time < min_retention {
        p.hint(
            key("retention_time_seconds"),
            format!(
                "{} seconds is too short: tokens signed with a retired key would stop verifying",
                signing.retention_time
            ),
            format!("at least {min_retention} (the longest token lifetime + key_reload_interval_seconds)"),
        );
    }
    signing
}

fn dpop(raw: &RawDpop, p: &mut Problems) -> DpopSettings {
    let d = DpopSettings::default();
    let key = |name: &str| format!("idp.dpop.{name}");
    let mut at_least_10 = |name: &str, value: Option<i64>, default: i64| match value {
        None => default,
        Some(v) if v >= 10 => v,
        Some(v) => {
            p.hint(
                key(name),
                format!("{v} seconds is too strict"),
                "at least 10: proofs need some tolerance for clock skew and age (catalogue DD5)",
            );
            default
        }
    };
    let window = gatehouse_proto::dpop::TimeWindow {
        max_age: at_least_10("proof_max_age_seconds", raw.proof_max_age_seconds, d.window.max_age),
        future_skew: at_least_10("proof_future_skew_seconds", raw.proof_future_skew_seconds, d.window.future_skew),
    };
    DpopSettings {
        require_nonce: raw.require_nonce.unwrap_or(d.require_nonce),
        nonce_lifetime: seconds(p, &key("nonce_lifetime_seconds"), raw.nonce_lifetime_seconds, d.nonce_lifetime),
        window,
    }
}

fn apis(raw: Vec<RawApi>, p: &mut Problems) -> Vec<ApiResource> {
    let mut audiences = BTreeSet::new();
    let mut owners = BTreeSet::new();
    let mut apis = Vec::new();
    for (i, api) in raw.into_iter().enumerate() {
        let key = format!("idp.apis[{i}]");
        let audience = match api.audience {
            Some(audience) if !audience.is_empty() => audience,
            _ => {
                p.hint(format!("{key}.audience"), "required", "the API's identifier, usually its base URL");
                String::new()
            }
        };
        if !audience.is_empty() && !audiences.insert(audience.clone()) {
            p.hint(format!("{key}.audience"), format!("{audience:?} is declared twice"), "each API once");
        }
        let scopes = api.scopes.unwrap_or_default();
        if scopes.is_empty() {
            p.hint(format!("{key}.scopes"), "at least one scope is required", "e.g. scopes = [\"orders:read\"]");
        }
        for (j, scope) in scopes.iter().enumerate() {
            let scope_key = format!("{key}.scopes[{j}]");
            if OIDC_SCOPES.contains(&scope.as_str()) {
                p.hint(
                    scope_key,
                    format!("{scope:?} is an OpenID Connect scope, not an API scope"),
                    "API scopes name what the API allows, e.g. \"orders:read\"",
                );
            } else if !is_scope_token(scope) {
                p.hint(scope_key, format!("{scope:?} is not a scope"), "printable ASCII without spaces or quotes");
            } else if !owners.insert(scope.clone()) {
                p.hint(
                    scope_key,
                    format!("{scope:?} already belongs to another API"),
                    "a scope selects one API (the access token's audience): give each API its own scopes",
                );
            }
        }
        apis.push(ApiResource { audience, scopes });
    }
    apis
}

fn clients(
    raw: Vec<RawClient>,
    base: &Path,
    default_alg: SigningAlg,
    apis: &[ApiResource],
    p: &mut Problems,
) -> Vec<SeedClient> {
    let mut client_ids = BTreeSet::new();
    let mut clients = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let key = format!("idp.clients[{i}]");
        if let Some(client) = client(raw, &key, base, default_alg, apis, &mut client_ids, p) {
            clients.push(client);
        }
    }
    clients
}

fn client(
    c: RawClient,
    key: &str,
    base: &Path,
    default_alg: SigningAlg,
    apis: &[ApiResource],
    client_ids: &mut BTreeSet<String>,
    p: &mut Problems,
) -> Option<SeedClient> {
    let before = p.0.len();
    let client_id = c.client_id.unwrap_or_default();
    if client_id.is_empty() {
        p.hint(format!("{key}.client_id"), "required", "the identifier the client sends, e.g. \"my-app\"");
    } else if !client_ids.insert(client_id.clone()) {
        p.hint(format!("{key}.client_id"), format!("{client_id:?} is declared twice"), "client_ids are unique");
    }
    let auth_method = match c.auth_method.as_deref() {
        None => ClientAuthMethod::ClientSecretBasic,
        Some(m) => ClientAuthMethod::parse(m).unwrap_or_else(|| {
            p.hint(
                format!("{key}.auth_method"),
                format!("{m:?} is not a client authentication method"),
                "client_secret_basic, client_secret_post, private_key_jwt or none",
            );
            ClientAuthMethod::ClientSecretBasic
        }),
    };
    let secret = secret_from(p, &format!("{key}.secret"), c.secret, c.secret_file, base);
    let uses_secret = matches!(auth_method, ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost);
    match &secret {
        None if uses_secret && !p.has(&format!("{key}.secret")) && !p.has(&format!("{key}.secret_file")) => {
            p.hint(format!("{key}.secret"), format!("required for {}", auth_method.as_str()), SECRET_HINT);
        }
        Some(s) if uses_secret && s.expose().chars().count() < MIN_CLIENT_SECRET_CHARS => p.hint(
            format!("{key}.secret"),
            format!("too short: at least {MIN_CLIENT_SECRET_CHARS} characters"),
            SECRET_HINT,
        ),
        Some(_) if !uses_secret => p.hint(
            format!("{key}.secret"),
            format!("a {} client has no secret", auth_method.as_str()),
            "remove secret/secret_file, or use auth_method = \"client_secret_basic\"",
        ),
        _ => {}
    }
    let jwks = jwks(c.jwks, c.jwks_file, key, base, p);
    let grant_types: Vec<GrantType> = match c.grant_types {
        None => vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(j, g)| {
                let parsed = GrantType::parse(g);
                if parsed.is_none() {
                    p.hint(
                        format!("{key}.grant_types[{j}]"),
                        format!("{g:?} is not a supported grant type"),
                        "authorization_code, refresh_token or client_credentials",
                    );
                }
                parsed
            })
            .collect(),
    };
    let scopes = c.scopes.unwrap_or_else(|| vec!["openid".to_owned()]);
    for (j, scope) in scopes.iter().enumerate() {
        let is_api_scope = apis.iter().any(|api| api.scopes.contains(scope));
        if !OIDC_SCOPES.contains(&scope.as_str()) && !is_api_scope {
            p.hint(
                format!("{key}.scopes[{j}]"),
                format!("{scope:?} is neither an OpenID Connect scope nor a scope of a configured API"),
                "openid, profile, email, offline_access, or a scope listed under [[idp.apis]]",
            );
        }
    }
    let id_token_signed_response_alg = match c.id_token_signed_response_alg {
        None => default_alg,
        Some(a) => SigningAlg::parse(&a).unwrap_or_else(|| {
            p.hint(
                format!("{key}.id_token_signed_response_alg"),
                format!("{a:?} is not a supported algorithm"),
                "\"RS256\" or \"ES256\"",
            );
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
        id_token_signed_response_alg,
        backchannel_logout_uri: c.backchannel_logout_uri,
        source: "config".to_owned(),
        require_dpop: c.require_dpop.unwrap_or(false),
        require_dpop_nonce: c.require_dpop_nonce.unwrap_or(false),
        require_pushed_authorization_requests: c.require_pushed_authorization_requests.unwrap_or(false),
    };
    // The token service's own registration rules, with each message put under its key.
    for problem in admin::check_client(&record) {
        if problem.starts_with("redirect URI ") {
            continue; // checked per item below, so the key can carry the index
        }
        let (field, message) = match problem.split_once(": ") {
            Some((field, message)) if field.chars().all(|c| c.is_ascii_lowercase() || c == '_') => (field, message),
            _ => ("", problem.as_str()),
        };
        if p.0.iter().any(|q| q.key == format!("{key}.{field}")) {
            continue; // e.g. a missing client_id or a bad jwks, already reported with more detail
        }
        let full_key = if field.is_empty() { key.to_owned() } else { format!("{key}.{field}") };
        let hint = match field {
            "backchannel_logout_uri" => Some(REDIRECT_HINT),
            "redirect_uris" => Some("list the callback URL(s), e.g. [\"https://app.example.com/callback\"]"),
            _ => None,
        };
        match hint {
            Some(hint) => p.hint(full_key, message, hint),
            None => p.add(full_key, message),
        }
    }
    for (list, uris) in
        [("redirect_uris", &record.redirect_uris), ("post_logout_redirect_uris", &record.post_logout_redirect_uris)]
    {
        for (j, uri) in uris.iter().enumerate() {
            if let Err(why) = admin::check_redirect_uri(uri) {
                p.hint(format!("{key}.{list}[{j}]"), format!("{uri:?}: {why}"), REDIRECT_HINT);
            }
        }
    }
    (p.0.len() == before).then_some(SeedClient { record, secret })
}

fn jwks(inline: Option<toml::Value>, file: Option<String>, key: &str, base: &Path, p: &mut Problems) -> Option<JwkSet> {
    let hint = "a JWK Set of public keys: { keys = [ { kty = \"EC\", crv = \"P-256\", x = \"…\", y = \"…\" } ] }";
    let (json, jwks_key) = match (inline, file) {
        (Some(_), Some(_)) => {
            p.hint(format!("{key}.jwks"), "set either jwks or jwks_file, not both", hint);
            return None;
        }
        (Some(toml::Value::String(json)), None) => (json, format!("{key}.jwks")),
        (Some(value), None) => match serde_json::to_string(&value) {
            Ok(json) => (json, format!("{key}.jwks")),
            Err(e) => {
                p.hint(format!("{key}.jwks"), format!("not a JWK Set: {e}"), hint);
                return None;
            }
        },
        (None, Some(file)) => {
            let path = resolve(base, &file);
            match std::fs::read_to_string(&path) {
                Ok(json) => (json, format!("{key}.jwks_file")),
                Err(e) => {
                    p.hint(format!("{key}.jwks_file"), format!("cannot read {}: {e}", path.display()), hint);
                    return None;
                }
            }
        }
        (None, None) => return None,
    };
    match serde_json::from_str::<JwkSet>(&json) {
        Ok(set) => Some(set),
        Err(e) => {
            // The line and column only: serde's message may quote a value, and a mistaken JWK may be private.
            p.hint(jwks_key, format!("not a JWK Set (line {}, column {})", e.line(), e.column()), hint);
            None
        }
    }
}

fn users(raw: Vec<RawUser>, base: &Path, p: &mut Problems) -> Vec<ConfigUser> {
    let mut usernames = BTreeSet::new();
    let mut users = Vec::new();
    for (i, u) in raw.into_iter().enumerate() {
        let key = format!("idp.users[{i}]");
        let before = p.0.len();
        let username = u.username.unwrap_or_default();
        if let Some(why) = username_problem(&username) {
            p.hint(format!("{key}.username"), why, "1-128 letters, digits and . _ - @ +");
        } else if !usernames.insert(username.clone()) {
            p.hint(format!("{key}.username"), format!("{username:?} is declared twice"), "usernames are unique");
        }
        let password_in_file = u.password.is_some();
        let before_password = p.0.len();
        let plain = secret_from(p, &format!("{key}.password"), u.password, u.password_file, base);
        let password = match (plain, u.password_hash) {
            (Some(_), Some(_)) => {
                p.hint(
                    format!("{key}.password"),
                    "set exactly one of password, password_file, password_hash",
                    "password_hash (argon2id) outside the demo",
                );
                None
            }
            (Some(plain), None) if plain.expose().chars().count() < MIN_PASSWORD_CHARS => {
                p.add(format!("{key}.password"), format!("too short: at least {MIN_PASSWORD_CHARS} characters"));
                None
            }
            (Some(plain), None) => Some(SeedPassword::Plain(plain)),
            (None, Some(hash)) if gatehouse_idp::password::is_argon2id_phc(&hash) => Some(SeedPassword::Hash(hash)),
            (None, Some(_)) => {
                p.hint(
                    format!("{key}.password_hash"),
                    "not an argon2id PHC string",
                    "\"$argon2id$v=19$m=19456,t=2,p=1$…\" (e.g. from `argon2` or a previous `gatehouse users add`)",
                );
                None
            }
            (None, None) => {
                if p.0.len() == before_password {
                    p.hint(
                        format!("{key}.password"),
                        "required: one of password, password_file, password_hash",
                        "password_hash (argon2id) outside the demo",
                    );
                }
                None
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
        if let (Some(password), true) = (password, p.0.len() == before) {
            users.push(ConfigUser { seed: SeedUser { username, password, claims }, password_in_file });
        }
    }
    users
}

// ------------------------------------------------------------------------------------------------------------
// Helpers

/// Problems gathered so far.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    pub(super) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(key, message));
    }

    pub(super) fn hint(&mut self, key: impl Into<String>, message: impl Into<String>, hint: impl Into<String>) {
        self.0.push(Problem::new(key, message).with_hint(hint));
    }

    /// Whether a problem under `key` (or inside it) was reported already.
    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|p| super::covers(key, &p.key))
    }
}

/// A positive number of seconds, or the default when unset.
pub(super) fn seconds(p: &mut Problems, key: &str, value: Option<i64>, default: i64) -> i64 {
    match value {
        None => default,
        Some(v) if v > 0 => v,
        Some(v) => {
            p.hint(key, format!("{v} is not a positive number of seconds"), format!("the default is {default}"));
            default
        }
    }
}

/// A secret given inline (`x`) or in a file (`x_file`, one trailing newline trimmed); setting both is a problem.
pub(super) fn secret_from(
    p: &mut Problems,
    key: &str,
    inline: Option<Secret>,
    file: Option<String>,
    base: &Path,
) -> Option<Secret> {
    let field = key.rsplit('.').next().unwrap_or(key);
    match (inline, file) {
        (Some(_), Some(_)) => {
            p.hint(
                key,
                format!("set either {field} or {field}_file, not both"),
                format!("keep {field}_file outside the demo"),
            );
            None
        }
        (Some(value), None) => Some(value),
        (None, Some(file)) => {
            let path = resolve(base, &file);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let text = text.strip_suffix('\n').map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
                    Some(Secret::new(text))
                }
                Err(e) => {
                    p.hint(
                        format!("{key}_file"),
                        format!("cannot read {}: {e}", path.display()),
                        "relative paths are relative to the configuration file's directory",
                    );
                    None
                }
            }
        }
        (None, None) => None,
    }
}

/// `path` against `base` when relative, with `.` and `..` removed lexically (for readable messages).
pub(super) fn resolve(base: &Path, path: &str) -> PathBuf {
    let joined = base.join(path);
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// An RFC 6749 §3.3 scope token: printable ASCII except space, `"` and `\`.
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty() && scope.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
}

/// Why a username would be refused by the token service (the rule of `admin::add_user`), if it would be.
fn username_problem(username: &str) -> Option<String> {
    if username.is_empty() {
        return Some("required".to_owned());
    }
    let ok = username.len() <= 128
        && username.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'));
    (!ok).then(|| format!("{username:?} is not a valid username"))
}

/// Whether a URL's host is `localhost` or a loopback address.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

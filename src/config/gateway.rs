//! The gateway's part of the file (`[bff]`, `[[bff.routes]]`), the demo API (`[demo_api]`) and the admin listener
//! (`[admin]`): raw values → settings, every problem gathered with its key path.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use gatehouse_bff::settings::{
    BffSettings, CookieKey, CookieSettings, Frontend, OidcSettings, RouteSettings, SameSite, SessionMode,
    SessionSettings, SessionStoreSettings, TlsListener, TokenRequirement,
};
use gatehouse_proto::{Secret, b64};
use url::Url;

use super::raw::{RawAdmin, RawBff, RawDemoApi, RawRoute};
use super::validate::{Problems, resolve, seconds, secret_from};
use super::{AdminConfig, DemoApiConfig, IdpConfig};

const KEY_HINT: &str = "an id, a colon and 32 random bytes in base64url: \
                        `echo k1:$(head -c 32 /dev/urandom | basenc --base64url | tr -d =)`";

pub(super) fn address(p: &mut Problems, key: &str, raw: Option<String>, default: Option<&str>) -> Option<SocketAddr> {
    let text = raw.or_else(|| default.map(str::to_owned))?;
    match text.parse() {
        Ok(address) => Some(address),
        Err(_) => {
            p.hint(
                key,
                format!("{text:?} is not a socket address"),
                "an IP address and port such as \"127.0.0.1:8080\"",
            );
            None
        }
    }
}

fn http_url(p: &mut Problems, key: &str, text: &str) -> Option<Url> {
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
        _ => {
            p.hint(key, format!("{text:?} is not an http(s) URL"), "e.g. \"http://127.0.0.1:7001\"");
            None
        }
    }
}

pub(super) fn bff(
    raw: RawBff,
    idp: &IdpConfig,
    base: &Path,
    p: &mut Problems,
    notes: &mut Vec<String>,
) -> Option<BffSettings> {
    if raw.enabled == Some(false) {
        return None;
    }
    let listen = address(p, "bff.listen", raw.listen, if raw.tls.is_some() { None } else { Some("127.0.0.1:8080") });
    let tls = raw.tls.and_then(|tls| {
        let listen = address(p, "bff.tls.listen", tls.listen, Some("127.0.0.1:8443"));
        let cert = tls.cert_file.map(|f| resolve(base, &f));
        let key = tls.key_file.map(|f| resolve(base, &f));
        if cert.is_none() {
            p.add("bff.tls.cert_file", "required for the HTTPS listener (a PEM certificate chain)");
        }
        if key.is_none() {
            p.add("bff.tls.key_file", "required for the HTTPS listener (a PEM private key)");
        }
        Some(TlsListener { listen: listen?, cert_file: cert?, key_file: key? })
    });
    let public_origin = match raw.public_origin {
        Some(text) => http_url(p, "bff.public_origin", &text),
        None => listen.map(|a| Url::parse(&format!("http://localhost:{}", a.port())).expect("valid")),
    };
    if let Some(origin) = &public_origin
        && origin.scheme() == "http"
        && !super::validate::is_loopback_host(origin)
    {
        p.hint(
            "bff.public_origin",
            "plain http is allowed only for loopback hosts",
            "browsers drop __Host- cookies without TLS: serve https (bff.tls) or terminate TLS in front",
        );
    }
    let threads = match raw.threads {
        None => std::thread::available_parallelism().map_or(2, |n| n.get()).max(2),
        Some(n @ 1..=256) => n as usize,
        Some(n) => {
            p.hint("bff.threads", format!("{n} is out of range"), "1 to 256 worker threads");
            2
        }
    };
    let grace = raw.grace_period_seconds.unwrap_or(5).max(0) as u64;
    let shutdown = raw.graceful_shutdown_timeout_seconds.unwrap_or(10).max(0) as u64;

    let frontend = match (raw.frontend_dir, raw.frontend_dev_server) {
        (Some(_), Some(_)) => {
            p.add("bff.frontend_dir", "set frontend_dir or frontend_dev_server, not both");
            Frontend::None
        }
        (Some(dir), None) => {
            let root = resolve(base, &dir);
            if !root.is_dir() {
                p.hint("bff.frontend_dir", format!("{} is not a directory", root.display()), "the SPA's build output");
            }
            Frontend::Static { root }
        }
        (None, Some(url)) => http_url(p, "bff.frontend_dev_server", &url)
            .map_or(Frontend::None, |upstream| Frontend::DevServer { upstream }),
        (None, None) => Frontend::None,
    };

    // The token service the gateway is a client of: by default the co-located one.
    let o = raw.oidc;
    let issuer = match o.issuer {
        Some(text) => http_url(p, "bff.oidc.issuer", &text),
        None => Some(idp.issuer.clone()),
    };
    let client_id = o.client_id.unwrap_or_else(|| {
        p.hint(
            "bff.oidc.client_id",
            "required",
            "the gateway's client_id at the token service, e.g. \"gatehouse-bff\"",
        );
        String::new()
    });
    let client_secret = secret_from(p, "bff.oidc.client_secret", o.client_secret, o.client_secret_file, base);
    if client_secret.is_none() {
        p.hint("bff.oidc.client_secret", "required (or client_secret_file)", "the secret registered for the client");
    }
    let scopes =
        o.scopes.unwrap_or_else(|| ["openid", "profile", "email", "offline_access"].map(String::from).to_vec());
    if !scopes.iter().any(|s| s == "openid") {
        p.add("bff.oidc.scopes", "must include \"openid\"");
    }
    let id_token_algs = o.id_token_algs.unwrap_or_else(|| vec!["RS256".into(), "ES256".into()]);
    for (i, alg) in id_token_algs.iter().enumerate() {
        if !matches!(alg.as_str(), "RS256" | "ES256" | "PS256" | "ES384" | "EdDSA") {
            p.hint(
                format!("bff.oidc.id_token_algs[{i}]"),
                format!("{alg:?} is not accepted"),
                "asymmetric algorithms only: RS256, ES256, PS256, ES384, EdDSA",
            );
        }
    }
    let timeout = seconds(p, "bff.oidc.timeout_seconds", o.timeout_seconds, 10);

    // Cookie sealing keys.
    let c = raw.cookie;
    let name = c.name.unwrap_or_else(|| "__Host-gatehouse".to_owned());
    if !name.starts_with("__Host-")
        || name.len() > 64
        || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_".contains(ch))
    {
        p.hint(
            "bff.cookie.name",
            format!("{name:?} is not allowed"),
            "a __Host- prefixed token (letters, digits, - and _), e.g. \"__Host-gatehouse\"",
        );
    }
    let same_site = match c.same_site.as_deref().unwrap_or("strict").to_ascii_lowercase().as_str() {
        "strict" => SameSite::Strict,
        "lax" => SameSite::Lax,
        other => {
            p.hint("bff.cookie.same_site", format!("{other:?} is not allowed"), "\"strict\" (default) or \"lax\"");
            SameSite::Strict
        }
    };
    let mut keys = cookie_keys(p, c.keys, c.keys_file, base);
    if keys.is_empty() {
        let mut key = [0u8; 32];
        if aws_lc_rs::rand::fill(&mut key).is_err() {
            p.add("bff.cookie.keys", "no key configured and none could be generated");
        }
        keys.push(CookieKey { id: "gen".into(), key });
        notes.push(
            "bff.cookie.keys is not set: a random cookie key was generated for this run, so sessions end at \
             restart (sessions stored by an earlier run no longer open and are discarded); set keys to keep them, \
             and to share them between gateway nodes"
                .to_owned(),
        );
    }

    let s = raw.session;
    let session = SessionSettings {
        idle_timeout: Duration::from_secs(seconds(
            p,
            "bff.session.idle_timeout_seconds",
            s.idle_timeout_seconds,
            8 * 3600,
        ) as u64),
        absolute_lifetime: Duration::from_secs(seconds(
            p,
            "bff.session.absolute_lifetime_seconds",
            s.absolute_lifetime_seconds,
            7 * 86400,
        ) as u64),
        refresh_skew: Duration::from_secs(s.refresh_skew_seconds.unwrap_or(30).max(0) as u64),
        cache_capacity: s.cache_capacity.unwrap_or(100_000).max(1) as u64,
        store: session_store(p, s.store, s.store_file, idp, base),
        mode: session_mode(p, s.mode.as_deref()),
    };

    let routes = raw.routes.into_iter().enumerate().filter_map(|(i, r)| route(p, i, r)).collect();

    Some(BffSettings {
        listen,
        tls,
        threads,
        grace_period: Duration::from_secs(grace),
        graceful_shutdown_timeout: Duration::from_secs(shutdown),
        public_origin: public_origin?,
        oidc: OidcSettings {
            issuer: issuer?,
            client_id,
            client_secret: client_secret?,
            scopes,
            use_par: o.use_par.unwrap_or(true),
            id_token_algs,
            timeout: Duration::from_secs(timeout as u64),
            metadata_ttl: Duration::from_secs(300),
            jwks_min_refresh: Duration::from_secs(10),
            leeway_seconds: 30,
        },
        cookie: CookieSettings { name, same_site, keys },
        session,
        routes,
        frontend,
    })
}

/// The configured cookie keys, newest first: `bff.cookie.keys`, then the lines of `keys_file` (blank lines and
/// `#` comments skipped). Empty when neither is set. Also what `gatehouse serve` re-reads on SIGHUP.
pub(super) fn cookie_keys(
    p: &mut Problems,
    keys: Option<Vec<Secret>>,
    keys_file: Option<String>,
    base: &Path,
) -> Vec<CookieKey> {
    let mut key_texts: Vec<(String, Secret)> =
        keys.unwrap_or_default().into_iter().enumerate().map(|(i, k)| (format!("bff.cookie.keys[{i}]"), k)).collect();
    if let Some(file) = keys_file {
        let path = resolve(base, &file);
        match std::fs::read_to_string(&path) {
            Ok(text) => key_texts.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                    .map(|l| ("bff.cookie.keys_file".to_owned(), Secret::new(l.trim()))),
            ),
            Err(e) => p.add("bff.cookie.keys_file", format!("cannot read {}: {e}", path.display())),
        }
    }
    let mut keys = Vec::new();
    for (key, text) in key_texts {
        match text.expose().split_once(':').and_then(|(id, k)| Some((id, b64::decode(k)?))) {
            Some((id, bytes)) if bytes.len() == 32 && !id.is_empty() => {
                let mut key_bytes = [0u8; 32];
                key_bytes.copy_from_slice(&bytes);
                keys.push(CookieKey { id: id.to_owned(), key: key_bytes });
            }
            _ => p.hint(key, "not a cookie key", KEY_HINT),
        }
    }
    keys
}

/// `bff.session.store`: "sqlite" (default) in `store_file` (default `<idp.data_dir>/gateway-sessions.db`, relative
/// paths against the configuration file's directory), or "memory".
fn session_store(
    p: &mut Problems,
    store: Option<String>,
    store_file: Option<String>,
    idp: &IdpConfig,
    base: &Path,
) -> SessionStoreSettings {
    match store.as_deref().unwrap_or("sqlite") {
        "sqlite" => {
            let path = match store_file {
                Some(file) if file.trim().is_empty() => {
                    p.hint("bff.session.store_file", "must not be empty", "a file path, or leave it unset");
                    idp.data_dir.join("gateway-sessions.db")
                }
                Some(file) => resolve(base, &file),
                None => idp.data_dir.join("gateway-sessions.db"),
            };
            SessionStoreSettings::Sqlite { path }
        }
        "memory" => {
            if store_file.is_some() {
                p.add("bff.session.store_file", "only used with bff.session.store = \"sqlite\"");
            }
            SessionStoreSettings::Memory
        }
        other => {
            p.hint(
                "bff.session.store",
                format!("{other:?} is not a session store"),
                "\"sqlite\" (default: sessions survive restarts) or \"memory\"",
            );
            SessionStoreSettings::Memory
        }
    }
}

/// `bff.session.mode`: "server" (default) or "cookie".
fn session_mode(p: &mut Problems, mode: Option<&str>) -> SessionMode {
    match mode.unwrap_or("server").to_ascii_lowercase().as_str() {
        "server" => SessionMode::Server,
        "cookie" => SessionMode::Cookie,
        other => {
            p.hint("bff.session.mode", format!("{other:?} is not allowed"), "\"server\" (default) or \"cookie\"");
            SessionMode::Server
        }
    }
}

fn route(p: &mut Problems, i: usize, r: RawRoute) -> Option<RouteSettings> {
    let key = |k: &str| format!("bff.routes[{i}].{k}");
    let path = r.path.unwrap_or_default();
    if !path.starts_with('/') || path.starts_with("/bff") {
        p.hint(
            key("path"),
            format!("{path:?} is not a usable path prefix"),
            "starts with / and is not under /bff/ (the gateway's own endpoints)",
        );
    }
    let upstreams: Vec<Url> = r
        .upstreams
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(j, u)| http_url(p, &format!("bff.routes[{i}].upstreams[{j}]"), u))
        .collect();
    if upstreams.is_empty() {
        p.hint(key("upstreams"), "at least one upstream is required", "e.g. [\"http://127.0.0.1:7001\"]");
    }
    let token = match r.token.as_deref().unwrap_or("user") {
        "user" => TokenRequirement::User,
        "client" => TokenRequirement::Client,
        "user_or_client" => TokenRequirement::UserOrClient,
        "user_or_none" => TokenRequirement::UserOrNone,
        "none" => TokenRequirement::None,
        other => {
            p.hint(
                key("token"),
                format!("{other:?} is not a token requirement"),
                "user, client, user_or_client, user_or_none or none",
            );
            TokenRequirement::User
        }
    };
    let public_base = r.public_base.and_then(|u| http_url(p, &key("public_base"), &u));
    let methods: Vec<http::Method> = r
        .methods
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(j, m)| match http::Method::from_bytes(m.as_bytes()) {
            Ok(method) if !matches!(m.as_str(), "TRACE" | "TRACK" | "CONNECT") => Some(method),
            _ => {
                p.hint(
                    format!("bff.routes[{i}].methods[{j}]"),
                    format!("{m:?} is not a method the gateway forwards"),
                    "HTTP methods as written on the wire, e.g. \"GET\", \"POST\" (TRACE and CONNECT are always refused)",
                );
                None
            }
        })
        .collect();
    // RFC 8707 §2: an absolute URI without a fragment.
    let resource = r.resource.filter(|value| match Url::parse(value) {
        Ok(url) if url.fragment().is_none() => true,
        _ => {
            p.hint(
                key("resource"),
                format!("{value:?} is not a resource indicator"),
                "an absolute URI without #fragment, e.g. the API's audience",
            );
            false
        }
    });
    let max_body_bytes = match r.max_body_bytes {
        None => 1024 * 1024,
        Some(n @ 0..=1_073_741_824) => n as usize,
        Some(n) => {
            p.hint(key("max_body_bytes"), format!("{n} is out of range"), "0 to 1073741824 bytes");
            1024 * 1024
        }
    };
    Some(RouteSettings {
        path,
        upstreams,
        strip_prefix: r.strip_prefix.unwrap_or(false),
        token,
        require_csrf: r.require_csrf.unwrap_or(true),
        required_scopes: r.required_scopes.unwrap_or_default(),
        resource,
        public_base,
        connect_timeout: Duration::from_secs(
            seconds(p, &key("connect_timeout_seconds"), r.connect_timeout_seconds, 5) as u64
        ),
        read_timeout: Duration::from_secs(seconds(p, &key("read_timeout_seconds"), r.read_timeout_seconds, 60) as u64),
        max_body_bytes,
        websockets: r.websockets.unwrap_or(false),
        methods,
    })
}

/// `[admin]`: on unless `enabled = false`; `listen` defaults to 127.0.0.1:9090.
pub(super) fn admin(raw: RawAdmin, p: &mut Problems) -> Option<AdminConfig> {
    if raw.enabled == Some(false) {
        return None;
    }
    let listen = address(p, "admin.listen", raw.listen, Some("127.0.0.1:9090"))?;
    Some(AdminConfig { listen })
}

pub(super) fn demo_api(raw: RawDemoApi, idp: &IdpConfig, p: &mut Problems) -> Option<DemoApiConfig> {
    if raw.enabled == Some(false) {
        return None;
    }
    let listen = address(p, "demo_api.listen", raw.listen, Some("127.0.0.1:7001"))?;
    Some(DemoApiConfig {
        listen,
        issuer: idp.issuer_text(),
        audience: raw.audience.unwrap_or_else(|| "http://localhost:8080/api".to_owned()),
        public_base: raw.public_base.unwrap_or_else(|| "http://localhost:8080".to_owned()),
    })
}

//! `gatehouse serve`: binds the listener (a port in use is a clear one-line error, not a retry loop), reads or
//! creates the master key, opens the store, seeds what the configuration file declares, says where it listens,
//! and runs until SIGINT or SIGTERM. With `idp.enabled = false` it runs only the gateway (and the demo API), so
//! the token service can run, stop and restart in a process of its own. SIGHUP re-reads the gateway's cookie
//! keys (`reload_cookie_keys`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use gatehouse_idp::settings::SeedPassword;
use tokio::net::TcpListener;
use url::Url;

use crate::commands::{master_key, now, open_store, runtime_error};
use crate::config::{Config, IdpConfig};

pub async fn serve(config: Config, path: &Path) -> ExitCode {
    let Config { idp, bff, demo_api, admin, notes, .. } = config;
    for note in &notes {
        tracing::warn!("{note}");
    }

    // 0. Signal handlers before anything listens (see `shutdown_signal`); SIGHUP's default action would end the
    //    process, so its handler is installed as early.
    let shutdown = shutdown_signal();
    let hangups = hangup_signal();

    // 1. Bind first, so a port in use fails at once, before any slow start-up work.
    let listener = if idp.enabled {
        match bind(idp.listen, "idp.listen").await {
            Ok(listener) => Some(listener),
            Err(code) => return code,
        }
    } else {
        None
    };
    let admin_listener = match &admin {
        Some(admin) => match bind(admin.listen, "admin.listen").await {
            Ok(listener) => Some(listener),
            Err(code) => return code,
        },
        None => None,
    };

    // 2. The store and what the file declares in it (the token service's; nothing when it is off).
    let token_service = match listener {
        Some(listener) => {
            let master_key = match master_key(&idp) {
                Ok(key) => key,
                Err(code) => return code,
            };
            let store = match open_store(&idp).await {
                Ok(store) => store,
                Err(code) => return code,
            };
            if let Err(e) = gatehouse_idp::admin::seed(&store, &idp.seed_users(), &idp.clients, now()).await {
                return runtime_error(format!("cannot seed the users and clients from the configuration file: {e}"));
            }
            Some((listener, master_key, store))
        }
        None => None,
    };

    // 3. The demo API and the gateway, when configured. The gateway talks HTTP to the token service (never in
    //    process), so the two could as well run on different machines.
    if let Some(demo) = &demo_api {
        let listener = match bind(demo.listen, "demo_api.listen").await {
            Ok(listener) => listener,
            Err(code) => return code,
        };
        let verifier = gatehouse_proto::verifier::VerifierConfig::new(&demo.issuer, &demo.audience);
        let app = gatehouse_example_api::router(verifier, &demo.public_base);
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "the demo API stopped");
            }
        });
        println!("gatehouse demo API listening on {} (audience {})", demo.listen, demo.audience);
    }
    let gateway = match bff {
        Some(settings) => match start_gateway(settings).await {
            Ok(gateway) => Some(gateway),
            Err(e) => return runtime_error(format!("{e:#}")),
        },
        None => None,
    };
    reload_cookie_keys(hangups, gateway.as_ref().map(|g| g.gateway.clone()), path.to_owned());
    if let Some(listener) = admin_listener {
        let parts = crate::admin_listener::Parts {
            token_service: token_service.as_ref().map(|(_, _, store)| store.clone()),
            gateway: gateway.as_ref().map(|g| g.gateway.clone()),
        };
        crate::admin_listener::spawn(listener, parts);
        if let Some(admin) = &admin {
            println!("gatehouse admin listening on {} (/healthz, /readyz)", admin.listen);
        }
    }

    if token_service.is_some() {
        announce(&idp);
    } else {
        println!("gatehouse token service not run here (idp.enabled = false); issuer {}", idp.issuer_text());
    }
    if let Some(gateway) = &gateway {
        let settings = &gateway.gateway.settings;
        if let Some(listen) = settings.listen {
            println!("gatehouse gateway listening on {listen}");
        }
        if let Some(tls) = &settings.tls {
            println!("gatehouse gateway listening on {} (https, HTTP/2)", tls.listen);
        }
        println!("  open:      {}", settings.public_origin);
        match &settings.session.store {
            gatehouse_bff::settings::SessionStoreSettings::Sqlite { path } => {
                println!("  sessions:  {} (embedded store, sealed with the cookie keys)", path.display())
            }
            gatehouse_bff::settings::SessionStoreSettings::Memory => {
                println!("  sessions:  in memory (a restart ends them)")
            }
        }
        tracing::info!(origin = %settings.public_origin, "gateway listening");
    }
    let result = match token_service {
        Some((listener, master_key, store)) => {
            let settings = idp.settings(master_key);
            gatehouse_idp::run(settings, store, listener, shutdown).await
        }
        None => {
            shutdown.await;
            Ok(())
        }
    };
    if let Some(gateway) = gateway {
        gateway.stop_async().await;
    }
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => runtime_error(format!("the token service stopped with an error: {e:#}")),
    }
}

/// On each SIGHUP: re-reads the cookie keys from the configuration file (and the environment) and swaps them into
/// the running gateway (`Gateway::replace_cookie_keys`), without dropping a connection. A file that does not load,
/// sets no keys, or sets an invalid key list changes nothing; every outcome is logged (key ids only).
fn reload_cookie_keys(hangups: Hangups, gateway: Option<Arc<gatehouse_bff::Gateway>>, path: PathBuf) {
    #[cfg(unix)]
    {
        let Some(mut hangups) = hangups else { return };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let Some(gateway) = &gateway else {
                    tracing::info!("SIGHUP received: no gateway runs here, nothing to reload");
                    continue;
                };
                let loaded = crate::config::process_env().and_then(|env| crate::config::load_cookie_keys(&path, &env));
                let keys = match loaded {
                    Ok(Some(keys)) => keys,
                    Ok(None) => {
                        tracing::warn!(
                            "SIGHUP received: bff.cookie.keys and keys_file are not set; keeping the current cookie keys"
                        );
                        continue;
                    }
                    Err(problems) => {
                        let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
                        tracing::error!(
                            file = %path.display(),
                            problems = %problems.join("; "),
                            "SIGHUP received: the configuration does not load; keeping the current cookie keys"
                        );
                        continue;
                    }
                };
                match gateway.replace_cookie_keys(&keys) {
                    Ok(replaced) => {
                        let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
                        tracing::info!(
                            keys = %ids.join(","),
                            sealing = %replaced.sealing_now,
                            retired = %replaced.retired.join(","),
                            "SIGHUP received: cookie keys reloaded"
                        );
                        if replaced.retired.contains(&replaced.sealing_before) {
                            tracing::warn!(
                                key = %replaced.sealing_before,
                                "the key that sealed until now was removed: sessions sealed under it have ended"
                            );
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "SIGHUP received: invalid cookie keys; keeping the current ones")
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (hangups, gateway, path);
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

/// The SIGHUP stream, installed now (without a handler the signal would end the process).
#[cfg(unix)]
fn hangup_signal() -> Hangups {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .inspect_err(|error| tracing::warn!(%error, "cannot listen for SIGHUP: cookie keys cannot be reloaded"))
        .ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangups {}

/// Builds the gateway's state (routes resolved, frontend checked) and starts its listeners.
async fn start_gateway(settings: gatehouse_bff::BffSettings) -> anyhow::Result<gatehouse_bff::RunningGateway> {
    let gateway =
        gatehouse_bff::Gateway::new(settings).await.map_err(|e| anyhow::anyhow!("the gateway cannot start: {e:#}"))?;
    gatehouse_bff::start(std::sync::Arc::new(gateway))
}

/// Binds `address`; on failure one line that names the address and the configuration key.
async fn bind(address: SocketAddr, key: &str) -> Result<TcpListener, ExitCode> {
    TcpListener::bind(address).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                " — another process (another gatehouse?) uses it; stop it or change the key"
            }
            std::io::ErrorKind::PermissionDenied => " — ports below 1024 need privileges",
            _ => "",
        };
        runtime_error(format!("cannot listen on {address} ({key}): {e}{hint}"))
    })
}

/// Where the token service listens, its issuer and discovery URL (standard output and the log); in a loopback
/// demo also the logins for users whose plain password is written in the file. No other secret is ever shown.
fn announce(idp: &IdpConfig) {
    let issuer = idp.issuer_text();
    let discovery = discovery_url(&idp.issuer);
    println!("gatehouse token service listening on {}", idp.listen);
    println!("  issuer:    {issuer}");
    println!("  discovery: {discovery}");
    tracing::info!(listen = %idp.listen, %issuer, %discovery, "token service listening");
    if idp.is_loopback_demo() {
        let demo: Vec<(&str, &str)> = idp
            .users
            .iter()
            .filter(|u| u.password_in_file)
            .filter_map(|u| match &u.seed.password {
                SeedPassword::Plain(password) => Some((u.seed.username.as_str(), password.expose())),
                SeedPassword::Hash(_) => None,
            })
            .collect();
        for (username, password) in &demo {
            println!("  log in as {username} / {password}   (demo account from the configuration file)");
        }
        if !demo.is_empty() {
            let usernames: Vec<&str> = demo.iter().map(|(username, _)| *username).collect();
            tracing::info!(users = %usernames.join(", "), "loopback demo: accounts from the configuration file");
        }
    }
}

/// `{issuer}/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4), built with `url::Url`.
fn discovery_url(issuer: &Url) -> Url {
    let mut url = issuer.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend([".well-known", "openid-configuration"]);
    }
    url
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when this is called — before anything
/// listens — so a signal arriving just after start-up shuts down gracefully instead of killing the process
/// (the default action until a handler exists). A handler that cannot be installed is not awaited (the other
/// still is), rather than shutting down at once.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let install = |kind: SignalKind, name: &'static str| match signal(kind) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for {name}");
            None
        }
    };
    let mut interrupt = install(SignalKind::interrupt(), "SIGINT");
    let mut terminate = install(SignalKind::terminate(), "SIGTERM");
    async move {
        tokio::select! {
            () = received(interrupt.as_mut()) => tracing::info!("SIGINT received: shutting down"),
            () = received(terminate.as_mut()) => tracing::info!("SIGTERM received: shutting down"),
        }
    }
}

/// The next delivery of `signal`; never, without a handler.
#[cfg(unix)]
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C received: shutting down");
        } else {
            std::future::pending::<()>().await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_is_under_the_issuer_path() {
        let at = |issuer: &str| discovery_url(&Url::parse(issuer).unwrap()).to_string();
        assert_eq!(at("http://localhost:9000"), "http://localhost:9000/.well-known/openid-configuration");
        assert_eq!(
            at("https://id.example.com/tenant"),
            "https://id.example.com/tenant/.well-known/openid-configuration"
        );
        assert_eq!(
            at("https://id.example.com/tenant/"),
            "https://id.example.com/tenant/.well-known/openid-configuration"
        );
    }
}

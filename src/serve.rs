//! `gatehouse serve`: opens the store, seeds what the file declares, binds the listeners (a port in use is a
//! clear error, not a retry loop) and runs until SIGINT/SIGTERM.

use std::process::ExitCode;

use crate::commands::{open_store, runtime_error};
use crate::config::{Config, MasterKeySource};

pub async fn serve(config: Config) -> ExitCode {
    let idp = config.idp;
    let (store, master_key) = match open_store(&idp, true).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let mut settings = idp.settings;
    settings.master_key = master_key;
    if let Err(e) = gatehouse_idp::admin::seed(&store, &idp.users, &idp.clients, now()).await {
        return runtime_error(format!("seeding users and clients from the configuration failed: {e}"));
    }
    let listen = settings.listen;
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            return runtime_error(format!("cannot listen on {listen} (idp.listen): {e}"));
        }
    };
    let issuer = settings.issuer.as_str().trim_end_matches('/').to_owned();
    println!("gatehouse token service listening on http://{listen}");
    println!("  issuer:    {issuer}");
    println!("  discovery: {issuer}/.well-known/openid-configuration");
    if settings.insecure_loopback_http() {
        for user in &idp.users {
            if let gatehouse_idp::settings::SeedPassword::Plain(password) = &user.password {
                println!("  demo login: {} / {}", user.username, password.expose());
            }
        }
    }
    tracing::info!(%listen, issuer = %issuer, "token service started");
    if matches!(idp.master_key_source, MasterKeySource::File { default_path: true, .. }) {
        tracing::warn!(
            "using the generated master key under the data directory; set idp.master_key_file in production"
        );
    }
    // The gateway (bff) will be started here, beside the token service, by the gateway issue.
    match gatehouse_idp::run(settings, store, listener, shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => runtime_error(format!("token service failed: {e}")),
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

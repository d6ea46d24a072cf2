//! Running the gateway: a pingora server with the configured listeners (HTTP, and HTTPS via rustls with
//! HTTP/2), explicit worker threads and shutdown timings, on its own thread (pingora's `Server::run` blocks
//! and must not run inside a tokio runtime), stopped through a handle.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use tokio::sync::watch;

use crate::proxy::GatewayProxy;
use crate::state::Gateway;

/// A running gateway: `stop` shuts it down gracefully (within the configured timings) and waits.
pub struct RunningGateway {
    pub gateway: Arc<Gateway>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl RunningGateway {
    /// Asks the server to stop and waits for its thread (call from outside any async context, or via
    /// `stop_async`).
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    pub async fn stop_async(self) {
        let _ = tokio::task::spawn_blocking(move || self.stop()).await;
    }
}

struct StopWatch(watch::Receiver<bool>);

#[async_trait]
impl ShutdownSignalWatch for StopWatch {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stop| *stop).await;
        ShutdownSignal::GracefulTerminate
    }
}

/// Fails with a clear message when an address cannot be bound (pingora itself would retry for 30 s and then
/// panic in a service thread).
pub fn check_bindable(address: SocketAddr, key: &str) -> anyhow::Result<()> {
    TcpListener::bind(address).map(drop).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => " — another process uses it; stop it or change the key",
            std::io::ErrorKind::PermissionDenied => " — ports below 1024 need privileges",
            _ => "",
        };
        anyhow::anyhow!("cannot listen on {address} ({key}): {e}{hint}")
    })
}

/// Checks the TLS files before pingora sees them (it panics on a bad one).
fn check_tls_files(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<()> {
    for (what, path) in [("certificate", cert), ("private key", key)] {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read the TLS {what} {}: {e}", path.display()))?;
        if !text.contains("-----BEGIN ") {
            anyhow::bail!("the TLS {what} {} is not PEM", path.display());
        }
    }
    Ok(())
}

/// Starts the gateway's listeners and workers. Ports are checked first, so a port in use is an error here.
pub fn start(gateway: Arc<Gateway>) -> anyhow::Result<RunningGateway> {
    let settings = &gateway.settings;
    if let Some(listen) = settings.listen {
        check_bindable(listen, "bff.listen")?;
    }
    if let Some(tls) = &settings.tls {
        check_bindable(tls.listen, "bff.tls.listen")?;
        check_tls_files(&tls.cert_file, &tls.key_file)?;
    }
    if settings.listen.is_none() && settings.tls.is_none() {
        anyhow::bail!("the gateway has no listener: set bff.listen or bff.tls");
    }

    let conf = ServerConf {
        threads: settings.threads.max(1),
        grace_period_seconds: Some(settings.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(settings.graceful_shutdown_timeout.as_secs()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        GatewayProxy::new(gateway.clone()),
        "gatehouse-bff",
    );
    if let Some(listen) = settings.listen {
        service.add_tcp(&listen.to_string());
    }
    if let Some(tls) = &settings.tls {
        let mut tls_settings = pingora::listeners::tls::TlsSettings::intermediate(
            &tls.cert_file.to_string_lossy(),
            &tls.key_file.to_string_lossy(),
        )
        .map_err(|e| anyhow::anyhow!("TLS settings: {e}"))?;
        tls_settings.enable_h2();
        service.add_tls_with_settings(&tls.listen.to_string(), None, tls_settings);
    }
    server.add_service(service);

    let (stop, rx) = watch::channel(false);
    let thread = std::thread::Builder::new().name("gatehouse-bff".into()).spawn(move || {
        server.run(RunArgs { shutdown_signal: Box::new(StopWatch(rx)) });
    })?;
    Ok(RunningGateway { gateway, stop, thread: Some(thread) })
}

//! A bare pingora reverse proxy: every request goes to one upstream, unchanged. The baseline that
//! `bench/gateway.sh` compares nginx and the Gatehouse gateway against; it has no Gatehouse code in it.
//!
//!   cargo run --release -p gatehouse-bff --example bare_proxy -- \
//!       --listen 127.0.0.1:8081 --upstream 127.0.0.1:7002 [--threads 2]
//!
//! Stops on SIGINT/SIGTERM at once (grace periods 0). No per-request logging: it would dominate the figures.

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora::prelude::{HttpPeer, ProxyHttp, Result, Session};
use pingora::proxy::http_proxy_service;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};

/// The same allocator as the `gatehouse` binary, so the baseline differs from the gateway only in Gatehouse's
/// own work.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("bare_proxy: {message}\nusage: bare_proxy --listen ADDR:PORT --upstream ADDR:PORT [--threads N]");
            std::process::exit(2);
        }
    };
    // A bind conflict would retry for 30 s and then panic in the service thread (PINGORA-NOTES): check first.
    if let Err(error) = std::net::TcpListener::bind(options.listen) {
        eprintln!("bare_proxy: cannot listen on {}: {error}", options.listen);
        std::process::exit(1);
    }

    let conf = ServerConf {
        threads: options.threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = http_proxy_service(&server.configuration, BareProxy { upstream: options.upstream });
    service.add_tcp(&options.listen.to_string());
    server.add_service(service);
    eprintln!("bare_proxy: {} → {} with {} threads", options.listen, options.upstream, options.threads);
    server.run(RunArgs::default());
}

/// Forwards everything to `upstream` over plain HTTP/1.1 (pooled connections).
struct BareProxy {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for BareProxy {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        // A socket address, so pingora does no (blocking) DNS lookup.
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

struct Options {
    listen: SocketAddr,
    upstream: SocketAddr,
    threads: usize,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> std::result::Result<Self, String> {
        let (mut listen, mut upstream, mut threads) = (None, None, 2usize);
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--listen" => listen = Some(parse_address(&flag, &value)?),
                "--upstream" => upstream = Some(parse_address(&flag, &value)?),
                "--threads" => {
                    threads = value.parse().ok().filter(|n| *n >= 1).ok_or_else(|| format!("bad --threads {value}"))?
                }
                _ => return Err(format!("unknown argument {flag}")),
            }
        }
        Ok(Self {
            listen: listen.ok_or("--listen is required")?,
            upstream: upstream.ok_or("--upstream is required")?,
            threads,
        })
    }
}

fn parse_address(flag: &str, value: &str) -> std::result::Result<SocketAddr, String> {
    value.parse().map_err(|_| format!("{flag} wants IP:PORT, got {value}"))
}

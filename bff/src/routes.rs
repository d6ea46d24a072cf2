//! The route table: which path prefix goes to which upstream, with what token and which checks.
//!
//! Prefixes match on segment boundaries (`/api` matches `/api`, `/api/` and `/api/x`, never `/apix`); the
//! longest prefix wins. Upstream host names are resolved once at start (pingora's `HttpPeer::new` resolves
//! blocking and panics on failure, so it only ever gets socket addresses); several upstreams are used round
//! robin; an upstream failing its TCP health check (`check_health`, run every few seconds for routes with
//! several upstreams) is skipped while others are healthy, and a connection failure moves on to the next one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use url::Url;

use crate::settings::RouteSettings;

/// One upstream: where to connect and how the API sees itself.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub tls: bool,
    /// Host name for SNI and the `Host` header.
    pub host: String,
    /// `scheme://host[:port]` plus the base path of the upstream URL (without trailing slash).
    pub base: Url,
}

#[derive(Debug)]
pub struct Route {
    pub settings: RouteSettings,
    /// The prefix without trailing slash ("" for `/`).
    prefix: String,
    pub upstreams: Vec<Upstream>,
    next: AtomicUsize,
    /// Last health-check outcome per upstream (all healthy until checked).
    healthy: Vec<AtomicBool>,
}

impl Route {
    /// The next upstream index (round robin), taken once per request.
    pub fn pick(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The upstream for a request that picked `index`, on its `attempt`-th try (0 first): a retry after a failed
    /// connection moves on to the next upstream.
    pub fn upstream(&self, index: usize, attempt: usize) -> &Upstream {
        let n = self.upstreams.len();
        let start = index.wrapping_add(attempt);
        let chosen = (0..n)
            .map(|step| start.wrapping_add(step) % n)
            .find(|&i| self.healthy[i].load(Ordering::Relaxed))
            .unwrap_or(start % n);
        &self.upstreams[chosen]
    }

    /// TCP-connects to each upstream (within `timeout`) and records which answer.
    pub async fn check_health(&self, timeout: Duration) {
        for (upstream, healthy) in self.upstreams.iter().zip(&self.healthy) {
            let up =
                matches!(tokio::time::timeout(timeout, tokio::net::TcpStream::connect(upstream.addr)).await, Ok(Ok(_)));
            if healthy.swap(up, Ordering::Relaxed) != up {
                tracing::warn!(route = %self.settings.path, upstream = %upstream.base, up, "upstream health changed");
            }
        }
    }

    /// The path (and query) sent upstream: the prefix removed when `strip_prefix`, then the upstream URL's
    /// own base path in front.
    pub fn upstream_path(&self, upstream: &Upstream, path_and_query: &str) -> String {
        let rest = if self.settings.strip_prefix {
            let rest = &path_and_query[self.prefix.len().min(path_and_query.len())..];
            if rest.is_empty() || rest.starts_with('?') { format!("/{rest}") } else { rest.to_owned() }
        } else {
            path_and_query.to_owned()
        };
        let base = upstream.base.path().trim_end_matches('/');
        format!("{base}{rest}")
    }

    /// The `htu` the API expects for `upstream_path`: the route's `public_base` when set (the API's own idea of
    /// its URL), else the upstream URL. Query and fragment are dropped by the proof builder.
    pub fn htu(&self, upstream: &Upstream, upstream_path: &str) -> String {
        let base = self.settings.public_base.as_ref().unwrap_or(&upstream.base);
        let origin = base.origin().ascii_serialization();
        format!("{origin}{upstream_path}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("route {path}: upstream {url} has no host")]
    NoHost { path: String, url: String },
    #[error("route {path}: upstream {url} uses scheme {scheme}; only http and https are supported")]
    Scheme { path: String, url: String, scheme: String },
    #[error("route {path}: cannot resolve upstream {url}: {reason}")]
    Resolve { path: String, url: String, reason: String },
    #[error("route {path}: no upstream")]
    Empty { path: String },
}

#[derive(Debug, Default)]
pub struct Routes {
    /// Longest prefix first.
    routes: Vec<Arc<Route>>,
}

impl Routes {
    /// Builds the table, resolving upstream host names (async DNS, so safe on a runtime).
    pub async fn resolve(settings: &[RouteSettings]) -> Result<Self, RouteError> {
        let mut routes = Vec::with_capacity(settings.len());
        for route in settings {
            let mut upstreams = Vec::new();
            for url in &route.upstreams {
                upstreams.push(resolve_upstream(&route.path, url).await?);
            }
            if upstreams.is_empty() {
                return Err(RouteError::Empty { path: route.path.clone() });
            }
            routes.push(Arc::new(Route {
                prefix: route.path.trim_end_matches('/').to_owned(),
                settings: route.clone(),
                healthy: upstreams.iter().map(|_| AtomicBool::new(true)).collect(),
                upstreams,
                next: AtomicUsize::new(0),
            }));
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Ok(Self { routes })
    }

    /// Health-checks every route with more than one upstream every `interval`, until `routes` is dropped.
    pub fn spawn_health_checks(routes: &Arc<Routes>, interval: Duration) {
        let weak = Arc::downgrade(routes);
        if !routes.routes.iter().any(|r| r.upstreams.len() > 1) {
            return;
        }
        tokio::spawn(async move {
            loop {
                let Some(routes) = weak.upgrade() else { return };
                for route in routes.routes.iter().filter(|r| r.upstreams.len() > 1) {
                    route.check_health(interval.min(Duration::from_secs(2))).await;
                }
                drop(routes);
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// The route serving `path`, if any.
    pub fn find(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| prefix_matches(&r.prefix, path))
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

/// An upstream URL to a socket address.
pub async fn resolve_upstream(path: &str, url: &Url) -> Result<Upstream, RouteError> {
    let err_url = url.to_string();
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(RouteError::Scheme { path: path.to_owned(), url: err_url, scheme: other.to_owned() });
        }
    };
    let host = url.host_str().ok_or_else(|| RouteError::NoHost { path: path.to_owned(), url: err_url.clone() })?;
    let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
    let lookup_host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = tokio::net::lookup_host((lookup_host, port))
        .await
        .map_err(|e| RouteError::Resolve { path: path.to_owned(), url: err_url.clone(), reason: e.to_string() })?
        .next()
        .ok_or_else(|| RouteError::Resolve {
            path: path.to_owned(),
            url: err_url.clone(),
            reason: "no address".into(),
        })?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    Ok(Upstream { addr, tls, host: authority, base: url.clone() })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::settings::TokenRequirement;

    fn route(path: &str, upstream: &str, strip: bool) -> RouteSettings {
        RouteSettings {
            path: path.into(),
            upstreams: vec![Url::parse(upstream).unwrap()],
            strip_prefix: strip,
            token: TokenRequirement::User,
            require_csrf: true,
            required_scopes: vec![],
            resource: None,
            public_base: None,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            max_body_bytes: 1024,
            websockets: false,
            methods: Vec::new(),
        }
    }

    #[tokio::test]
    async fn longest_prefix_on_segment_boundaries() {
        let routes = Routes::resolve(&[
            route("/api/", "http://127.0.0.1:7001", false),
            route("/api/admin", "http://127.0.0.1:7002", false),
        ])
        .await
        .unwrap();
        assert_eq!(routes.find("/api/x").unwrap().settings.path, "/api/");
        assert_eq!(routes.find("/api").unwrap().settings.path, "/api/");
        assert_eq!(routes.find("/api/admin/users").unwrap().settings.path, "/api/admin");
        assert_eq!(routes.find("/api/administrator").unwrap().settings.path, "/api/");
        assert!(routes.find("/apix").is_none());
        assert!(routes.find("/").is_none());
    }

    #[tokio::test]
    async fn strip_prefix_and_base_path() {
        let routes = Routes::resolve(&[
            route("/api/", "http://127.0.0.1:7001", true),
            route("/orders", "http://127.0.0.1:7002/v1/", true),
            route("/keep", "http://127.0.0.1:7003", false),
        ])
        .await
        .unwrap();
        let r = routes.find("/api/a?b=1").unwrap();
        assert_eq!(r.upstream_path(r.upstream(0, 0), "/api/a?b=1"), "/a?b=1");
        assert_eq!(r.upstream_path(r.upstream(0, 0), "/api?b=1"), "/?b=1");
        let r = routes.find("/orders/7").unwrap();
        assert_eq!(r.upstream_path(r.upstream(0, 0), "/orders/7"), "/v1/7");
        let r = routes.find("/keep/x").unwrap();
        assert_eq!(r.upstream_path(r.upstream(0, 0), "/keep/x"), "/keep/x");
        assert_eq!(r.htu(r.upstream(0, 0), "/keep/x"), "http://127.0.0.1:7003/keep/x");
    }

    #[tokio::test]
    async fn round_robin_and_failover() {
        let mut settings = route("/api", "http://127.0.0.1:1", false);
        settings.upstreams.push(Url::parse("http://127.0.0.1:2").unwrap());
        let routes = Routes::resolve(&[settings]).await.unwrap();
        let r = routes.find("/api").unwrap();
        let ports: Vec<u16> = (0..4).map(|_| r.upstream(r.pick(), 0).addr.port()).collect();
        assert_eq!(ports, [1, 2, 1, 2]);
        let index = r.pick();
        assert_ne!(r.upstream(index, 1).addr.port(), r.upstream(index, 0).addr.port(), "a retry moves on");
    }

    #[tokio::test]
    async fn unhealthy_upstreams_are_skipped() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_port = live.local_addr().unwrap().port();
        let dead_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut settings = route("/api", &format!("http://127.0.0.1:{dead_port}"), false);
        settings.upstreams.push(Url::parse(&format!("http://127.0.0.1:{live_port}")).unwrap());
        let routes = Routes::resolve(&[settings]).await.unwrap();
        let r = routes.find("/api").unwrap();
        r.check_health(Duration::from_secs(1)).await;
        for _ in 0..4 {
            assert_eq!(r.upstream(r.pick(), 0).addr.port(), live_port, "the dead upstream is skipped");
        }
    }

    #[tokio::test]
    async fn bad_upstreams_are_clear_errors() {
        let err = Routes::resolve(&[route("/api", "ftp://x", false)]).await.unwrap_err();
        assert!(err.to_string().contains("scheme ftp"), "{err}");
        let err = Routes::resolve(&[route("/api", "http://no-such-host.invalid", false)]).await.unwrap_err();
        assert!(err.to_string().contains("cannot resolve"), "{err}");
    }
}

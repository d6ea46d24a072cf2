//! One HTTP/1.1 exchange over a real loopback socket: the request is written by hyper's client, parsed by
//! hyper's server and answered by the token service's router, so every component test sees what a network
//! peer would (header parsing, framing, `ConnectInfo`), while the test keeps its manual clock and store.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, Uri, header};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// The `Host` sent when the request names none (the tests' issuer host).
const DEFAULT_HOST: &str = "id.test";

/// Serves `router` for exactly one connection on a fresh loopback port and sends `request` over it.
pub async fn exchange(router: Router, mut request: Request<Body>) -> Response<Vec<u8>> {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let address = listener.local_addr().expect("local address");
    let server = tokio::spawn(async move {
        let (stream, peer) = listener.accept().await.expect("accept");
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let router = router.clone();
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            async move { router.oneshot(request).await }
        });
        // A failed connection shows up on the client side; nothing to report here.
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
    });

    to_origin_form(&mut request);
    let stream = TcpStream::connect(address).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(stream)).await.expect("handshake");
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("exchange");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("response body").to_bytes().to_vec();
    drop(sender);
    let _ = driver.await;
    let _ = server.await;
    Response::from_parts(parts, body)
}

/// Absolute URIs become origin-form with their authority in `Host`; a missing `Host` gets the issuer's.
fn to_origin_form(request: &mut Request<Body>) {
    let host = request.uri().authority().map(|authority| authority.as_str().to_owned());
    if let Some(path) = request.uri().path_and_query().cloned()
        && request.uri().scheme().is_some()
    {
        *request.uri_mut() = Uri::from(path);
    }
    if !request.headers().contains_key(header::HOST) {
        let host = host.unwrap_or_else(|| DEFAULT_HOST.to_owned());
        request.headers_mut().insert(header::HOST, HeaderValue::from_str(&host).expect("host header"));
    }
}

//! The gateway's listeners over real sockets: the HTTPS listener (rustls, HTTP/2 by ALPN) with a certificate
//! made at test time by the `openssl` command-line tool, a clear start-up error for a port already in use, and
//! the development-server frontend tunnelling a websocket upgrade. No token service is needed: `/bff/user`
//! answers 401 without one, and the OpenID metadata is only fetched at the first login.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatehouse_bff::settings::{
    BffSettings, CookieKey, CookieSettings, Frontend, OidcSettings, SameSite, SessionMode, SessionSettings,
    SessionStoreSettings, TlsListener,
};
use gatehouse_bff::{Gateway, RunningGateway};
use gatehouse_proto::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../../tests/support/ports.rs"]
mod ports;

fn settings(listen: Option<SocketAddr>, tls: Option<TlsListener>, frontend: Frontend) -> BffSettings {
    let origin = match (&tls, listen) {
        (Some(tls), _) => format!("https://localhost:{}", tls.listen.port()),
        (None, Some(listen)) => format!("http://{listen}"),
        (None, None) => "http://localhost".to_owned(),
    };
    BffSettings {
        listen,
        tls,
        threads: 2,
        grace_period: Duration::ZERO,
        graceful_shutdown_timeout: Duration::ZERO,
        public_origin: url::Url::parse(&origin).unwrap(),
        oidc: OidcSettings {
            // Never contacted by these tests.
            issuer: url::Url::parse("http://127.0.0.1:9").unwrap(),
            client_id: "bff".into(),
            client_secret: Secret::new("unused-secret-0123456789abcdefghijklmnop"),
            scopes: vec!["openid".into()],
            use_par: false,
            id_token_algs: vec!["ES256".into()],
            timeout: Duration::from_secs(1),
            metadata_ttl: Duration::from_secs(60),
            jwks_min_refresh: Duration::from_secs(1),
            leeway_seconds: 30,
        },
        cookie: CookieSettings {
            name: "__Host-gatehouse".into(),
            same_site: SameSite::Strict,
            keys: vec![CookieKey { id: "k1".into(), key: [7; 32] }],
        },
        session: SessionSettings {
            idle_timeout: Duration::from_secs(3600),
            absolute_lifetime: Duration::from_secs(86400),
            refresh_skew: Duration::from_secs(30),
            cache_capacity: 100,
            store: SessionStoreSettings::Memory,
            mode: SessionMode::Server,
        },
        routes: Vec::new(),
        frontend,
    }
}

async fn start(settings: BffSettings) -> anyhow::Result<RunningGateway> {
    let gateway = Arc::new(Gateway::new(settings).await?);
    gatehouse_bff::start(gateway)
}

/// A self-signed end-entity certificate for `localhost` and `127.0.0.1` (P-256 key, PKCS#8 PEM), valid for a
/// day. `CA:FALSE`: webpki refuses a CA certificate presented as a server's own.
fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let config = dir.join("openssl.cnf");
    std::fs::write(
        &config,
        "[req]\ndistinguished_name = dn\nx509_extensions = leaf\nprompt = no\n[dn]\nCN = localhost\n\
         [leaf]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    let output = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .arg("-config")
        .arg(&config)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command-line tool is installed");
    assert!(output.status.success(), "openssl failed: {}", String::from_utf8_lossy(&output.stderr));
    (cert, key)
}

async fn wait_until_up(client: &reqwest::Client, url: &str) {
    for attempt in 0..150 {
        match client.get(url).send().await {
            Ok(_) => return,
            Err(e) if attempt == 149 => panic!("the gateway did not answer at {url}: {e:?}"),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the gateway did not answer at {url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_negotiates_http2_and_answers_bff_user_with_hsts() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = self_signed(dir.path());
    let tls_port = ports::free_port();
    let plain_port = ports::free_port();
    let tls = TlsListener {
        listen: format!("127.0.0.1:{tls_port}").parse().unwrap(),
        cert_file: cert_file.clone(),
        key_file,
    };
    let plain: SocketAddr = format!("127.0.0.1:{plain_port}").parse().unwrap();
    let running = start(settings(Some(plain), Some(tls), Frontend::None)).await.unwrap();

    // Only the test certificate is trusted; `localhost` is pinned to 127.0.0.1 and checked against the
    // certificate's DNS name.
    let trusting = || {
        let certificate = reqwest::Certificate::from_pem(&std::fs::read(&cert_file).unwrap()).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([certificate])
            .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], tls_port)))
    };
    let client = trusting().build().unwrap();
    let url = format!("https://localhost:{tls_port}/bff/user");
    wait_until_up(&client, &url).await;

    let reply = client.get(&url).header("x-csrf", "1").send().await.unwrap();
    assert_eq!(reply.version(), reqwest::Version::HTTP_2, "ALPN picked HTTP/2");
    assert_eq!(reply.status(), 401);
    let headers = reply.headers().clone();
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/json"));
    assert_eq!(headers["strict-transport-security"], "max-age=31536000", "catalogue BFF-HD01 over TLS");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");

    // HTTP/1.1 still works on the same port.
    let http1 = trusting().http1_only().build().unwrap();
    let reply = http1.get(&url).header("x-csrf", "1").send().await.unwrap();
    assert_eq!(reply.version(), reqwest::Version::HTTP_11);
    assert_eq!(reply.status(), 401);
    assert!(reply.headers().contains_key("strict-transport-security"));

    // The plain listener of the same gateway never sends HSTS (RFC 6797 §7.2).
    let reply = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{plain_port}/bff/user"))
        .header("x-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 401);
    assert!(!reply.headers().contains_key("strict-transport-security"));
    running.stop_async().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_a_clear_start_up_error_naming_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let error = start(settings(Some(address), None, Frontend::None)).await.err().expect("start-up fails").to_string();
    assert!(error.contains("bff.listen"), "{error}");
    assert!(error.contains(&address.to_string()), "{error}");
    assert!(error.contains("another process uses it"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = self_signed(dir.path());
    let tls = TlsListener { listen: address, cert_file, key_file };
    let error = start(settings(None, Some(tls), Frontend::None)).await.err().expect("start-up fails").to_string();
    assert!(error.contains("bff.tls.listen"), "{error}");
    assert!(error.contains(&address.to_string()), "{error}");
    drop(taken);
}

/// A websocket upstream on raw sockets: answers the RFC 6455 §1.3 example handshake with 101, sends one text
/// frame, then echoes every byte it receives. Records the handshake request head.
async fn start_websocket_upstream(heads: Arc<Mutex<Vec<String>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                heads.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                // RFC 6455 §1.3: the accept value for the example key `dGhlIHNhbXBsZSBub25jZQ==`.
                let answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
                stream.write_all(answer.as_bytes()).await.unwrap();
                // An unmasked server text frame "hello" (RFC 6455 §5.7).
                stream.write_all(&[0x81, 0x05, b'h', b'e', b'l', b'l', b'o']).await.unwrap();
                let mut buffer = [0u8; 1024];
                loop {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buffer[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    base
}

/// One websocket exchange through the gateway at `listen`: the handshake, the upstream's first frame, then a
/// client frame echoed back byte for byte. `Err` when the connection closes early.
async fn websocket_exchange(listen: SocketAddr) -> Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect(listen).await.unwrap();
    let handshake = format!(
        "GET /@vite/hmr HTTP/1.1\r\nHost: {listen}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Cookie: __Host-gatehouse=k1.secret\r\n\r\n"
    );
    stream.write_all(handshake.as_bytes()).await.unwrap();

    // The 101 head, then the upstream's first frame.
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    let read_until = |received: &Vec<u8>, needle: &[u8]| received.windows(needle.len()).any(|w| w == needle);
    let hello = [0x81, 0x05, b'h', b'e', b'l', b'l', b'o'];
    while !read_until(&received, &hello) {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await.unwrap().unwrap();
        if n == 0 {
            return Err(format!("closed before the first frame: {}", String::from_utf8_lossy(&received)));
        }
        received.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&received).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 101"), "{text}");
    assert!(text.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{text}");
    assert!(text.contains("upgrade: websocket"), "{text}");

    // A masked client frame "ping" (RFC 6455 §5.3) comes back through the tunnel byte for byte.
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut frame = vec![0x81, 0x84];
    frame.extend_from_slice(&mask);
    frame.extend(b"ping".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame).await.unwrap();
    let mut echoed = Vec::new();
    while echoed.len() < frame.len() {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await.unwrap().unwrap();
        if n == 0 {
            return Err("closed before the echo".into());
        }
        echoed.extend_from_slice(&buffer[..n]);
    }
    assert_eq!(echoed, frame);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_server_frontend_tunnels_a_websocket_upgrade() {
    let heads = Arc::new(Mutex::new(Vec::new()));
    let upstream = start_websocket_upstream(heads.clone()).await;
    let port = ports::free_port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let frontend = Frontend::DevServer { upstream: url::Url::parse(&upstream).unwrap() };
    let running = start(settings(Some(listen), None, frontend)).await.unwrap();
    wait_until_up(&reqwest::Client::new(), &format!("http://{listen}/bff/user")).await;

    // pingora 0.9 now and then (about 1 run in 30 here) closes an upgraded connection right after the client's
    // first frame; a hot-reload client reconnects. One retry keeps this test about the tunnel, not that race.
    if let Err(first) = websocket_exchange(listen).await {
        eprintln!("websocket exchange failed once ({first}); retrying");
        websocket_exchange(listen).await.expect("the websocket tunnel works");
    }

    let head = heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(head.starts_with("get /@vite/hmr http/1.1"), "{head}");
    assert!(head.contains("upgrade: websocket"), "the upgrade reached the dev server: {head}");
    assert!(head.contains("sec-websocket-key: dghlihnhbxbszsbub25jzq=="), "{head}");
    assert!(!head.contains("cookie"), "the gateway's cookie is not forwarded: {head}");
    running.stop_async().await;
}

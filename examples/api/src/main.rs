//! `example-api`: the example resource server. Configuration from the environment (see the crate docs).

use gatehouse_proto::verifier::VerifierConfig;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new("info")).init();
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let issuer = env("GATEHOUSE_ISSUER", "http://localhost:9000");
    let audience = env("API_AUDIENCE", "http://localhost:8080/api");
    let listen = env("API_LISTEN", "127.0.0.1:7001");
    let public_base = env("API_PUBLIC_BASE", "http://localhost:8080");
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    println!("example API on http://{listen} (issuer {issuer}, audience {audience})");
    let app = gatehouse_example_api::router(VerifierConfig::new(&issuer, &audience), &public_base);
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

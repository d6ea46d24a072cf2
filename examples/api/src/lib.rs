//! An example API protected by Gatehouse's API-side verifier (`gatehouse_proto::verifier`).
//!
//! Run it (after `gatehouse serve` with the demo configuration):
//!
//! ```sh
//! GATEHOUSE_ISSUER=http://localhost:9000 API_AUDIENCE=http://localhost:8080/api \
//!   API_LISTEN=127.0.0.1:7001 API_PUBLIC_BASE=http://localhost:8080 cargo run -p gatehouse-example-api
//! ```
//!
//! Every route answers with what the verifier established about the caller: `sub`, `client_id`, scopes and
//! the DPoP key thumbprint (`jkt`) the token is bound to and the proof was signed with.

use std::sync::Arc;

use axum::extract::Extension;
use axum::routing::get;
use axum::{Json, Router};
use gatehouse_proto::verifier::axum_layer::{Protected, require_caller};
use gatehouse_proto::verifier::{Caller, Verifier, VerifierConfig};

/// The API's router: `GET /api/whoami` (and any other `GET /api/*`) behind the verifier.
pub fn router(config: VerifierConfig, public_base: &str) -> Router {
    let protected = Arc::new(Protected { verifier: Verifier::new(config), public_base: public_base.to_owned() });
    Router::new()
        .route("/api/{*path}", get(whoami).post(whoami))
        .layer(axum::middleware::from_fn_with_state(protected, require_caller))
}

async fn whoami(Extension(caller): Extension<Caller>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "sub": caller.sub,
        "client_id": caller.client_id,
        "scopes": caller.scopes,
        "jkt": caller.jkt,
    }))
}

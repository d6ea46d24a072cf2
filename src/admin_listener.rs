//! The admin listener (`[admin]`, the demo's `http://localhost:9090`): endpoints for operators and
//! orchestrators, apart from user traffic. `GET /healthz` answers while the process runs; `GET /readyz` runs the
//! readiness checks of every part this process runs and answers 200 when all pass, 503 otherwise, with a JSON
//! body naming each check and why it failed. Unauthenticated by design: it shows no secret and changes nothing.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use gatehouse_bff::readiness::Check;
use gatehouse_idp::Store;
use gatehouse_idp::store::KeyState;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

/// What `/readyz` checks: the parts this process runs.
#[derive(Clone, Default)]
pub struct Parts {
    /// The token service's store, when the token service runs here.
    pub token_service: Option<Store>,
    /// The gateway, when it runs here.
    pub gateway: Option<Arc<gatehouse_bff::Gateway>>,
}

pub fn router(parts: Parts) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(parts)
}

/// Serves the admin endpoints on `listener` until the process ends.
pub fn spawn(listener: TcpListener, parts: Parts) {
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router(parts)).await {
            tracing::error!(%error, "the admin listener stopped");
        }
    });
}

async fn healthz() -> impl IntoResponse {
    answer(StatusCode::OK, json!({ "status": "ok" }))
}

async fn readyz(State(parts): State<Parts>) -> impl IntoResponse {
    let mut checks = Vec::new();
    if let Some(store) = &parts.token_service {
        checks.push(signing_keys(store).await);
    }
    if let Some(gateway) = &parts.gateway {
        checks.extend(gateway.readiness().await);
    }
    let (status, body) = readiness_answer(&checks);
    answer(status, body)
}

/// The token service's store answers and holds an active signing key (what every token needs).
async fn signing_keys(store: &Store) -> Check {
    let outcome = match store.keys.list_keys().await {
        Ok(keys) if keys.iter().any(|key| key.state == KeyState::Active) => Ok(()),
        Ok(_) => Err("the store holds no active signing key".to_owned()),
        Err(error) => Err(format!("the store does not answer: {error}")),
    };
    Check { name: "token_service_store_and_signing_keys", outcome }
}

/// 200 `{"status":"ready","checks":{name:"ok"}}` when every check passed; otherwise 503 with `"not_ready"` and
/// each failed check's reason in place of `"ok"`.
pub fn readiness_answer(checks: &[Check]) -> (StatusCode, Value) {
    let ready = checks.iter().all(|check| check.outcome.is_ok());
    let detail: Map<String, Value> = checks
        .iter()
        .map(|check| {
            let value = match &check.outcome {
                Ok(()) => Value::from("ok"),
                Err(reason) => Value::from(reason.as_str()),
            };
            (check.name.to_owned(), value)
        })
        .collect();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, json!({ "status": if ready { "ready" } else { "not_ready" }, "checks": detail }))
}

fn answer(status: StatusCode, body: Value) -> impl IntoResponse {
    (status, [(header::CACHE_CONTROL, "no-store")], axum::Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_passing_is_ready() {
        let checks = [Check { name: "a", outcome: Ok(()) }, Check { name: "b", outcome: Ok(()) }];
        let (status, body) = readiness_answer(&checks);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({ "status": "ready", "checks": { "a": "ok", "b": "ok" } }));
    }

    #[test]
    fn one_failed_check_is_503_with_its_reason() {
        let checks = [Check { name: "a", outcome: Ok(()) }, Check { name: "b", outcome: Err("down".into()) }];
        let (status, body) = readiness_answer(&checks);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, json!({ "status": "not_ready", "checks": { "a": "ok", "b": "down" } }));
    }
}

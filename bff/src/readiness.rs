//! What the gateway needs to serve logged-in users, checked on demand for a readiness probe (`/readyz` on the
//! admin listener): its session store answers, and the token service answers its discovery document over HTTP
//! (the same client and issuer the login and refresh flows use).

use crate::state::Gateway;

/// One readiness check: its name, and `Err` with the reason when it fails.
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Result<(), String>,
}

impl Gateway {
    /// Runs the gateway's readiness checks concurrently.
    pub async fn readiness(&self) -> Vec<Check> {
        let (store, token_service) = tokio::join!(self.sessions.count(), self.oidc.probe());
        vec![
            Check { name: "gateway_session_store", outcome: store.map(drop).map_err(|e| e.to_string()) },
            Check { name: "token_service_reachable", outcome: token_service.map_err(|e| e.to_string()) },
        ]
    }
}

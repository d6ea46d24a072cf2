//! The Gatehouse backend-for-frontend gateway, on Cloudflare's pingora.
//!
//! A browser app (SPA, Blazor WASM) sits behind the gateway and never sees a token. The gateway
//! - terminates browser sessions in an AES-256-GCM sealed `__Host-` cookie that carries only a random session id
//!   (`seal`); tokens and the session's DPoP private key stay server-side (`session`) — or, in the optional
//!   cookie mode, travel sealed in cookie chunks with a server-side list of ended sessions (`carrier`, `chunks`,
//!   `ended`);
//! - runs the OpenID Connect authorization-code flow (+PKCE S256, +PAR, +DPoP) against the token service as a
//!   confidential client (`oidc`, `transaction`, `endpoints`), refreshes access tokens before they expire with
//!   one refresh per session however many requests wait (`refresh`);
//! - answers Duende BFF's management endpoints locally (`/bff/login`, `/bff/callback`, `/bff/user`,
//!   `/bff/logout`, `/bff/silent-login`, `/bff/backchannel`);
//! - forwards API calls (`routes`) with `Authorization: DPoP <token>` and a fresh proof per request, after
//!   stripping `Cookie`, `Authorization` and `DPoP` (`proxy`);
//! - serves the frontend's static files (`static_files`).
//!
//! Protocol logic lives in plain functions the tests call directly; `proxy` only adapts them to pingora.

pub mod carrier;
pub mod chunks;
pub mod cookie_keys;
pub mod cookies;
pub mod ended;
pub mod endpoints;
pub mod oidc;
pub mod proxy;
pub mod readiness;
pub mod refresh;
pub mod request_checks;
pub mod response;
pub mod return_url;
pub mod routes;
pub mod seal;
pub mod security_headers;
pub mod server;
pub mod session;
pub mod settings;
pub mod state;
pub mod static_files;
pub mod transaction;
pub mod user;

pub use server::{RunningGateway, start};
pub use settings::BffSettings;
pub use state::Gateway;

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

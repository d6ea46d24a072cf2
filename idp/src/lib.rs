//! Gatehouse token service: an OpenID Provider and OAuth 2.0 authorization server.
//!
//! Protocol modules (`authorize`, `client_auth`, `grants`, `tokens`, `scope`) take typed input, store lookups
//! and `now`, and return typed decisions; the handlers in `http/` only extract, call, do I/O and render.
//! Storage sits behind the narrow traits in `store`; `server` wires it all and serves it.

pub mod admin;
pub mod authorize;
pub mod backchannel;
pub mod client_auth;
pub mod clock;
pub mod dpop;
pub mod error;
pub mod grants;
pub mod http;
pub mod keys;
pub mod logout;
pub mod params;
pub mod password;
pub mod random;
pub mod resource;
pub mod scope;
pub mod seal;
pub mod server;
pub mod settings;
pub mod store;
pub mod throttle;
pub mod tokens;

pub use server::{Idp, run};
pub use settings::Settings;
pub use store::Store;

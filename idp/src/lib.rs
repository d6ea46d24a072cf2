//! Gatehouse token service: an OpenID Provider and OAuth 2.0 authorization server.
//!
//! Protocol modules take typed input, store lookups and `now`, and return typed decisions; the HTTP handlers in
//! `http/` only extract, call, do I/O and render. Storage sits behind the narrow traits in `store`.

pub mod settings;
pub mod store;

pub use settings::Settings;
pub use store::Store;

//! HTTP handlers: extract → call the protocol code → do I/O → render. No protocol decisions here.

pub mod authorize;
pub mod cookies;
pub mod discovery;
pub mod end_session;
pub mod introspect;
pub mod pages;
pub mod par;
pub mod revoke;
pub mod token;
pub mod userinfo;

//! Protocol primitives shared by every part of Gatehouse: the gateway, the token service and the API-side
//! verifier. Pure code, no I/O: JWKs and their RFC 7638 thumbprints, PKCE (RFC 7636), secrets with redacted
//! `Debug` and constant-time equality, closed protocol vocabularies (grant types, client authentication methods,
//! signing algorithms) and the OpenID Connect standard claim set.
//!
//! One implementation of each primitive lives here; nothing else in the workspace re-implements them.

pub mod b64;
pub mod claims;
pub mod dpop;
pub mod dpop_key;
pub mod jose;
pub mod jwk;
pub mod pkce;
pub mod secret;
#[cfg(feature = "verifier")]
pub mod verifier;
pub mod vocab;

pub use jwk::{Jwk, JwkSet};
pub use secret::Secret;

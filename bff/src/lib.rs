//! The Gatehouse backend-for-frontend gateway.
//!
//! This crate will hold the pingora `ProxyHttp` implementation that terminates browser sessions in encrypted
//! `__Host-` cookies, runs the authorization-code flow against the token service as a confidential client and
//! forwards API calls with DPoP-bound access tokens. It is built by the gateway issue; until then it is empty
//! on purpose so the workspace keeps its final shape.

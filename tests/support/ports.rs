//! Free ports for servers a test starts later (a child process, or pingora, which cannot report the port of a
//! `:0` listener). Shared by the root system tests and `bff/tests` (included with `#[path]`).
//!
//! Ports come from below the kernel's ephemeral range (Linux: 32768–60999), so a `:0` bind elsewhere in the
//! same test run (the token service, the echo upstreams) can never be handed the port between the check here
//! and the server's own bind. Each process walks its own slice of the range, so parallel tests and test
//! binaries do not pick the same port.

use std::sync::atomic::{AtomicU32, Ordering};

const FIRST: u32 = 20_000;
const COUNT: u32 = 12_000;

/// A port that is free now and that no `:0` bind will take.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() % 600) * 20;
    for _ in 0..COUNT {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT;
        let port = (FIRST + offset) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT);
}

//! Throttling of failed logins per username and per client IP (ASVS 6.3.1): after `max` failures within the
//! window, further attempts for that key are refused until the window ends. In-process (moka); a shared
//! store can replace it for several nodes.

use std::net::IpAddr;
use std::time::Duration;

use moka::sync::Cache;

use crate::settings::LoginSettings;

pub struct LoginThrottle {
    failures: Cache<String, u32>,
    max_per_username: u32,
    max_per_ip: u32,
}

impl LoginThrottle {
    pub fn new(settings: &LoginSettings) -> Self {
        Self {
            failures: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(settings.failure_window.max(1) as u64))
                .build(),
            max_per_username: settings.max_failures_per_username,
            max_per_ip: settings.max_failures_per_ip,
        }
    }

    fn user_key(username: &str) -> String {
        format!("u:{}", username.to_lowercase())
    }

    fn ip_key(ip: IpAddr) -> String {
        format!("ip:{ip}")
    }

    /// True when attempts for this username or from this address are currently refused.
    pub fn is_locked(&self, username: &str, ip: Option<IpAddr>) -> bool {
        let user = self.failures.get(&Self::user_key(username)).unwrap_or(0);
        let from_ip = ip.and_then(|ip| self.failures.get(&Self::ip_key(ip))).unwrap_or(0);
        user >= self.max_per_username || from_ip >= self.max_per_ip
    }

    pub fn record_failure(&self, username: &str, ip: Option<IpAddr>) {
        let bump = |key: String| {
            self.failures.entry(key).and_upsert_with(|old| old.map(|e| e.into_value() + 1).unwrap_or(1));
        };
        bump(Self::user_key(username));
        if let Some(ip) = ip {
            bump(Self::ip_key(ip));
        }
    }

    /// A successful login clears the username's failures (not the address's).
    pub fn record_success(&self, username: &str) {
        self.failures.invalidate(&Self::user_key(username));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures() {
        let throttle = LoginThrottle::new(&LoginSettings {
            max_failures_per_username: 3,
            max_failures_per_ip: 5,
            failure_window: 60,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(!throttle.is_locked("alice", Some(ip)));
            throttle.record_failure("Alice", Some(ip));
        }
        assert!(throttle.is_locked("alice", None), "per-username, case-insensitive");
        assert!(!throttle.is_locked("bob", Some(ip)));
        throttle.record_failure("bob", Some(ip));
        throttle.record_failure("carol", Some(ip));
        assert!(throttle.is_locked("dave", Some(ip)), "per-IP");
        throttle.record_success("alice");
        assert!(!throttle.is_locked("alice", None));
    }
}

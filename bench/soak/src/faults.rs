//! The faults, each on its own schedule (seconds from the start of the soak), each in its own task:
//! - the token service is killed with SIGKILL and restarted after `down` (an outage lasts until the new process
//!   answers its discovery document);
//! - `gatehouse keys rotate` (a new signing key becomes active; the running token service picks it up within
//!   `idp.signing.key_reload_interval_seconds`);
//! - cookie key rotation: a new key is written in front of `bff.cookie.keys_file`, keeping the previous one (the
//!   one before is retired), and the gateway gets SIGHUP;
//! - back-channel logout: `gatehouse sessions revoke --user U` for a logged-in session's user.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::process::Child;
use url::Url;

use crate::processes::{Launcher, Role, wait_until_answering};
use crate::report::lock;
use crate::sessions::Shared;

/// When each fault happens, in seconds from the start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schedule {
    pub kills: Vec<f64>,
    pub key_rotations: Vec<f64>,
    pub cookie_rotations: Vec<f64>,
    pub revocations: Vec<f64>,
}

impl Schedule {
    /// `kills` restarts spread over 15–60 % of the run (so the last incarnation runs long enough to judge its
    /// memory); the other faults every so many seconds (0: never), offset so they do not all coincide.
    pub fn new(seconds: f64, kills: u32, key_every: f64, cookie_every: f64, revoke_every: f64) -> Self {
        let kills = match kills {
            0 => Vec::new(),
            1 => vec![0.3 * seconds],
            n => (0..n).map(|k| seconds * (0.15 + 0.45 * f64::from(k) / f64::from(n - 1))).collect(),
        };
        let every = |period: f64, first: f64, margin: f64| -> Vec<f64> {
            if period <= 0.0 {
                return Vec::new();
            }
            (0..).map(|n| first + period * f64::from(n)).take_while(|t| *t < seconds - margin).collect()
        };
        Self {
            kills,
            key_rotations: every(key_every, key_every / 2.0, 10.0),
            cookie_rotations: every(cookie_every, cookie_every * 0.45, 10.0),
            revocations: every(revoke_every, revoke_every, 5.0),
        }
    }
}

/// The token service process, restarted by the kill task.
pub struct TokenService {
    pub child: tokio::sync::Mutex<Child>,
    /// Its pid (0 while it is down) and its incarnation (1 = first start), for the memory sampler.
    pub pid: AtomicU32,
    pub incarnation: AtomicU32,
}

/// What the fault tasks need.
pub struct Injector {
    pub launcher: Launcher,
    pub shared: Arc<Shared>,
    pub token_service: Arc<TokenService>,
    pub discovery: Url,
    pub gateway_pid: u32,
    pub cookie_keys_file: PathBuf,
    pub down: Duration,
    pub start: Instant,
}

impl Injector {
    fn at(&self, seconds: f64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.start + Duration::from_secs_f64(seconds))
    }

    fn failed(&self, what: String) {
        eprintln!("soak: {what}");
        lock(&self.shared.tally).fault_errors.push(what);
    }

    /// Starts one task per fault kind.
    pub fn spawn(self: &Arc<Self>, schedule: &Schedule) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        let injector = self.clone();
        let kills = schedule.kills.clone();
        tasks.push(tokio::spawn(async move {
            for at in kills {
                tokio::time::sleep_until(injector.at(at)).await;
                injector.kill_and_restart().await;
            }
        }));
        let injector = self.clone();
        let rotations = schedule.key_rotations.clone();
        tasks.push(tokio::spawn(async move {
            for at in rotations {
                tokio::time::sleep_until(injector.at(at)).await;
                match injector.launcher.admin(&["keys", "rotate"]).await {
                    Ok(_) => lock(&injector.shared.tally).key_rotations += 1,
                    Err(e) => injector.failed(format!("keys rotate: {e:#}")),
                }
            }
        }));
        let injector = self.clone();
        let rotations = schedule.cookie_rotations.clone();
        tasks.push(tokio::spawn(async move {
            for (n, at) in rotations.into_iter().enumerate() {
                tokio::time::sleep_until(injector.at(at)).await;
                injector.rotate_cookie_keys(n + 1).await;
            }
        }));
        let injector = self.clone();
        let revocations = schedule.revocations.clone();
        tasks.push(tokio::spawn(async move {
            for at in revocations {
                tokio::time::sleep_until(injector.at(at)).await;
                injector.revoke_someone().await;
            }
        }));
        tasks
    }

    /// SIGKILL, `down` seconds of outage, a new process, and the outage ends when it answers.
    async fn kill_and_restart(&self) {
        let token_service = &self.token_service;
        let mut child = token_service.child.lock().await;
        // The outage starts as the signal goes out: a request failing right after it is one of its 503s.
        self.shared.outages.begin(Instant::now());
        let _ = child.start_kill();
        let _ = child.wait().await;
        token_service.pid.store(0, Ordering::Relaxed);
        println!("soak: token service killed (SIGKILL); restarting in {:?}", self.down);
        tokio::time::sleep(self.down).await;
        let incarnation = token_service.incarnation.load(Ordering::Relaxed) + 1;
        match self.launcher.spawn(Role::TokenService, incarnation) {
            Ok(next) => {
                token_service.pid.store(next.id().unwrap_or(0), Ordering::Relaxed);
                token_service.incarnation.store(incarnation, Ordering::Relaxed);
                *child = next;
            }
            Err(e) => return self.failed(format!("token service restart: {e:#}")),
        }
        drop(child);
        match wait_until_answering(&self.shared.http, &self.discovery, Duration::from_secs(60)).await {
            Ok(ready) => {
                self.shared.outages.end(ready);
                lock(&self.shared.tally).token_service_restarts += 1;
                println!("soak: token service back (incarnation {incarnation})");
            }
            Err(e) => self.failed(format!("token service did not come back: {e:#}")),
        }
    }

    /// Writes `c<n>` in front of the key file, keeping `c<n-1>` (so `c<n-2>` is retired), and sends SIGHUP.
    async fn rotate_cookie_keys(&self, n: usize) {
        let keys = cookie_key_lines(n, &self.cookie_keys_file);
        if let Err(e) = write_atomically(&self.cookie_keys_file, &keys) {
            return self.failed(format!("cookie key file: {e:#}"));
        }
        match crate::processes::signal(self.gateway_pid, "HUP").await {
            Ok(()) => lock(&self.shared.tally).cookie_key_rotations += 1,
            Err(e) => self.failed(format!("SIGHUP to the gateway: {e:#}")),
        }
    }

    /// Revokes, at the token service's store, the user of a random logged-in session; the CLI then delivers
    /// the back-channel logout to the gateway.
    async fn revoke_someone(&self) {
        let roster = &self.shared.roster;
        let candidates: Vec<usize> = (0..roster.len())
            .filter(|&i| {
                let state = lock(&roster[i]);
                state.logged_in && state.revoked_epoch != Some(state.epoch)
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        let index = candidates[rand::random_range(0..candidates.len())];
        {
            let mut state = lock(&roster[index]);
            state.revoked_epoch = Some(state.epoch);
            state.revocation_done = None;
        }
        let username = self.shared.username(index);
        match self.launcher.admin(&["sessions", "revoke", "--user", &username]).await {
            Ok(output) => {
                lock(&roster[index]).revocation_done = Some(Instant::now());
                lock(&self.shared.tally).revocations += 1;
                if !output.contains("Delivered") {
                    eprintln!("soak: revoke {username}: back-channel logout not delivered? {}", output.trim());
                }
            }
            Err(e) => self.failed(format!("sessions revoke {username}: {e:#}")),
        }
    }
}

/// A fresh random cookie key `c<n>:<base64url of 32 bytes>`.
fn new_cookie_key(n: usize) -> String {
    let key: [u8; 32] = rand::random();
    format!("c{n}:{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key))
}

/// The key file's lines after rotation `n` (0 = the first key): the new key, then the newest earlier one.
fn cookie_key_lines(n: usize, file: &std::path::Path) -> String {
    let mut lines = vec![new_cookie_key(n)];
    if n > 0
        && let Ok(text) = std::fs::read_to_string(file)
        && let Some(previous) = text.lines().find(|l| l.starts_with('c'))
    {
        lines.push(previous.to_owned());
    }
    format!("# soak cookie keys after rotation {n}, newest first\n{}\n", lines.join("\n"))
}

/// Writes the first cookie key before the gateway starts; its id.
pub fn write_first_cookie_key(file: &std::path::Path) -> anyhow::Result<()> {
    write_atomically(file, &cookie_key_lines(0, file))
}

/// Replaces `file` in one rename, so a reload never reads half a file.
fn write_atomically(file: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let temporary = file.with_extension("tmp");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, file)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_spread_over_the_run() {
        let s = Schedule::new(300.0, 3, 60.0, 45.0, 8.0);
        assert_eq!(s.kills, [45.0, 112.5, 180.0]);
        assert_eq!(s.key_rotations, [30.0, 90.0, 150.0, 210.0, 270.0]);
        assert_eq!(s.cookie_rotations.len(), 6);
        assert!(s.cookie_rotations.iter().all(|t| *t < 290.0));
        assert_eq!(s.revocations.first(), Some(&8.0));
        assert!(*s.revocations.last().unwrap() < 295.0);
        let none = Schedule::new(60.0, 0, 0.0, 0.0, 0.0);
        assert_eq!(none, Schedule::default());
    }

    #[test]
    fn a_cookie_rotation_keeps_the_previous_key_and_retires_the_one_before() {
        let dir = std::env::temp_dir().join(format!("soak-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cookie.keys");
        write_first_cookie_key(&file).unwrap();
        for n in 1..=2 {
            write_atomically(&file, &cookie_key_lines(n, &file)).unwrap();
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let ids: Vec<&str> =
            text.lines().filter(|l| !l.starts_with('#')).map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(ids, ["c2", "c1"]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

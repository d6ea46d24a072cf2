//! The processes under test: `gatehouse serve` three times from one configuration file, each with overrides that
//! switch the other parts off — the token service, the gateway and the example API (`[demo_api]`) — so the token
//! service can be killed and restarted under a running gateway, and each process's memory is its own.
//! Also the admin commands (`keys rotate`, `sessions revoke`), signals and resident memory from `/proc`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};
use url::Url;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    TokenService,
    Gateway,
    Api,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::TokenService => "token-service",
            Role::Gateway => "gateway",
            Role::Api => "api",
        }
    }

    /// The overrides that make the shared file run this half only.
    fn env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Role::TokenService => &[("GATEHOUSE_BFF__ENABLED", "false"), ("GATEHOUSE_DEMO_API__ENABLED", "false")],
            Role::Gateway => &[("GATEHOUSE_IDP__ENABLED", "false"), ("GATEHOUSE_DEMO_API__ENABLED", "false")],
            Role::Api => &[("GATEHOUSE_IDP__ENABLED", "false"), ("GATEHOUSE_BFF__ENABLED", "false")],
        }
    }
}

/// Starts and drives the `gatehouse` binary with the soak's configuration file.
#[derive(Clone)]
pub struct Launcher {
    pub gatehouse: PathBuf,
    pub config: PathBuf,
    pub logs: PathBuf,
}

impl Launcher {
    pub fn log_file(&self, role: Role) -> PathBuf {
        self.logs.join(format!("{}.log", role.name()))
    }

    /// `gatehouse serve` for `role`, its output appended to `<logs>/<role>.log` (after a marker line, so the
    /// incarnations of a restarted process can be told apart).
    pub fn spawn(&self, role: Role, incarnation: u32) -> anyhow::Result<Child> {
        let path = self.log_file(role);
        let mut log = OpenOptions::new().create(true).append(true).open(&path).context("log file")?;
        writeln!(log, "{{\"soak\":\"start {} #{incarnation}\"}}", role.name())?;
        let mut command = Command::new(&self.gatehouse);
        command.arg("serve").arg("--config").arg(&self.config);
        for (name, value) in role.env() {
            command.env(name, value);
        }
        command.stdout(Stdio::from(log.try_clone()?)).stderr(Stdio::from(log)).stdin(Stdio::null()).kill_on_drop(true);
        let child = command.spawn().with_context(|| format!("cannot start {}", self.gatehouse.display()))?;
        // For scripts/soak.sh to clean up after an interrupted run.
        if let Some(pid) = child.id() {
            std::fs::write(self.logs.join(format!("{}.pid", role.name())), pid.to_string())?;
        }
        Ok(child)
    }

    /// Deletes the pid files once the processes are stopped (a stale one could name another process later).
    pub fn forget_pids(&self) {
        for role in [Role::TokenService, Role::Gateway, Role::Api] {
            let _ = std::fs::remove_file(self.logs.join(format!("{}.pid", role.name())));
        }
    }

    /// Runs `gatehouse ARGS…` (an admin command, on the token service's configuration) to the end; its output.
    pub async fn admin(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(&self.gatehouse)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .envs(Role::TokenService.env().iter().copied())
            .stdin(Stdio::null())
            .output()
            .await?;
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        anyhow::ensure!(output.status.success(), "gatehouse {} failed ({}): {}", args.join(" "), output.status, text);
        Ok(text)
    }
}

/// Sends `signal` (e.g. "HUP", "TERM") to `pid` with kill(1).
pub async fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().await?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

/// Stops `child` with SIGTERM, or SIGKILL after `patience`.
pub async fn stop(child: &mut Child, patience: Duration) {
    if let Some(pid) = child.id() {
        let _ = signal(pid, "TERM").await;
    }
    if tokio::time::timeout(patience, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// Waits until `url` answers anything over HTTP (any status), polling every 50 ms; when, or an error after
/// `patience`.
pub async fn wait_until_answering(http: &reqwest::Client, url: &Url, patience: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + patience;
    loop {
        if http.get(url.clone()).timeout(Duration::from_secs(1)).send().await.is_ok() {
            return Ok(Instant::now());
        }
        anyhow::ensure!(Instant::now() < deadline, "{url} did not answer within {patience:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resident set size of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn vm_rss_is_read_in_kib() {
        assert_eq!(parse_vm_rss("Name:\tgatehouse\nVmPeak:\t 9 kB\nVmRSS:\t   51234 kB\n"), Some(51234));
        assert_eq!(parse_vm_rss("Name:\tzombie\n"), None);
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }
}

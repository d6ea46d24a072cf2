//! `gatehouse-soak`: the soak test driver. Run it through `scripts/soak.sh`, which builds, writes the
//! configuration, creates the users and then calls this with the paths and ports.
//!
//! It starts three `gatehouse serve` processes from one configuration file — the token service, the gateway and
//! the example API — logs `--sessions` users in through the real login form, and lets each call the API through
//! the gateway for `--seconds` while faults happen on a schedule (`faults`): the token service killed with
//! SIGKILL and restarted, signing keys rotated, cookie keys rotated (SIGHUP), users revoked (back-channel
//! logout). Short access tokens make every session refresh every few seconds. It prints a progress line every
//! 10 s and a table at the end (`report`), and exits 1 when a target is missed:
//! no failed request besides 503s while the token service is down, no session lost, no memory growth after
//! warm-up beyond `--max-rss-growth-percent` (gateway, and the token service's last incarnation).
//!
//! Refreshes are counted in the token service's own store: every refresh-token grant it completes stores the
//! rotated token, so `COUNT(*) - COUNT(DISTINCT grant_id)` of `refresh_tokens` is the refreshes done (each grant's
//! first token comes from the login's code exchange). Rows are only purged after the refresh idle lifetime.

mod browser;
mod faults;
mod processes;
mod report;
mod sessions;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use sqlx::Connection;
use url::Url;

use crate::faults::{Injector, Schedule, TokenService};
use crate::processes::{Launcher, Role, rss_kib, wait_until_answering};
use crate::report::{Outages, Sample, Tally, lock};
use crate::sessions::{SessionState, Shared};

#[derive(Debug, Parser)]
#[command(about = "Soak test driver for Gatehouse (run scripts/soak.sh)")]
struct Args {
    /// The `gatehouse` binary.
    #[arg(long)]
    gatehouse: PathBuf,
    /// The configuration file all three processes and the admin commands share.
    #[arg(long)]
    config: PathBuf,
    /// The gateway's `bff.cookie.keys_file`, rewritten at each cookie key rotation.
    #[arg(long)]
    cookie_keys_file: PathBuf,
    /// The token service's SQLite file (refreshes are counted there).
    #[arg(long)]
    token_service_db: PathBuf,
    /// The gateway's public origin, e.g. http://localhost:18080.
    #[arg(long)]
    gateway: Url,
    /// The token service's issuer, e.g. http://localhost:19000.
    #[arg(long)]
    issuer: Url,
    /// The example API's own address, e.g. http://127.0.0.1:17001.
    #[arg(long)]
    api: Url,
    /// Where the processes' logs go.
    #[arg(long)]
    logs: PathBuf,
    #[arg(long, default_value_t = 200)]
    sessions: usize,
    #[arg(long, default_value_t = 180)]
    seconds: u64,
    /// Users are <prefix>0000, <prefix>0001, … with password "<username>-password".
    #[arg(long, default_value = "soak-")]
    user_prefix: String,
    #[arg(long, default_value = "__Host-gatehouse")]
    cookie_name: String,
    /// Mean pause between two calls of one session (each pause is 0.5–1.5 times this).
    #[arg(long, default_value_t = 1000)]
    think_ms: u64,
    /// Logins running at once before the soak starts (each costs an argon2 verification).
    #[arg(long, default_value_t = 4)]
    login_concurrency: usize,
    #[arg(long, default_value_t = 60)]
    warmup_seconds: u64,
    #[arg(long, default_value_t = 10.0)]
    max_rss_growth_percent: f64,
    /// Token-service kills (SIGKILL), spread over 15–60 % of the run.
    #[arg(long, default_value_t = 3)]
    kills: u32,
    /// Seconds between a kill and the restart.
    #[arg(long, default_value_t = 5)]
    down_seconds: u64,
    /// Seconds between signing key rotations (0: none).
    #[arg(long, default_value_t = 60)]
    key_rotation_every: u64,
    /// Seconds between cookie key rotations (0: none).
    #[arg(long, default_value_t = 45)]
    cookie_rotation_every: u64,
    /// Seconds between revocations (0: none).
    #[arg(long, default_value_t = 8)]
    revoke_every: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("soak: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(soak(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The whole run; `Ok(passed)`.
async fn soak(args: Args) -> anyhow::Result<bool> {
    let http = browser::client(Duration::from_secs(15))?;
    let launcher = Launcher { gatehouse: args.gatehouse.clone(), config: args.config.clone(), logs: args.logs.clone() };
    let discovery = args.issuer.join("/.well-known/openid-configuration")?;
    let patience = Duration::from_secs(60);

    // The processes: token service, example API, gateway (with its first cookie key).
    faults::write_first_cookie_key(&args.cookie_keys_file)?;
    let token_service_child = launcher.spawn(Role::TokenService, 1)?;
    let token_service = Arc::new(TokenService {
        pid: AtomicU32::new(token_service_child.id().unwrap_or(0)),
        incarnation: AtomicU32::new(1),
        child: tokio::sync::Mutex::new(token_service_child),
    });
    wait_until_answering(&http, &discovery, patience).await?;
    let mut api = launcher.spawn(Role::Api, 1)?;
    wait_until_answering(&http, &args.api.join("/api/whoami")?, patience).await?;
    let mut gateway = launcher.spawn(Role::Gateway, 1)?;
    let gateway_pid = gateway.id().unwrap_or(0);
    wait_until_answering(&http, &args.gateway.join("/bff/user")?, patience).await?;
    println!("soak: token service, API and gateway up; logging {} users in", args.sessions);

    let shared = Arc::new(Shared {
        http: http.clone(),
        gateway: args.gateway.clone(),
        cookie_name: args.cookie_name.clone(),
        user_prefix: args.user_prefix.clone(),
        think: Duration::from_millis(args.think_ms),
        tally: Mutex::new(Tally::default()),
        outages: Outages::default(),
        roster: (0..args.sessions).map(|_| Mutex::new(SessionState::default())).collect(),
    });

    // Everyone logs in before the clock starts.
    let login_started = Instant::now();
    let browsers = log_everyone_in(&shared, args.sessions, args.login_concurrency, login_started + patience * 10).await;
    let logged_in = browsers.iter().filter(|b| b.is_some()).count();
    println!("soak: {logged_in}/{} logged in in {:.1} s", args.sessions, login_started.elapsed().as_secs_f64());
    anyhow::ensure!(logged_in == args.sessions, "not every user could log in: see {}", args.logs.display());
    let refreshes_before = refreshes(&args.token_service_db).await;

    // The soak.
    let seconds = args.seconds as f64;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let schedule = Schedule::new(
        seconds,
        args.kills,
        args.key_rotation_every as f64,
        args.cookie_rotation_every as f64,
        args.revoke_every as f64,
    );
    println!(
        "soak: {} s, {} sessions; kills at {:?} s, {} key rotations, {} cookie key rotations, {} revocations",
        args.seconds,
        args.sessions,
        schedule.kills.iter().map(|t| t.round()).collect::<Vec<_>>(),
        schedule.key_rotations.len(),
        schedule.cookie_rotations.len(),
        schedule.revocations.len()
    );
    let session_tasks: Vec<_> = browsers
        .into_iter()
        .enumerate()
        .filter_map(|(index, browser)| Some((index, browser?)))
        .map(|(index, browser)| {
            let shared = shared.clone();
            tokio::spawn(async move { sessions::run(shared.clone(), index, browser, deadline).await })
        })
        .collect();
    let injector = Arc::new(Injector {
        launcher: launcher.clone(),
        shared: shared.clone(),
        token_service: token_service.clone(),
        discovery,
        gateway_pid,
        cookie_keys_file: args.cookie_keys_file.clone(),
        down: Duration::from_secs(args.down_seconds),
        start,
    });
    let fault_tasks = injector.spawn(&schedule);
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let sampler = spawn_sampler(samples.clone(), token_service.clone(), gateway_pid, api.id().unwrap_or(0), start);

    let mut ticker = tokio::time::interval(Duration::from_secs(10));
    ticker.tick().await;
    while Instant::now() + Duration::from_secs(1) < deadline {
        tokio::select! {
            _ = ticker.tick() => {}
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => break,
        }
        let done = refreshes(&args.token_service_db).await.zip(refreshes_before).map(|(now, before)| now - before);
        let last = lock(&samples).last().copied();
        let down = shared.outages.overlaps(Instant::now(), Instant::now());
        println!("{}", report::progress_line(&lock(&shared.tally), start.elapsed().as_secs_f64(), done, last, down));
    }
    let mut sessions_on_newest = (0, 0);
    let newest = format!("c{}.", lock(&shared.tally).cookie_key_rotations);
    for task in session_tasks {
        if let Ok(browser) = task.await
            && let Some(cookie) = browser.cookie(&args.gateway, &args.cookie_name)
        {
            sessions_on_newest.1 += 1;
            sessions_on_newest.0 += usize::from(cookie.starts_with(&newest));
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    for task in fault_tasks {
        task.abort();
    }
    sampler.abort();
    let refreshes_done =
        refreshes(&args.token_service_db).await.zip(refreshes_before).map(|(now, before)| now - before);

    // Stop the processes, then read their logs.
    processes::stop(&mut gateway, Duration::from_secs(10)).await;
    processes::stop(&mut api, Duration::from_secs(10)).await;
    processes::stop(&mut *token_service.child.lock().await, Duration::from_secs(10)).await;
    launcher.forget_pids();
    let gateway_log = log_lines(&launcher.log_file(Role::Gateway));
    let cookie_reloads_logged = gateway_log.iter().filter(|l| l.contains("cookie keys reloaded")).count();
    let mut log_summary = summarize(Role::Gateway.name(), &gateway_log);
    log_summary.extend(summarize(Role::TokenService.name(), &log_lines(&launcher.log_file(Role::TokenService))));
    log_summary.extend(summarize(Role::Api.name(), &log_lines(&launcher.log_file(Role::Api))));

    let samples = lock(&samples).clone();
    let warmup = args.warmup_seconds as f64;
    let series = |pick: &dyn Fn(&Sample) -> Option<u64>| -> Vec<(f64, u64)> {
        samples.iter().filter_map(|s| Some((s.at, pick(s)?))).collect()
    };
    let last_incarnation = samples.iter().map(|s| s.incarnation).max().unwrap_or(1);
    let last_start =
        samples.iter().find(|s| s.incarnation == last_incarnation && s.token_service.is_some()).map_or(0.0, |s| s.at);
    let token_service_series = series(&|s| if s.incarnation == last_incarnation { s.token_service } else { None });
    let peak = |series: &[(f64, u64)]| series.iter().map(|(_, v)| *v).max();
    let gateway_series = series(&|s| s.gateway);
    let api_series = series(&|s| s.api);
    let run = report::Run {
        seconds: elapsed,
        sessions: args.sessions,
        refreshes: refreshes_done,
        outage_seconds: shared.outages.total(Instant::now()).as_secs_f64(),
        planned_restarts: schedule.kills.len() as u64,
        cookie_reloads_logged,
        sessions_on_newest_cookie_key: sessions_on_newest,
        gateway_growth: report::growth(&gateway_series, warmup, elapsed),
        // The last incarnation warms up for 30 s from its own start.
        token_service_growth: report::growth(&token_service_series, last_start + warmup.min(30.0), elapsed),
        api_growth: report::growth(&api_series, warmup, elapsed),
        peak: (peak(&gateway_series), peak(&token_service_series), peak(&api_series)),
        max_growth_percent: args.max_rss_growth_percent,
        log_summary,
    };
    let (text, passed) = report::final_report(&mut lock(&shared.tally), &run);
    println!("{text}");
    write_samples(&args.logs.join("rss.csv"), &samples);
    println!("soak: logs and rss.csv in {}", args.logs.display());
    Ok(passed)
}

/// Logs every session in, `concurrency` at a time; each slot is the session's browser, `None` if it could not
/// log in before `deadline`.
async fn log_everyone_in(
    shared: &Arc<Shared>,
    sessions: usize,
    concurrency: usize,
    deadline: Instant,
) -> Vec<Option<browser::Browser>> {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let tasks: Vec<_> = (0..sessions)
        .map(|index| {
            let shared = shared.clone();
            let permits = permits.clone();
            tokio::spawn(async move {
                let _permit = permits.acquire().await.ok()?;
                let mut browser = browser::Browser::default();
                sessions::log_in(&shared, index, &mut browser, deadline).await.then_some(browser)
            })
        })
        .collect();
    let mut browsers = Vec::with_capacity(sessions);
    for task in tasks {
        browsers.push(task.await.ok().flatten());
    }
    browsers
}

/// Samples the three processes' resident memory every 2 s.
fn spawn_sampler(
    samples: Arc<Mutex<Vec<Sample>>>,
    token_service: Arc<TokenService>,
    gateway_pid: u32,
    api_pid: u32,
    start: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(2));
        loop {
            ticker.tick().await;
            let pid = token_service.pid.load(Ordering::Relaxed);
            let sample = Sample {
                at: start.elapsed().as_secs_f64(),
                gateway: rss_kib(gateway_pid),
                api: rss_kib(api_pid),
                token_service: if pid == 0 { None } else { rss_kib(pid) },
                incarnation: token_service.incarnation.load(Ordering::Relaxed),
            };
            lock(&samples).push(sample);
        }
    })
}

/// Refresh-token grants the token service completed so far (see the crate docs), or `None` when its store
/// cannot be read.
async fn refreshes(db: &Path) -> Option<i64> {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db).read_only(true);
    let mut connection = sqlx::SqliteConnection::connect_with(&options).await.ok()?;
    let count = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) - COUNT(DISTINCT grant_id) FROM refresh_tokens")
        .fetch_one(&mut connection)
        .await
        .ok();
    let _ = connection.close().await;
    count
}

fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|text| text.lines().map(str::to_owned).collect()).unwrap_or_default()
}

/// The warnings and errors of one process's JSON log, counted by message, most frequent first (at most 6).
fn summarize(name: &str, lines: &[String]) -> Vec<String> {
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for line in lines {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let level = value["level"].as_str().unwrap_or_default();
        if level != "WARN" && level != "ERROR" {
            continue;
        }
        // tracing's JSON lines carry the message at the top level (flattened) or under "fields".
        let message = value["message"].as_str().or(value["fields"]["message"].as_str()).unwrap_or("(no message)");
        let message = message.to_owned();
        *counts.entry((level.to_owned(), message)).or_default() += 1;
    }
    let mut counted: Vec<((String, String), u64)> = counts.into_iter().collect();
    counted.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let mut out = vec![format!(
        "{name} log: {} warnings, {} errors",
        counted.iter().filter(|((l, _), _)| l == "WARN").map(|(_, n)| n).sum::<u64>(),
        counted.iter().filter(|((l, _), _)| l == "ERROR").map(|(_, n)| n).sum::<u64>()
    )];
    out.extend(counted.iter().take(6).map(|((level, message), n)| format!("    {n:>6} × {level} {message}")));
    out
}

fn write_samples(path: &Path, samples: &[Sample]) {
    let show = |v: Option<u64>| v.map_or_else(String::new, |k| k.to_string());
    let mut text = String::from("seconds,gateway_kib,api_kib,token_service_kib,token_service_incarnation\n");
    for s in samples {
        text.push_str(&format!(
            "{:.0},{},{},{},{}\n",
            s.at,
            show(s.gateway),
            show(s.api),
            show(s.token_service),
            s.incarnation
        ));
    }
    let _ = std::fs::write(path, text);
}

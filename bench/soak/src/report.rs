//! What the soak counts and how it judges: the tally of requests by outcome, token-service outages, memory
//! samples, the progress line and the final table with its verdict against the targets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Requests and logins by outcome, faults injected.
#[derive(Default)]
pub struct Tally {
    pub requests: u64,
    pub ok: u64,
    /// 401 from the gateway for a session whose user was revoked (back-channel logout): expected.
    pub logged_out_expected: u64,
    /// 401 from the gateway for any other reason, by its `error_description`: sessions lost.
    pub lost: BTreeMap<String, u64>,
    /// 503 for a request that overlapped a token-service outage (documented behaviour).
    pub unavailable_while_down: u64,
    /// 503 with the token service up the whole time, by body and distance to the nearest outage.
    pub unavailable_otherwise: BTreeMap<String, u64>,
    /// Any other failure: other statuses (`status error`), 401s from the API itself, transport errors.
    pub errors: BTreeMap<String, u64>,
    /// A 200 whose `sub` or DPoP `jkt` differed from the session's earlier answers.
    pub identity_changed: u64,
    /// A 200 for a request that started after its user's revocation had completed.
    pub served_after_revocation: u64,
    /// Time from a revocation's completion to the session's first 401.
    pub revocation_to_401: Vec<Duration>,
    pub ok_latency_micros: Vec<u32>,
    pub logins: u64,
    pub login_failures_while_down: u64,
    pub login_failures: BTreeMap<String, u64>,
    pub token_service_restarts: u64,
    pub key_rotations: u64,
    pub cookie_key_rotations: u64,
    pub revocations: u64,
    /// Fault injections that did not work (a failed admin command, a restart that did not come up).
    pub fault_errors: Vec<String>,
}

impl Tally {
    pub fn failed_requests(&self) -> u64 {
        self.lost.values().sum::<u64>()
            + self.unavailable_otherwise.values().sum::<u64>()
            + self.errors.values().sum::<u64>()
            + self.identity_changed
            + self.served_after_revocation
    }
}

/// Token-service outages: from the kill to the first answer of the restarted process.
#[derive(Default)]
pub struct Outages {
    windows: Mutex<Vec<(Instant, Option<Instant>)>>,
}

impl Outages {
    pub fn begin(&self, at: Instant) {
        lock(&self.windows).push((at, None));
    }

    pub fn end(&self, at: Instant) {
        if let Some(last) = lock(&self.windows).last_mut() {
            last.1 = Some(at);
        }
    }

    /// Whether `[start, end]` overlaps an outage (or one still going on).
    pub fn overlaps(&self, start: Instant, end: Instant) -> bool {
        lock(&self.windows).iter().any(|(down, up)| *down <= end && up.is_none_or(|up| start <= up))
    }

    /// Where `[start, end]` lies relative to the nearest outage, for a 503 outside them: "1.2 s before a kill"
    /// or "0.3 s after a restart answered".
    pub fn nearest(&self, start: Instant, end: Instant) -> String {
        let windows = lock(&self.windows);
        let mut best: Option<(f64, String)> = None;
        for (down, up) in windows.iter() {
            let mut candidates = Vec::new();
            if end <= *down {
                let before = down.duration_since(end).as_secs_f64();
                candidates.push((before, format!("{before:.1} s before a kill")));
            }
            if let Some(up) = up.filter(|up| start >= *up) {
                let after = start.duration_since(up).as_secs_f64();
                candidates.push((after, format!("{after:.1} s after a restart answered")));
            }
            for candidate in candidates {
                if best.as_ref().is_none_or(|(distance, _)| candidate.0 < *distance) {
                    best = Some(candidate);
                }
            }
        }
        best.map_or_else(|| "no outage yet".to_owned(), |(_, text)| text)
    }

    pub fn total(&self, now: Instant) -> Duration {
        lock(&self.windows).iter().map(|(down, up)| up.unwrap_or(now).saturating_duration_since(*down)).sum()
    }
}

pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One memory sample: seconds since the soak started, resident KiB per process (`None`: not running then), the
/// token service's incarnation (1 = first start).
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub at: f64,
    pub gateway: Option<u64>,
    pub api: Option<u64>,
    pub token_service: Option<u64>,
    pub incarnation: u32,
}

/// Growth of resident memory between two windows of one process's samples: the minute after warm-up (or, in a
/// short run, the first half of what follows warm-up) against the last minute (the second half).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Growth {
    pub early_kib: u64,
    pub late_kib: u64,
    pub early_window: (f64, f64),
    pub late_window: (f64, f64),
}

impl Growth {
    pub fn percent(&self) -> f64 {
        100.0 * (self.late_kib as f64 - self.early_kib as f64) / self.early_kib.max(1) as f64
    }
}

/// `samples` are `(seconds, KiB)` of one process; `from` is when warm-up ends. Medians, so a single spike does
/// not decide. `None` with fewer than 30 s after warm-up.
pub fn growth(samples: &[(f64, u64)], from: f64, to: f64) -> Option<Growth> {
    if to - from < 30.0 {
        return None;
    }
    let window = (to - from).min(120.0) / 2.0;
    let early_window = (from, from + window.min(60.0));
    let late_window = (to - window.min(60.0), to);
    let median = |(a, b): (f64, f64)| {
        let mut values: Vec<u64> = samples.iter().filter(|(t, _)| *t >= a && *t <= b).map(|(_, v)| *v).collect();
        values.sort_unstable();
        values.get(values.len() / 2).copied()
    };
    Some(Growth { early_kib: median(early_window)?, late_kib: median(late_window)?, early_window, late_window })
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

/// The line printed every ~10 s.
pub fn progress_line(t: &Tally, elapsed: f64, refreshes: Option<i64>, last: Option<Sample>, down: bool) -> String {
    let memory = last.map_or_else(String::new, |s| {
        let show = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |k| format!("{:.0}", k as f64 / 1024.0));
        format!(" rss MiB gw={} api={} idp={}", show(s.gateway), show(s.api), show(s.token_service))
    });
    format!(
        "[{elapsed:>5.0}s] requests={} ok={} 503(down)={} 503(other)={} logged-out={} lost={} errors={} logins={} \
         refreshes={} restarts={} key-rot={} cookie-rot={} revoked={}{memory}{}",
        t.requests,
        t.ok,
        t.unavailable_while_down,
        t.unavailable_otherwise.values().sum::<u64>(),
        t.logged_out_expected,
        t.lost.values().sum::<u64>(),
        t.errors.values().sum::<u64>() + t.identity_changed + t.served_after_revocation,
        t.logins,
        refreshes.map_or_else(|| "?".to_owned(), |r| r.to_string()),
        t.token_service_restarts,
        t.key_rotations,
        t.cookie_key_rotations,
        t.revocations,
        if down { "  [token service DOWN]" } else { "" }
    )
}

/// Everything the final table needs besides the tally.
pub struct Run {
    pub seconds: f64,
    pub sessions: usize,
    pub refreshes: Option<i64>,
    pub outage_seconds: f64,
    pub planned_restarts: u64,
    pub cookie_reloads_logged: usize,
    pub sessions_on_newest_cookie_key: (usize, usize),
    pub gateway_growth: Option<Growth>,
    pub token_service_growth: Option<Growth>,
    pub api_growth: Option<Growth>,
    pub peak: (Option<u64>, Option<u64>, Option<u64>),
    pub max_growth_percent: f64,
    pub log_summary: Vec<String>,
}

/// The final table and the verdict: `(text, targets met)`.
pub fn final_report(t: &mut Tally, run: &Run) -> (String, bool) {
    let mut out = String::new();
    let mut misses: Vec<String> = Vec::new();
    t.ok_latency_micros.sort_unstable();
    let rate = t.requests as f64 / run.seconds.max(1.0);
    let _ = writeln!(out, "\n=== soak: {} sessions, {:.0} s ===", run.sessions, run.seconds);
    let row = |out: &mut String, label: &str, value: String| {
        let _ = writeln!(out, "  {label:<44} {value}");
    };
    row(&mut out, "requests (through the gateway to the API)", format!("{} ({rate:.0}/s)", t.requests));
    row(
        &mut out,
        "  200 OK",
        format!(
            "{}  (p50 {:.1} ms, p99 {:.1} ms)",
            t.ok,
            percentile(&t.ok_latency_micros, 0.5),
            percentile(&t.ok_latency_micros, 0.99)
        ),
    );
    row(&mut out, "  503 while the token service was down", t.unavailable_while_down.to_string());
    row(&mut out, "  503 otherwise", t.unavailable_otherwise.values().sum::<u64>().to_string());
    for (body, n) in &t.unavailable_otherwise {
        row(&mut out, &format!("      {body}"), n.to_string());
    }
    row(&mut out, "  401 logged out (revoked, expected)", t.logged_out_expected.to_string());
    row(&mut out, "  401 session lost", t.lost.values().sum::<u64>().to_string());
    for (why, n) in &t.lost {
        row(&mut out, &format!("      {why}"), n.to_string());
    }
    row(&mut out, "  other errors", t.errors.values().sum::<u64>().to_string());
    for (kind, n) in &t.errors {
        row(&mut out, &format!("      {kind}"), n.to_string());
    }
    row(&mut out, "  200 for another identity (sub/jkt changed)", t.identity_changed.to_string());
    row(&mut out, "  200 after the user's revocation completed", t.served_after_revocation.to_string());
    row(
        &mut out,
        "refreshes (token service store)",
        run.refreshes.map_or_else(|| "unknown".into(), |r| format!("{r} ({:.1}/s)", r as f64 / run.seconds.max(1.0))),
    );
    row(&mut out, "logins (incl. re-logins after revocation)", t.logins.to_string());
    row(&mut out, "  failed while the token service was down", t.login_failures_while_down.to_string());
    row(&mut out, "  failed otherwise", t.login_failures.values().sum::<u64>().to_string());
    for (why, n) in &t.login_failures {
        row(&mut out, &format!("      {why}"), n.to_string());
    }
    row(
        &mut out,
        "token-service restarts (kill -9)",
        format!(
            "{} of {} planned, down {:.1} s in all",
            t.token_service_restarts, run.planned_restarts, run.outage_seconds
        ),
    );
    row(&mut out, "signing key rotations (gatehouse keys rotate)", t.key_rotations.to_string());
    row(
        &mut out,
        "cookie key rotations (SIGHUP)",
        format!(
            "{} ({} reloads logged by the gateway; {}/{} live sessions on the newest key)",
            t.cookie_key_rotations,
            run.cookie_reloads_logged,
            run.sessions_on_newest_cookie_key.0,
            run.sessions_on_newest_cookie_key.1
        ),
    );
    let mut latencies: Vec<f64> = t.revocation_to_401.iter().map(Duration::as_secs_f64).collect();
    latencies.sort_by(f64::total_cmp);
    row(
        &mut out,
        "revocations (gatehouse sessions revoke --user)",
        format!(
            "{} (next request 401: {} sessions; revocation done → 401 max {:.2} s)",
            t.revocations,
            latencies.len(),
            latencies.last().copied().unwrap_or(0.0)
        ),
    );
    let memory = |label: &str, growth: Option<Growth>, peak: Option<u64>, out: &mut String| {
        let text = match growth {
            Some(g) => format!(
                "{} → {} ({:+.1} %; medians of {:.0}–{:.0} s vs {:.0}–{:.0} s), peak {}",
                mib(g.early_kib),
                mib(g.late_kib),
                g.percent(),
                g.early_window.0,
                g.early_window.1,
                g.late_window.0,
                g.late_window.1,
                peak.map_or_else(|| "-".into(), mib)
            ),
            None => "too few samples after warm-up".to_owned(),
        };
        row(out, label, text);
    };
    memory("RSS gateway", run.gateway_growth, run.peak.0, &mut out);
    memory("RSS token service (last incarnation)", run.token_service_growth, run.peak.1, &mut out);
    memory("RSS API (reported, not a target)", run.api_growth, run.peak.2, &mut out);
    for line in &run.log_summary {
        let _ = writeln!(out, "  {line}");
    }
    for error in &t.fault_errors {
        misses.push(format!("fault injection failed: {error}"));
    }

    // The targets.
    if t.requests == 0 || t.ok == 0 {
        misses.push("no successful request at all".into());
    }
    let failed = t.failed_requests();
    if failed > 0 {
        misses.push(format!("{failed} failed requests other than 503 while the token service was down"));
    }
    if !t.lost.is_empty() {
        misses.push(format!("{} sessions lost", t.lost.values().sum::<u64>()));
    }
    if !t.login_failures.is_empty() {
        misses.push(format!("{} logins failed with the token service up", t.login_failures.values().sum::<u64>()));
    }
    if t.token_service_restarts < run.planned_restarts {
        misses.push("not every planned token-service restart happened".into());
    }
    if run.cookie_reloads_logged < t.cookie_key_rotations as usize {
        misses.push("the gateway did not log every cookie key reload".into());
    }
    if run.refreshes.is_none_or(|r| r <= 0) {
        misses.push("no refresh was counted".into());
    }
    for (name, growth) in [("gateway", run.gateway_growth), ("token service", run.token_service_growth)] {
        match growth {
            Some(g) if g.percent() > run.max_growth_percent => misses.push(format!(
                "{name} memory grew {:.1} % after warm-up (limit {} %)",
                g.percent(),
                run.max_growth_percent
            )),
            Some(_) => {}
            None => misses.push(format!("{name} memory could not be judged (run longer)")),
        }
    }
    let passed = misses.is_empty();
    if passed {
        let _ = writeln!(
            out,
            "\nTARGETS MET: no failed request besides 503s while the token service was down, no session lost, \
             no memory growth over {} % after warm-up.",
            run.max_growth_percent
        );
    } else {
        let _ = writeln!(out, "\nTARGETS MISSED:");
        for miss in misses {
            let _ = writeln!(out, "  - {miss}");
        }
    }
    (out, passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_overlap_requests_that_touch_them() {
        let outages = Outages::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        outages.begin(at(10));
        assert!(outages.overlaps(at(11), at(12)), "still down");
        outages.end(at(15));
        assert!(outages.overlaps(at(9), at(10)));
        assert!(outages.overlaps(at(14), at(16)));
        assert!(!outages.overlaps(at(5), at(9)));
        assert!(!outages.overlaps(at(16), at(17)));
        assert_eq!(outages.total(at(100)), Duration::from_secs(5));
        assert_eq!(outages.nearest(at(17), at(18)), "2.0 s after a restart answered");
        assert_eq!(outages.nearest(at(8), at(9)), "1.0 s before a kill");
    }

    #[test]
    fn growth_compares_medians_after_warm_up() {
        // Warm-up below 60 s, then flat with one spike: no growth.
        let samples: Vec<(f64, u64)> = (0..300u32)
            .map(|s| {
                (
                    f64::from(s),
                    if s < 60 {
                        10
                    } else if s == 280 {
                        500
                    } else {
                        100
                    },
                )
            })
            .collect();
        let g = growth(&samples, 60.0, 299.0).unwrap();
        assert_eq!((g.early_kib, g.late_kib), (100, 100));
        assert!(g.percent().abs() < 0.01);
        assert!(growth(&samples, 60.0, 80.0).is_none());
        let rising: Vec<(f64, u64)> = (0..300u32).map(|s| (f64::from(s), 100 + u64::from(s))).collect();
        assert!(growth(&rising, 60.0, 299.0).unwrap().percent() > 50.0);
    }
}

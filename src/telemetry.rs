//! Logging: `tracing` events to standard error, human-readable (`log.format = "pretty"`) or one JSON object per
//! line (`"json"`), filtered by `log.level` — or by `RUST_LOG` when that is set. Colours only on a terminal
//! and never when `NO_COLOR` is set.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber (once; later calls do nothing).
pub fn init(log: &LogSettings) {
    let (filter, rust_log_problem) = match std::env::var("RUST_LOG") {
        Ok(directive) if !directive.trim().is_empty() => match EnvFilter::builder().parse(&directive) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new(&log.level), Some(format!("RUST_LOG={directive:?} ignored: {e}"))),
        },
        // The level was validated with the configuration.
        _ => (EnvFilter::new(&log.level), None),
    };
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Pretty => builder.with_ansi(colour).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
    if let Some(problem) = rust_log_problem {
        tracing::warn!("{problem}");
    }
}

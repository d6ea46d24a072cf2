//! The `gatehouse` configuration loader (`gatehouse::config::parse`, the one `gatehouse serve` runs): TOML
//! syntax, environment overrides (`GATEHOUSE_…`, `__` between key levels), unknown-key and type-error
//! collection, and validation of every section. Relative paths resolve against the repository's `config/`
//! directory, so the committed demo configuration (`config/gatehouse.toml`) is a seed that validates.
//!
//! Input: the TOML text; optionally a NUL byte and then environment variables, one `NAME=VALUE` a line. Bad
//! input must come back as a list of problems, each naming its key: never a panic.

#![no_main]

use std::path::Path;

use gatehouse::config;
use gatehouse_fuzz::split_at_byte;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (text, env) = split_at_byte(data, 0);
    let Ok(text) = std::str::from_utf8(text) else { return };
    let env: Vec<(String, String)> = env
        .map(|env| String::from_utf8_lossy(env).into_owned())
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    match config::parse(text, &base, &env) {
        Ok(_config) => {}
        Err(problems) => {
            assert!(!problems.is_empty(), "a refusal names at least one problem");
            for problem in problems {
                assert!(!problem.to_string().is_empty());
            }
        }
    }
});

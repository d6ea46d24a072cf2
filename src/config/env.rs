//! Environment overrides: `GATEHOUSE_` + the key path, `__` between levels, key names case-insensitive, list
//! items by index (`GATEHOUSE_IDP__CLIENTS__0__SECRET`). Each override is written onto the parsed file's tree
//! before deserialisation, so it goes through exactly the same checks as the file, and problems with an
//! overridden key name the variable that set it.
//!
//! Values are TOML when they read as a bool, integer, float, array or quoted string (`'"0123"'` keeps digits a
//! string); anything else is taken as a plain string.

use std::collections::BTreeMap;
use std::ffi::OsString;

use super::Problem;

pub const PREFIX: &str = "GATEHOUSE_";

/// Variables the CLI itself reads; never configuration overrides.
pub const RESERVED: [&str; 1] = ["GATEHOUSE_CONFIG"];

/// The process environment's `GATEHOUSE_*` variables. A variable with such a name but a value that is not
/// UTF-8 is a problem (it is never converted lossily: it may be a secret).
pub fn process_env() -> Result<Vec<(String, String)>, Vec<Problem>> {
    collect(std::env::vars_os())
}

fn collect(vars: impl Iterator<Item = (OsString, OsString)>) -> Result<Vec<(String, String)>, Vec<Problem>> {
    let mut env = Vec::new();
    let mut problems = Vec::new();
    for (name, value) in vars {
        let Ok(name) = name.into_string() else { continue };
        if !name.starts_with(PREFIX) {
            continue;
        }
        match value.into_string() {
            Ok(value) => env.push((name, value)),
            Err(_) => problems.push(Problem::new(name, "the value is not valid UTF-8")),
        }
    }
    if problems.is_empty() { Ok(env) } else { Err(problems) }
}

/// Writes every `GATEHOUSE_*` override onto `tree`. Returns which key path each variable set (for naming the
/// variable in later problems) and the overrides that could not be applied.
pub fn overlay(tree: &mut toml::Table, env: &[(String, String)]) -> (BTreeMap<String, String>, Vec<Problem>) {
    let mut origins = BTreeMap::new();
    let mut problems = Vec::new();
    let mut overrides: Vec<(Vec<Segment>, &str, &str)> = Vec::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        if RESERVED.contains(&name.as_str()) {
            continue;
        }
        let segments: Vec<Segment> = rest.split("__").map(Segment::parse).collect();
        if rest.is_empty() || segments.iter().any(|s| matches!(s, Segment::Key(k) if k.is_empty())) {
            problems.push(
                Problem::new(name.clone(), "not a configuration key: empty key segment")
                    .with_hint("write the key path with `__` between levels, e.g. GATEHOUSE_IDP__LISTEN"),
            );
            continue;
        }
        overrides.push((segments, name, value));
    }
    // Index order, so `…__CLIENTS__0__…` is applied before `…__CLIENTS__1__…` (and `__10__` after `__2__`).
    overrides.sort();
    for (segments, name, value) in overrides {
        let key = key_path(&segments);
        match set(tree, &segments, parse_value(value)) {
            Ok(()) => {
                origins.insert(key, name.to_owned());
            }
            Err(why) => problems.push(
                Problem::new(key, why)
                    .set_by(name)
                    .with_hint("list items are set by index, next free index at most; see config/gatehouse.toml"),
            ),
        }
    }
    (origins, problems)
}

/// One level of an override's key path: a lower-cased key or a list index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Segment {
    Index(usize),
    Key(String),
}

impl Segment {
    fn parse(text: &str) -> Self {
        match text.parse::<usize>() {
            Ok(index) if text.chars().all(|c| c.is_ascii_digit()) => Self::Index(index),
            _ => Self::Key(text.to_ascii_lowercase()),
        }
    }
}

/// `[Key(idp), Key(clients), Index(0), Key(secret)]` → `idp.clients[0].secret`.
fn key_path(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Index(index) => out.push_str(&format!("[{index}]")),
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
        }
    }
    out
}

/// An override's value: TOML when it reads as a bool, number, array or quoted string, else the text itself.
fn parse_value(text: &str) -> toml::Value {
    let trimmed = text.trim();
    // TOML reads these as floats; no key wants one, and a password might be one.
    if ["inf", "+inf", "-inf", "nan", "+nan", "-nan"].contains(&trimmed) {
        return toml::Value::String(text.to_owned());
    }
    match trimmed.parse::<toml::Value>() {
        Ok(value @ (toml::Value::Boolean(_) | toml::Value::Integer(_) | toml::Value::Float(_))) => value,
        Ok(value @ toml::Value::Array(_)) => value,
        Ok(value @ toml::Value::String(_)) if trimmed.starts_with(['"', '\'']) => value,
        _ => toml::Value::String(text.to_owned()),
    }
}

/// Sets `path` in `table`, creating tables and lists on the way; a list grows by at most one item.
fn set(table: &mut toml::Table, path: &[Segment], value: toml::Value) -> Result<(), String> {
    let mut root = toml::Value::Table(std::mem::take(table));
    let result = set_in(&mut root, path, value, &mut String::new());
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    result
}

fn set_in(node: &mut toml::Value, path: &[Segment], value: toml::Value, at: &mut String) -> Result<(), String> {
    let Some((head, rest)) = path.split_first() else {
        *node = value;
        return Ok(());
    };
    let empty_child = || match rest.first() {
        Some(Segment::Index(_)) => toml::Value::Array(Vec::new()),
        _ => toml::Value::Table(toml::Table::new()),
    };
    let here = if at.is_empty() { "the top level".to_owned() } else { at.clone() };
    let child = match (head, node) {
        (Segment::Key(key), toml::Value::Table(table)) => table.entry(key.clone()).or_insert_with(empty_child),
        (Segment::Index(index), toml::Value::Array(items)) => {
            if *index > items.len() {
                return Err(format!("index {index} skips items: {here} has {} item(s)", items.len()));
            }
            if *index == items.len() {
                items.push(empty_child());
            }
            &mut items[*index]
        }
        (Segment::Index(index), _) => return Err(format!("{here} is not a list, so it has no item {index}")),
        (Segment::Key(key), _) => return Err(format!("{here} is not a table, so it has no key {key:?}")),
    };
    match head {
        Segment::Index(index) => at.push_str(&format!("[{index}]")),
        Segment::Key(key) => {
            if !at.is_empty() {
                at.push('.');
            }
            at.push_str(key);
        }
    }
    set_in(child, rest, value, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_toml_when_they_read_as_scalars_arrays_or_quoted_strings() {
        let cases = [
            ("60", toml::Value::Integer(60)),
            ("true", toml::Value::Boolean(true)),
            ("1.5", toml::Value::Float(1.5)),
            ("[\"a\", \"b\"]", toml::Value::Array(vec!["a".into(), "b".into()])),
            ("\"0123\"", toml::Value::String("0123".into())),
            ("127.0.0.1:9000", toml::Value::String("127.0.0.1:9000".into())),
            ("nan", toml::Value::String("nan".into())),
            ("http://localhost:9000", toml::Value::String("http://localhost:9000".into())),
            ("1979-05-27", toml::Value::String("1979-05-27".into())),
            ("{ a = 1 }", toml::Value::String("{ a = 1 }".into())),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_value(text), expected, "{text}");
        }
    }

    #[test]
    fn list_indexes_apply_in_numeric_order_and_may_not_skip() {
        let env: Vec<(String, String)> =
            (0..12).rev().map(|i| (format!("GATEHOUSE_IDP__USERS__{i}__USERNAME"), format!("user{i}"))).collect();
        let mut tree = toml::Table::new();
        let (origins, problems) = overlay(&mut tree, &env);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            origins.get("idp.users[10].username").map(String::as_str),
            Some("GATEHOUSE_IDP__USERS__10__USERNAME")
        );
        let mut tree = toml::Table::new();
        let (_, problems) = overlay(&mut tree, &[("GATEHOUSE_IDP__USERS__1__USERNAME".into(), "x".into())]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].env.as_deref(), Some("GATEHOUSE_IDP__USERS__1__USERNAME"));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_values_are_problems_not_lossy_strings() {
        use std::os::unix::ffi::OsStringExt;
        let vars = vec![
            (OsString::from("GATEHOUSE_IDP__MASTER_KEY"), OsString::from_vec(vec![0xff, 0xfe])),
            (OsString::from("HOME"), OsString::from_vec(vec![0xff])),
        ];
        let problems = collect(vars.into_iter()).unwrap_err();
        assert_eq!(problems[0].key, "GATEHOUSE_IDP__MASTER_KEY");
    }
}

//! System tests of the `gatehouse` binary: the real executable, each test with its own configuration file and
//! data directory in a temporary directory, free ports only, no shared state (any order, in parallel).
//!
//!   cargo test -p gatehouse --test cli

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A valid configuration with one API, one user and one client (plus whatever the test appends).
const BASE_CONFIG: &str = r#"
[log]
level = "info"

[idp]
issuer = "http://127.0.0.1:9000"
listen = "127.0.0.1:9000"
data_dir = "data"

[[idp.apis]]
audience = "https://api.example.com"
scopes = ["api"]

[[idp.clients]]
client_id = "web"
secret = "web-secret-0123456789abcdefghijklmnopqrstuv"
redirect_uris = ["http://localhost:8080/callback"]
scopes = ["openid", "profile", "api"]

[[idp.users]]
username = "alice"
password = "alice-password"
name = "Alice Liddell"
"#;

#[test]
fn config_check_lists_every_problem_with_its_key_and_fails() {
    let fixture = Fixture::with_config(
        r#"
[log]
format = "xml"
[idp]
issuer = "http://id.example.com"
lisen = "127.0.0.1:9000"
[idp.tokens]
code_ttl_seconds = 600
access_token_ttl_seconds = "soon"
[[idp.clients]]
client_id = "a"
secret = "too-short"
redirect_uris = ["https://ok.example/cb", "https://bad.example/cb#fragment"]
[[idp.clients]]
client_id = "a"
auth_method = "none"
redirect_uris = ["https://a.example/cb"]
"#,
    );
    let output = fixture.gatehouse(&["config", "check"]).env("GATEHOUSE_IDP__NOPE", "1").output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for expected in [
        "log.format",
        "idp.issuer: plain http is allowed only for a loopback issuer",
        "idp.lisen: unknown key",
        "did you mean `listen`?",
        "idp.nope (set by GATEHOUSE_IDP__NOPE)",
        "idp.tokens.code_ttl_seconds",
        "idp.tokens.access_token_ttl_seconds",
        "idp.clients[0].secret",
        "idp.clients[0].redirect_uris[1]",
        "idp.clients[1].client_id: \"a\" is declared twice",
        "hint: ",
    ] {
        assert!(stderr.contains(expected), "{expected:?} missing from:\n{stderr}");
    }
    assert!(stderr.contains("9 configuration problems"), "{stderr}");
    assert!(!stderr.contains("too-short"), "a secret was echoed:\n{stderr}");
}

#[test]
fn config_check_summarises_a_valid_configuration() {
    let fixture = Fixture::with_config(BASE_CONFIG);
    let output = fixture.gatehouse(&["config", "check"]).output().unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.starts_with("config OK: "), "{stdout}");
    assert!(stdout.contains("1 API(s), 1 client(s), 1 user(s)"), "{stdout}");
    assert!(stdout.contains(&fixture.dir.path().join("data").display().to_string()), "{stdout}");
    assert!(!stdout.contains("web-secret") && !stdout.contains("alice-password"), "a secret was printed:\n{stdout}");
}

#[test]
fn the_demo_configuration_checks_out() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gatehouse.toml");
    let fixture = Fixture::with_config(&std::fs::read_to_string(demo).unwrap());
    // Copied away from the repository: point the SPA directory back at it.
    let spa = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/spa");
    let output = fixture.gatehouse(&["config", "check"]).env("GATEHOUSE_BFF__FRONTEND_DIR", &spa).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("issuer http://localhost:9000, token service on 127.0.0.1:9000"));
}

#[test]
fn an_invalid_configuration_stops_every_other_command_with_exit_2() {
    let fixture = Fixture::with_config("[idp]\nissuer = \"ftp://x\"\n");
    for args in [&["serve"][..], &["users", "list"], &["clients", "list"], &["keys", "list"]] {
        let output = fixture.gatehouse(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output.stderr));
        assert!(text(&output.stderr).contains("idp.issuer"), "{args:?}");
    }
    let missing = fixture.dir.path().join("missing.toml");
    let output = gatehouse_command().arg("--config").arg(&missing).args(["users", "list"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("cannot read the configuration file"));
}

#[test]
fn users_add_reads_the_password_from_stdin_then_list_and_remove() {
    let fixture = Fixture::with_config(BASE_CONFIG);
    let output = fixture.run_with_stdin(
        &["users", "add", "carol", "--name", "Carol Danvers", "--email", "carol@example.com", "--email-verified"],
        "carol-password-1\n",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("saved user carol"));

    let output = fixture.gatehouse(&["users", "list"]).output().unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.starts_with("USERNAME"), "{stdout}");
    let row = stdout.lines().find(|l| l.starts_with("carol ")).unwrap_or_else(|| panic!("no carol in:\n{stdout}"));
    assert!(row.contains("Carol Danvers") && row.contains("carol@example.com"), "{row}");
    assert!(!stdout.contains("carol-password-1") && !stdout.contains("$argon2"), "{stdout}");

    let output = fixture.gatehouse(&["users", "remove", "carol"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = fixture.gatehouse(&["users", "list"]).output().unwrap();
    assert!(!text(&output.stdout).contains("carol"));
    let output = fixture.gatehouse(&["users", "remove", "carol"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("there is no user \"carol\""));
}

#[test]
fn users_add_refuses_short_passwords_and_config_declared_users() {
    let fixture = Fixture::with_config(BASE_CONFIG);
    let output = fixture.run_with_stdin(&["users", "add", "dave"], "short\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("too short"));
    let output = fixture.run_with_stdin(&["users", "add", "alice"], "another-password\n");
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("declared in the configuration file"));
    // The password is never an argument.
    let output = fixture.gatehouse(&["users", "add", "dave", "--password", "x"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn clients_add_prints_a_generated_secret_once_and_list_shows_the_client() {
    let fixture = Fixture::with_config(BASE_CONFIG);
    let output = fixture
        .gatehouse(&[
            "clients",
            "add",
            "reports",
            "--name",
            "Reports job",
            "--grant-type",
            "client_credentials",
            "--scope",
            "api",
            "--redirect-uri",
            "https://reports.example.com/cb",
        ])
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let secret = stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap_or_else(|| panic!("no secret in:\n{stdout}"));
    assert!(secret.len() >= 43, "{secret}");
    assert!(stdout.contains("not stored"), "{stdout}");

    let output = fixture.gatehouse(&["clients", "list"]).output().unwrap();
    let stdout = text(&output.stdout);
    let row = stdout.lines().find(|l| l.starts_with("reports ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(row.contains("Reports job") && row.contains("client_credentials") && row.contains("cli"), "{row}");
    assert!(!stdout.contains(secret), "the secret was shown again:\n{stdout}");

    // Scopes must exist in the configuration; bad URIs and vocabularies are usage errors.
    for args in [
        &["clients", "add", "x", "--redirect-uri", "https://x.example/cb", "--scope", "unknown"][..],
        &["clients", "add", "x", "--redirect-uri", "http://x.example/cb"],
        &["clients", "add", "x", "--redirect-uri", "https://x.example/cb", "--auth-method", "magic"],
    ] {
        let output = fixture.gatehouse(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output.stderr));
    }
    let output = fixture.gatehouse(&["clients", "remove", "reports"]).output().unwrap();
    assert!(output.status.success());
    let output = fixture.gatehouse(&["clients", "remove", "reports"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn keys_rotate_creates_the_master_key_and_keys_list_shows_the_keys() {
    let fixture = Fixture::with_config(BASE_CONFIG);
    let output = fixture.gatehouse(&["keys", "rotate"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).matches("new active key").count(), 2, "{}", text(&output.stdout));
    let master_key = fixture.dir.path().join("data/master.key");
    assert!(master_key.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&master_key).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let output = fixture.gatehouse(&["keys", "rotate"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = fixture.gatehouse(&["keys", "list"]).output().unwrap();
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with("KID"), "{stdout}");
    let states: Vec<&str> = stdout.lines().skip(1).filter_map(|l| l.split_whitespace().nth(2)).collect();
    assert_eq!(states.iter().filter(|s| **s == "active").count(), 2, "{stdout}");
    assert_eq!(states.iter().filter(|s| **s == "retired").count(), 2, "{stdout}");
    assert!(stdout.contains("ES256") && stdout.contains("RS256"), "{stdout}");
}

#[test]
fn sessions_list_and_revoke_act_on_the_store() {
    let fixture = Fixture::with_config(BASE_CONFIG);
    let output = fixture.gatehouse(&["sessions", "list"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("SID"), "{}", text(&output.stdout));
    // A sid that does not exist: nothing ended, still a success.
    let output = fixture.gatehouse(&["sessions", "revoke", "--sid", "no-such-session"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("ended 0 session(s)"), "{}", text(&output.stdout));
    // An unknown user is an error; naming neither --user nor --sid is a usage error.
    let output = fixture.gatehouse(&["sessions", "revoke", "--user", "nobody"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let output = fixture.gatehouse(&["sessions", "revoke"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn serve_on_a_port_in_use_fails_naming_the_address_and_the_key() {
    let fixture = Fixture::with_config(BASE_CONFIG);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = fixture.gatehouse(&["serve"]).env("GATEHOUSE_IDP__LISTEN", &address).output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains(&address) && line.contains("idp.listen"), "{line}");
}

#[test]
fn serve_answers_discovery_shows_demo_logins_on_loopback_and_stops_on_sigterm() {
    let fixture = Fixture::with_config(BASE_CONFIG);
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let mut child = fixture
        .gatehouse(&["serve"])
        .env("GATEHOUSE_IDP__LISTEN", format!("127.0.0.1:{port}"))
        .env("GATEHOUSE_IDP__ISSUER", &issuer)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let discovery = wait_for_discovery(&mut child, port);
    assert!(discovery.contains(&format!("\"issuer\":\"{issuer}\"")), "{discovery}");
    let (status, stdout, stderr) = terminate(child);
    assert!(status.success(), "{status:?}\n{stdout}\n{stderr}");
    for expected in [
        format!("listening on 127.0.0.1:{port}"),
        format!("issuer:    {issuer}"),
        format!("discovery: {issuer}/.well-known/openid-configuration"),
        "log in as alice / alice-password".to_owned(),
    ] {
        assert!(stdout.contains(&expected), "{expected:?} missing from:\n{stdout}");
    }
    let everything = format!("{stdout}{stderr}");
    assert!(!everything.contains("web-secret"), "a client secret was printed:\n{everything}");
    assert!(everything.contains("generated a new master key"), "{stderr}");
}

#[test]
fn serve_shows_no_passwords_when_not_a_loopback_demo() {
    let fixture = Fixture::with_config(BASE_CONFIG);
    let port = free_port();
    let mut child = fixture
        .gatehouse(&["serve"])
        .env("GATEHOUSE_IDP__LISTEN", format!("0.0.0.0:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_discovery(&mut child, port);
    let (status, stdout, stderr) = terminate(child);
    assert!(status.success(), "{status:?}\n{stdout}\n{stderr}");
    assert!(stdout.contains("listening on 0.0.0.0"), "{stdout}");
    assert!(!format!("{stdout}{stderr}").contains("alice-password"), "{stdout}\n{stderr}");
}

#[test]
fn every_command_documents_an_example_and_the_exit_codes() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["config", "check", "--help"],
        &["users", "add", "--help"],
        &["users", "list", "--help"],
        &["users", "remove", "--help"],
        &["clients", "add", "--help"],
        &["clients", "list", "--help"],
        &["clients", "remove", "--help"],
        &["keys", "list", "--help"],
        &["keys", "rotate", "--help"],
    ] {
        let output = gatehouse_command().args(args).output().unwrap();
        let stdout = text(&output.stdout);
        assert!(output.status.success(), "{args:?}");
        assert!(stdout.contains("Example"), "{args:?} has no example:\n{stdout}");
        assert!(stdout.contains("Exit codes: 0"), "{args:?} has no exit codes:\n{stdout}");
    }
}

// ------------------------------------------------------------------------------------------------------------
// Helpers

/// A temporary directory holding `gatehouse.toml`; its `data` directory is created by the binary.
struct Fixture {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Fixture {
    fn with_config(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gatehouse.toml");
        std::fs::write(&config, text).unwrap();
        Self { dir, config }
    }

    /// `gatehouse --config <this fixture's file> ARGS…`, run in the fixture's directory.
    fn gatehouse(&self, args: &[&str]) -> Command {
        let mut command = gatehouse_command();
        command.current_dir(self.dir.path()).arg("--config").arg(&self.config).args(args);
        command
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child =
            self.gatehouse(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }
}

/// The binary with none of this process's `GATEHOUSE_*` variables (so only the test's overrides apply).
fn gatehouse_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GATEHOUSE_") {
            command.env_remove(name);
        }
    }
    command.env_remove("RUST_LOG").env("NO_COLOR", "1").stdin(Stdio::null());
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[path = "support/ports.rs"]
mod ports;
use ports::free_port;

/// Polls the discovery document until it answers 200; fails if the server exits first or takes over 60 s.
fn wait_for_discovery(child: &mut Child, port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            panic!("gatehouse exited early ({status:?}):\n{stderr}");
        }
        if let Some(body) = http_get(port, "/.well-known/openid-configuration") {
            return body;
        }
        assert!(Instant::now() < deadline, "no discovery document on port {port} after 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal HTTP/1.1 GET on 127.0.0.1; the body when the status is 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// Sends SIGTERM and waits (at most 20 s) for the exit; returns the status and the output.
fn terminate(mut child: Child) -> (std::process::ExitStatus, String, String) {
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gatehouse did not stop within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    (output.status, text(&output.stdout), text(&output.stderr))
}

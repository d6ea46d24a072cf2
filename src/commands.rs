//! Carrying out a parsed command line: load the configuration, then `serve` (in `serve.rs`) or one of the
//! administration commands (`config check`, `users`, `clients`, `keys`), which act on the store the configured
//! server uses (SQLite in WAL mode with a busy timeout: safe while it runs).
//!
//! Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or usage — except `config check`, whose
//! job is finding problems: 1 when it found some.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use gatehouse_idp::clock::{Clock, SystemClock};
use gatehouse_idp::settings::MasterKey;
use gatehouse_idp::store::{ClientRecord, Epoch};
use gatehouse_idp::{Store, admin};
use gatehouse_proto::claims::StandardClaims;
use gatehouse_proto::vocab::{ClientAuthMethod, GrantType};
use gatehouse_proto::{JwkSet, Secret, b64};

use crate::cli::{
    Cli, ClientAdd, ClientsCommand, Command, ConfigCommand, KeysCommand, SessionsCommand, UserAdd, UsersCommand,
};
use crate::config::{self, Config, IdpConfig, MasterKeySource, Problem};

const INVALID: u8 = 2;

pub async fn run(cli: Cli) -> ExitCode {
    let path = cli.global.config;
    let loaded = config::process_env().and_then(|env| config::load(&path, &env));
    if let Command::Config(ConfigCommand::Check) = cli.command {
        return check(&path, loaded);
    }
    let config = match loaded {
        Ok(config) => config,
        Err(problems) => {
            print_problems(&path, &problems);
            return ExitCode::from(INVALID);
        }
    };
    crate::telemetry::init(&config.log);
    match cli.command {
        Command::Serve => crate::serve::serve(config, &path).await,
        Command::Config(ConfigCommand::Check) => ExitCode::SUCCESS,
        Command::Users(command) => users(&config, command).await,
        Command::Clients(command) => clients(&config, command).await,
        Command::Keys(command) => keys(&config, command).await,
        Command::Sessions(command) => sessions(&config, command).await,
    }
}

/// `gatehouse config check`: every problem, or a summary.
fn check(path: &Path, loaded: Result<Config, Vec<Problem>>) -> ExitCode {
    let config = match loaded {
        Ok(config) => config,
        Err(problems) => {
            print_problems(path, &problems);
            return ExitCode::from(1);
        }
    };
    let idp = &config.idp;
    println!(
        "config OK: {} — issuer {}, token service on {}, {} API(s), {} client(s), {} user(s)",
        path.display(),
        idp.issuer_text(),
        idp.listen,
        idp.apis.len(),
        idp.clients.len(),
        idp.users.len()
    );
    println!("  data dir:   {}", idp.data_dir.display());
    println!("  store:      {}", idp.store_url);
    let master_key = match &idp.master_key {
        MasterKeySource::Inline(_) => "idp.master_key (inline)".to_owned(),
        MasterKeySource::File { path, .. } => path.display().to_string(),
        MasterKeySource::Default { path, key: Some(_) } => format!("{} (default location)", path.display()),
        MasterKeySource::Default { path, key: None } => {
            format!("{} (default location; created by the first `gatehouse serve`)", path.display())
        }
    };
    println!("  master key: {master_key}");
    for api in &idp.apis {
        println!("  API:        {} (scopes: {})", api.audience, api.scopes.join(" "));
    }
    let client_ids: Vec<&str> = idp.clients.iter().map(|c| c.record.client_id.as_str()).collect();
    println!("  clients:    {}", client_ids.join(", "));
    let usernames: Vec<&str> = idp.users.iter().map(|u| u.seed.username.as_str()).collect();
    println!("  users:      {}", usernames.join(", "));
    for note in &config.notes {
        println!("note: {note}");
    }
    ExitCode::SUCCESS
}

/// Every problem on standard error, each with its key and hint.
pub fn print_problems(path: &Path, problems: &[Problem]) {
    let mut err = std::io::stderr().lock();
    let count = problems.len();
    let _ = writeln!(err, "{}: {count} configuration problem{}:", path.display(), if count == 1 { "" } else { "s" });
    for problem in problems {
        let _ = writeln!(err, "  - {problem}");
        if let Some(hint) = &problem.hint {
            let _ = writeln!(err, "      hint: {hint}");
        }
    }
}

/// Reports a runtime failure on standard error; exit 1.
pub fn runtime_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(1)
}

/// Opens the store the configured server uses.
pub async fn open_store(idp: &IdpConfig) -> Result<Store, ExitCode> {
    Store::open(&idp.store_url)
        .await
        .map_err(|e| runtime_error(format!("cannot open the store {} (idp.store_url): {e}", idp.store_url)))
}

/// The master key; when none is configured and the default file does not exist yet, it is created (32 random
/// bytes, base64url, mode 0600) with a warning.
pub fn master_key(idp: &IdpConfig) -> Result<MasterKey, ExitCode> {
    match &idp.master_key {
        MasterKeySource::Inline(key) | MasterKeySource::File { key, .. } => Ok(key.clone()),
        MasterKeySource::Default { key: Some(key), .. } => Ok(key.clone()),
        MasterKeySource::Default { path, key: None } => match create_master_key(path) {
            Ok(key) => {
                tracing::warn!(
                    path = %path.display(),
                    "generated a new master key (mode 0600); production deployments should set \
                     idp.master_key_file (or GATEHOUSE_IDP__MASTER_KEY) explicitly and back it up"
                );
                Ok(key)
            }
            Err(e) => Err(runtime_error(format!("cannot create the master key file {}: {e}", path.display()))),
        },
    }
}

fn create_master_key(path: &Path) -> std::io::Result<MasterKey> {
    if let Some(parent) = path.parent() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(parent)?;
    }
    let key = gatehouse_idp::random::bytes::<32>();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            writeln!(file, "{}", b64::encode(key))?;
            file.sync_all()?;
            Ok(MasterKey(key))
        }
        // Another process (a second command started at the same moment) created it first: use that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read(path)?;
            config::decode_master_key(&text)
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not a 32-byte base64url key"))
        }
        Err(e) => Err(e),
    }
}

pub fn now() -> Epoch {
    SystemClock.now()
}

// ------------------------------------------------------------------------------------------------------------
// users

async fn users(config: &Config, command: UsersCommand) -> ExitCode {
    let store = match open_store(&config.idp).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    match command {
        UsersCommand::Add(add) => add_user(config, &store, add).await,
        UsersCommand::List => match admin::list_users(&store).await {
            Ok(users) => {
                let rows = users.into_iter().map(|u| {
                    [u.username, u.sub, u.claims.name.unwrap_or_default(), u.claims.email.unwrap_or_default()]
                });
                print_table(["USERNAME", "SUB", "NAME", "EMAIL"], rows);
                ExitCode::SUCCESS
            }
            Err(e) => runtime_error(e),
        },
        UsersCommand::Remove { username } => match admin::remove_user(&store, &username).await {
            Ok(true) => {
                println!("removed user {username}");
                if config.idp.users.iter().any(|u| u.seed.username == username) {
                    println!("note: {username} is declared in the configuration file: the next start re-creates it");
                }
                ExitCode::SUCCESS
            }
            Ok(false) => runtime_error(format!("there is no user {username:?}")),
            Err(e) => runtime_error(e),
        },
    }
}

async fn add_user(config: &Config, store: &Store, add: UserAdd) -> ExitCode {
    if config.idp.users.iter().any(|u| u.seed.username == add.username) {
        eprintln!(
            "error: {} is declared in the configuration file ([[idp.users]]), which the next start re-applies; \
             change it there",
            add.username
        );
        return ExitCode::from(INVALID);
    }
    let password = match read_password() {
        Ok(password) => password,
        Err(message) => return runtime_error(message),
    };
    let claims = StandardClaims {
        name: add.name,
        given_name: add.given_name,
        family_name: add.family_name,
        preferred_username: add.preferred_username,
        email: add.email,
        email_verified: add.email_verified.then_some(true),
    };
    match admin::add_user(store, &add.username, &password, claims, now()).await {
        Ok(user) => {
            println!("saved user {} (sub {})", user.username, user.sub);
            ExitCode::SUCCESS
        }
        Err(admin::AdminError::Invalid(why)) => {
            eprintln!("error: {why}");
            ExitCode::from(INVALID)
        }
        Err(e) => runtime_error(e),
    }
}

/// The password: the first line of standard input when it is not a terminal, otherwise prompted for twice
/// without echo. Never from the command line.
fn read_password() -> Result<Secret, String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(|e| format!("cannot read the password: {e}"))?;
        let again = rpassword::prompt_password("Repeat it: ").map_err(|e| format!("cannot read the password: {e}"))?;
        if first != again {
            return Err("the two passwords differ".to_owned());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
        line.strip_suffix('\n').map_or(line.as_str(), |l| l.strip_suffix('\r').unwrap_or(l)).to_owned()
    };
    if password.chars().count() < config::MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password is too short: at least {} characters (read from {})",
            config::MIN_PASSWORD_CHARS,
            if std::io::stdin().is_terminal() { "the prompt" } else { "the first line of standard input" }
        ));
    }
    Ok(Secret::new(password))
}

// ------------------------------------------------------------------------------------------------------------
// clients

async fn clients(config: &Config, command: ClientsCommand) -> ExitCode {
    let store = match open_store(&config.idp).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    match command {
        ClientsCommand::Add(add) => add_client(config, &store, add).await,
        ClientsCommand::List => match admin::list_clients(&store).await {
            Ok(clients) => {
                let rows = clients.into_iter().map(|c| {
                    let grants: Vec<&str> = c.grant_types.iter().map(|g| g.as_str()).collect();
                    [
                        c.client_id,
                        c.name.unwrap_or_default(),
                        c.auth_method.as_str().to_owned(),
                        c.source,
                        grants.join(","),
                        c.scopes.join(" "),
                        c.redirect_uris.join(" "),
                    ]
                });
                print_table(["CLIENT_ID", "NAME", "AUTH", "SOURCE", "GRANTS", "SCOPES", "REDIRECT_URIS"], rows);
                ExitCode::SUCCESS
            }
            Err(e) => runtime_error(e),
        },
        ClientsCommand::Remove { client_id } => match admin::remove_client(&store, &client_id).await {
            Ok(true) => {
                println!("removed client {client_id}");
                if config.idp.clients.iter().any(|c| c.record.client_id == client_id) {
                    println!("note: {client_id} is declared in the configuration file: the next start re-creates it");
                }
                ExitCode::SUCCESS
            }
            Ok(false) => runtime_error(format!("there is no client {client_id:?}")),
            Err(e) => runtime_error(e),
        },
    }
}

async fn add_client(config: &Config, store: &Store, add: ClientAdd) -> ExitCode {
    let invalid = |message: String| {
        eprintln!("error: {message}");
        ExitCode::from(INVALID)
    };
    if config.idp.clients.iter().any(|c| c.record.client_id == add.client_id) {
        return invalid(format!(
            "{} is declared in the configuration file ([[idp.clients]]), which the next start re-applies; \
             change it there",
            add.client_id
        ));
    }
    let scopes = if add.scopes.is_empty() { vec!["openid".to_owned()] } else { add.scopes };
    let unknown: Vec<&str> = scopes.iter().map(String::as_str).filter(|s| !config.idp.is_known_scope(s)).collect();
    if !unknown.is_empty() {
        return invalid(format!(
            "--scope {}: neither an OpenID Connect scope (openid, profile, email, offline_access) nor a scope of \
             an API in the configuration ([[idp.apis]])",
            unknown.join(", ")
        ));
    }
    let jwks = match &add.jwks_file {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => match serde_json::from_str::<JwkSet>(&text) {
                Ok(set) => Some(set),
                Err(e) => {
                    return invalid(format!(
                        "--jwks-file {}: not a JWK Set (line {}, column {})",
                        path.display(),
                        e.line(),
                        e.column()
                    ));
                }
            },
            Err(e) => return runtime_error(format!("--jwks-file {}: {e}", path.display())),
        },
    };
    let grant_types = if add.grant_types.is_empty() {
        vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
    } else {
        add.grant_types
    };
    let record = ClientRecord {
        client_id: add.client_id.clone(),
        name: add.name,
        auth_method: add.auth_method,
        secret_sha256: None,
        jwks,
        redirect_uris: add.redirect_uris,
        post_logout_redirect_uris: add.post_logout_redirect_uris,
        grant_types,
        scopes,
        id_token_signed_response_alg: add.id_token_alg.unwrap_or(config.idp.signing.id_token_alg),
        backchannel_logout_uri: add.backchannel_logout_uri,
        source: "cli".to_owned(),
        require_dpop: add.require_dpop,
        require_dpop_nonce: add.require_dpop_nonce,
        require_pushed_authorization_requests: add.require_pushed_authorization_requests,
    };
    let problems = admin::check_client(&record);
    if !problems.is_empty() {
        return invalid(format!("client {}: {}", record.client_id, problems.join("; ")));
    }
    match admin::add_client(store, record).await {
        Ok(secret) => {
            println!("registered client {} ({})", add.client_id, add.auth_method.as_str());
            if let Some(secret) = secret {
                println!("client_secret: {}", secret.expose());
                println!(
                    "warning: this secret is shown only now; it is not stored (only its SHA-256 digest is), \
                     so keep it somewhere safe"
                );
            } else if add.auth_method == ClientAuthMethod::None {
                println!("(a public client: no secret; it must use PKCE)");
            }
            ExitCode::SUCCESS
        }
        Err(admin::AdminError::Invalid(why)) => invalid(why),
        Err(e) => runtime_error(e),
    }
}

// ------------------------------------------------------------------------------------------------------------
// keys

async fn keys(config: &Config, command: KeysCommand) -> ExitCode {
    let store = match open_store(&config.idp).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    match command {
        KeysCommand::List => match admin::list_keys(&store).await {
            Ok(keys) => {
                let time = |t: Option<Epoch>| t.map_or_else(|| "-".to_owned(), utc);
                let rows = keys.into_iter().map(|k| {
                    [
                        k.kid,
                        k.alg.as_str().to_owned(),
                        k.state.as_str().to_owned(),
                        utc(k.created_at),
                        time(k.activated_at),
                        time(k.retired_at),
                    ]
                });
                print_table(["KID", "ALG", "STATE", "CREATED", "ACTIVATED", "RETIRED"], rows);
                ExitCode::SUCCESS
            }
            Err(e) => runtime_error(e),
        },
        KeysCommand::Rotate => {
            let master_key = match master_key(&config.idp) {
                Ok(key) => key,
                Err(code) => return code,
            };
            match admin::rotate_keys(&store, &master_key, now()).await {
                Ok(kids) => {
                    for kid in kids {
                        println!("new active key {kid}");
                    }
                    println!(
                        "running servers switch to the new keys within idp.signing.key_reload_interval_seconds ({} s)",
                        config.idp.signing.key_reload_interval
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => runtime_error(e),
            }
        }
    }
}

async fn sessions(config: &Config, command: SessionsCommand) -> ExitCode {
    let store = match open_store(&config.idp).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    match command {
        SessionsCommand::List { user } => match admin::list_sessions(&store, user.as_deref(), now()).await {
            Ok(listings) => {
                let rows = listings.into_iter().map(|l| {
                    [
                        l.session.sid,
                        l.username.unwrap_or_else(|| format!("({})", l.session.sub)),
                        utc(l.session.auth_time),
                        utc(l.session.last_seen),
                        utc(l.session.expires_at),
                        l.clients.join(","),
                    ]
                });
                print_table(["SID", "USER", "LOGIN", "LAST SEEN", "EXPIRES", "CLIENTS"], rows);
                ExitCode::SUCCESS
            }
            Err(e) => runtime_error(e),
        },
        SessionsCommand::Revoke { user, sid } => {
            let master_key = match master_key(&config.idp) {
                Ok(key) => key,
                Err(code) => return code,
            };
            let issuer = config.idp.issuer_text();
            let reload = config.idp.signing.key_reload_interval;
            let backchannel = match admin::backchannel(&store, &issuer, &master_key, now(), reload).await {
                Ok(backchannel) => backchannel,
                Err(e) => return runtime_error(e),
            };
            let by = match (user, sid) {
                (Some(user), _) => admin::SessionSelector::User(user),
                (None, Some(sid)) => admin::SessionSelector::Sid(sid),
                (None, None) => return runtime_error("name --user or --sid"),
            };
            match admin::revoke_sessions(&store, &backchannel, by, now()).await {
                Ok(done) => {
                    println!("ended {} session(s), revoked {} grant(s)", done.sessions, done.grants_revoked);
                    for report in done.notifications {
                        println!("  back-channel logout to {}: {:?}", report.client_id, report.outcome);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => runtime_error(e),
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------------------
// Output helpers

/// Prints rows under a header, columns padded to their widest cell.
fn print_table<const N: usize>(header: [&str; N], rows: impl Iterator<Item = [String; N]>) {
    let rows: Vec<[String; N]> = rows.collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line(header));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row.each_ref().map(String::as_str)));
    }
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
fn utc(epoch: Epoch) -> String {
    let days = epoch.div_euclid(86_400);
    let seconds = epoch.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", seconds / 3600, seconds % 3600 / 60, seconds % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_seconds_render_as_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59Z");
    }
}

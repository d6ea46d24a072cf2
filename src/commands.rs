//! Dispatch of the CLI commands, and the administration commands (`config`, `users`, `clients`, `keys`), which
//! act on the same store the configured server uses.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use gatehouse_idp::settings::MasterKey;
use gatehouse_idp::{Store, admin};
use gatehouse_proto::claims::StandardClaims;
use gatehouse_proto::vocab::{ClientAuthMethod, GrantType, SigningAlg};
use gatehouse_proto::{JwkSet, Secret, b64};

use crate::cli::{Cli, ClientAdd, ClientsCommand, Command, ConfigCommand, KeysCommand, UserAdd, UsersCommand};
use crate::config::{self, Config, IdpConfig, MasterKeySource};
use crate::serve::{self, now};

pub async fn run(cli: Cli) -> ExitCode {
    let config = match config::load(&cli.global.config, &config::process_env()) {
        Ok(config) => config,
        Err(problems) => {
            eprintln!("{}: {} problem(s):", cli.global.config.display(), problems.len());
            for problem in &problems {
                eprintln!("  - {problem}");
            }
            return ExitCode::from(2);
        }
    };
    if let Command::Config(ConfigCommand::Check) = cli.command {
        let idp = &config.idp;
        println!(
            "config OK: {} (issuer {}, listen {}, {} client(s), {} user(s), {} API(s))",
            cli.global.config.display(),
            idp.settings.issuer.as_str().trim_end_matches('/'),
            idp.settings.listen,
            idp.clients.len(),
            idp.users.len(),
            idp.settings.apis.len()
        );
        return ExitCode::SUCCESS;
    }
    crate::telemetry::init(config.log_format, &config.log_level);
    match cli.command {
        Command::Serve => serve::serve(config).await,
        Command::Config(_) => ExitCode::SUCCESS,
        Command::Users(command) => users(config, command).await,
        Command::Clients(command) => clients(config, command).await,
        Command::Keys(command) => keys(config, command).await,
    }
}

pub fn runtime_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(1)
}

/// Opens the configured store and reads the master key. `create_key`: generate the default key file when
/// missing (only `serve` and `keys rotate` do; other commands need no key).
pub async fn open_store(idp: &IdpConfig, create_key: bool) -> Result<(Store, MasterKey), ExitCode> {
    let master_key = match &idp.master_key_source {
        MasterKeySource::Inline => idp.settings.master_key.clone(),
        MasterKeySource::File { path, default_path } => match std::fs::read_to_string(path) {
            Ok(text) => match config::parse_master_key(&text) {
                Some(key) => key,
                None => return Err(runtime_error(format!("{} does not hold a base64url 32-byte key", path.display()))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && *default_path && create_key => {
                match create_master_key(path) {
                    Ok(key) => {
                        eprintln!("generated a new master key at {} (mode 0600)", path.display());
                        key
                    }
                    Err(e) => return Err(runtime_error(format!("cannot create {}: {e}", path.display()))),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && *default_path => MasterKey([0; 32]),
            Err(e) => return Err(runtime_error(format!("cannot read the master key {}: {e}", path.display()))),
        },
    };
    if let Err(e) = std::fs::create_dir_all(&idp.data_dir) {
        return Err(runtime_error(format!("cannot create the data directory {}: {e}", idp.data_dir.display())));
    }
    match Store::open(&idp.settings.store_url).await {
        Ok(store) => Ok((store, master_key)),
        Err(e) => Err(runtime_error(format!("cannot open the store {}: {e}", idp.settings.store_url))),
    }
}

fn create_master_key(path: &std::path::Path) -> std::io::Result<MasterKey> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut bytes = [0u8; 32];
    let random = gatehouse_idp::random::bytes::<32>();
    bytes.copy_from_slice(&random);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    writeln!(file, "{}", b64::encode(bytes))?;
    Ok(MasterKey(bytes))
}

async fn users(config: Config, command: UsersCommand) -> ExitCode {
    let (store, _) = match open_store(&config.idp, false).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    match command {
        UsersCommand::Add(add) => add_user(&store, add).await,
        UsersCommand::List => match admin::list_users(&store).await {
            Ok(users) => {
                println!("{:<24} {:<24} {:<24} EMAIL", "USERNAME", "SUB", "NAME");
                for u in users {
                    let name = u.claims.name.unwrap_or_default();
                    println!("{:<24} {:<24} {:<24} {}", u.username, u.sub, name, u.claims.email.unwrap_or_default());
                }
                ExitCode::SUCCESS
            }
            Err(e) => runtime_error(e),
        },
        UsersCommand::Remove { username } => match admin::remove_user(&store, &username).await {
            Ok(true) => {
                println!("removed user {username}");
                ExitCode::SUCCESS
            }
            Ok(false) => runtime_error(format!("no user {username:?}")),
            Err(e) => runtime_error(e),
        },
    }
}

async fn add_user(store: &Store, add: UserAdd) -> ExitCode {
    let password = match read_password() {
        Ok(p) => p,
        Err(message) => return runtime_error(message),
    };
    let claims = StandardClaims {
        name: add.name,
        given_name: add.given_name,
        family_name: add.family_name,
        preferred_username: None,
        email: add.email,
        email_verified: add.email_verified.then_some(true),
    };
    match admin::add_user(store, &add.username, &password, claims, now()).await {
        Ok(user) => {
            println!("user {} saved (sub {})", user.username, user.sub);
            ExitCode::SUCCESS
        }
        Err(e) => runtime_error(e),
    }
}

/// The password from stdin (first line) when it is not a terminal, otherwise prompted twice without echo.
fn read_password() -> Result<Secret, String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
        let second = rpassword::prompt_password("Repeat password: ").map_err(|e| e.to_string())?;
        if first != second {
            return Err("the passwords do not match".into());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string())?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if password.chars().count() < 8 {
        return Err("the password must have at least 8 characters".into());
    }
    Ok(Secret::new(password))
}

async fn clients(config: Config, command: ClientsCommand) -> ExitCode {
    let (store, _) = match open_store(&config.idp, false).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    match command {
        ClientsCommand::Add(add) => add_client(&store, add).await,
        ClientsCommand::List => match admin::list_clients(&store).await {
            Ok(clients) => {
                println!("{:<24} {:<20} {:<8} {:<40} REDIRECT URIS", "CLIENT_ID", "AUTH", "SOURCE", "GRANTS");
                for c in clients {
                    let grants: Vec<&str> = c.grant_types.iter().map(|g| g.as_str()).collect();
                    println!(
                        "{:<24} {:<20} {:<8} {:<40} {}",
                        c.client_id,
                        c.auth_method.as_str(),
                        c.source,
                        grants.join(","),
                        c.redirect_uris.join(" ")
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => runtime_error(e),
        },
        ClientsCommand::Remove { client_id } => match admin::remove_client(&store, &client_id).await {
            Ok(true) => {
                println!("removed client {client_id}");
                ExitCode::SUCCESS
            }
            Ok(false) => runtime_error(format!("no client {client_id:?}")),
            Err(e) => runtime_error(e),
        },
    }
}

async fn add_client(store: &Store, add: ClientAdd) -> ExitCode {
    let Some(auth_method) = ClientAuthMethod::parse(&add.auth_method) else {
        eprintln!("error: --auth-method must be client_secret_basic, client_secret_post, private_key_jwt or none");
        return ExitCode::from(2);
    };
    let Some(alg) = SigningAlg::parse(&add.id_token_alg) else {
        eprintln!("error: --id-token-alg must be RS256 or ES256");
        return ExitCode::from(2);
    };
    let mut grant_types = Vec::new();
    for g in if add.grant_types.is_empty() {
        vec!["authorization_code".into(), "refresh_token".into()]
    } else {
        add.grant_types
    } {
        match GrantType::parse(&g) {
            Some(g) => grant_types.push(g),
            None => {
                eprintln!("error: unknown grant type {g:?}");
                return ExitCode::from(2);
            }
        }
    }
    let jwks = match add.jwks_file {
        None => None,
        Some(path) => match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<JwkSet>(&t).map_err(|e| e.to_string()))
        {
            Ok(set) => Some(set),
            Err(e) => return runtime_error(format!("--jwks-file {}: {e}", path.display())),
        },
    };
    let record = gatehouse_idp::store::ClientRecord {
        client_id: add.client_id.clone(),
        name: add.name,
        auth_method,
        secret_sha256: None,
        jwks,
        redirect_uris: add.redirect_uris,
        post_logout_redirect_uris: add.post_logout_redirect_uris,
        grant_types,
        scopes: if add.scopes.is_empty() { vec!["openid".into()] } else { add.scopes },
        id_token_signed_response_alg: alg,
        backchannel_logout_uri: add.backchannel_logout_uri,
        source: "cli".into(),
    };
    match admin::add_client(store, record).await {
        Ok(Some(secret)) => {
            println!("client {} registered", add.client_id);
            println!("client_secret: {}", secret.expose());
            eprintln!("store this secret now: only its digest is kept, it cannot be shown again");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!("client {} registered", add.client_id);
            ExitCode::SUCCESS
        }
        Err(admin::AdminError::Invalid(why)) => {
            eprintln!("error: {why}");
            ExitCode::from(2)
        }
        Err(e) => runtime_error(e),
    }
}

async fn keys(config: Config, command: KeysCommand) -> ExitCode {
    let create = matches!(command, KeysCommand::Rotate);
    let (store, master_key) = match open_store(&config.idp, create).await {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    match command {
        KeysCommand::List => match admin::list_keys(&store).await {
            Ok(keys) => {
                println!("{:<45} {:<6} {:<8} {:<11} {:<11} RETIRED", "KID", "ALG", "STATE", "CREATED", "ACTIVATED");
                let opt = |t: Option<i64>| t.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
                for k in keys {
                    println!(
                        "{:<45} {:<6} {:<8} {:<11} {:<11} {}",
                        k.kid,
                        k.alg.as_str(),
                        k.state.as_str(),
                        k.created_at,
                        opt(k.activated_at),
                        opt(k.retired_at)
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => runtime_error(e),
        },
        KeysCommand::Rotate => match admin::rotate_keys(&store, &master_key, now()).await {
            Ok(kids) => {
                for kid in kids {
                    println!("new active key {kid}");
                }
                println!("running servers pick the new keys up within idp.signing.key_reload_interval_seconds");
                ExitCode::SUCCESS
            }
            Err(e) => runtime_error(e),
        },
    }
}

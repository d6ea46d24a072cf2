//! The command line (clap derive): what each command does, its arguments, an example and its exit codes.
//! Parsing only; `commands` carries them out.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use gatehouse_proto::vocab::{ClientAuthMethod, GrantType, SigningAlg};

/// The exit codes, shown in every command's help.
macro_rules! exit_codes {
    () => {
        "Exit codes: 0 success; 1 runtime failure (store, files, port in use, record not found); \
         2 invalid configuration or usage."
    };
}

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Backend-for-frontend security gateway with a co-located OpenID Provider (token service)",
    long_about = "Backend-for-frontend security gateway with a co-located OpenID Provider (token service).\n\n\
Every command reads the same configuration file (--config, default config/gatehouse.toml, or $GATEHOUSE_CONFIG); \
every key in it can be overridden by an environment variable: GATEHOUSE_ + the key path in upper case with `__` \
between levels, list items by index (GATEHOUSE_IDP__LISTEN, GATEHOUSE_IDP__CLIENTS__0__SECRET). The admin \
commands act on the store the configured server uses and are safe while it runs.",
    after_help = concat!(
        "Examples:\n",
        "  gatehouse serve\n",
        "  gatehouse config check --config /etc/gatehouse/gatehouse.toml\n",
        "  printf '%s\\n' \"$PASSWORD\" | gatehouse users add carol --name 'Carol' --email carol@example.com\n",
        "  gatehouse keys rotate\n\n",
        exit_codes!()
    )
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The configuration file. Relative paths inside it are relative to its directory.
    #[arg(long, short, global = true, env = "GATEHOUSE_CONFIG", default_value = "config/gatehouse.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the token service, the gateway and the demo API (as configured) until SIGINT or SIGTERM.
    #[command(
        long_about = "Run the token service, the gateway ([bff]) and the demo API ([demo_api]), as configured, until \
SIGINT or SIGTERM.\n\n\
Loads and validates the configuration (every problem is listed; exit 2), binds idp.listen (a port in use is exit 1), \
opens the store, creates the master key file when none is configured and it does not exist yet, seeds the users \
and clients the file declares, then serves. It prints where it listens, the issuer and the discovery URL. \
With idp.enabled = false the token service is left to another process. SIGHUP re-reads the gateway's cookie keys \
(bff.cookie.keys, keys_file) and switches to them without a restart.",
        after_help = concat!(
            "Examples:\n",
            "  gatehouse serve\n",
            "  GATEHOUSE_IDP__LISTEN=127.0.0.1:9100 gatehouse serve --config config/gatehouse.toml\n\n",
            exit_codes!()
        )
    )]
    Serve,
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage user accounts in the store the server uses.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage registered clients in the store the server uses.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// List and rotate token signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// List and revoke users' single sign-on sessions at the token service.
    #[command(subcommand)]
    Sessions(SessionsCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the file together with the environment overrides; list every problem with its key and a hint.
    #[command(after_help = "Examples:\n  \
gatehouse config check\n  \
GATEHOUSE_IDP__ISSUER=https://id.example.com gatehouse config check --config deploy/gatehouse.toml\n\n\
Exit codes: 0 the configuration is valid (a summary is printed); 1 it has problems (all are listed); 2 usage error.")]
    Check,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user, or replace an existing user's password and claims.
    #[command(
        long_about = "Add a user, or replace an existing user's password and claims (its `sub` stays).\n\n\
The password is read from standard input when that is not a terminal (its first line), otherwise prompted for twice \
without echo; never from the command line. At least 8 characters. Stored as an argon2id hash.",
        after_help = concat!(
            "Examples:\n",
            "  gatehouse users add carol --name 'Carol Danvers' --email carol@example.com --email-verified\n",
            "  printf '%s\\n' \"$PASSWORD\" | gatehouse users add carol\n\n",
            exit_codes!()
        )
    )]
    Add(UserAdd),
    /// List users: username, sub, name, email.
    #[command(after_help = concat!("Example:\n  gatehouse users list\n\n", exit_codes!()))]
    List,
    /// Remove a user (exit 1 when there is none with that username).
    #[command(after_help = concat!("Example:\n  gatehouse users remove carol\n\n", exit_codes!()))]
    Remove {
        /// The username.
        username: String,
    },
}

#[derive(Debug, Args)]
pub struct UserAdd {
    /// The login name: 1-128 letters, digits and . _ - @ +
    pub username: String,
    /// Full name (`name` claim).
    #[arg(long)]
    pub name: Option<String>,
    /// `given_name` claim.
    #[arg(long)]
    pub given_name: Option<String>,
    /// `family_name` claim.
    #[arg(long)]
    pub family_name: Option<String>,
    /// `preferred_username` claim.
    #[arg(long)]
    pub preferred_username: Option<String>,
    /// `email` claim.
    #[arg(long)]
    pub email: Option<String>,
    /// Mark the email address as verified (`email_verified` claim).
    #[arg(long)]
    pub email_verified: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client (or replace one registered with this command).
    #[command(
        long_about = "Register a client, or replace one registered earlier with this command.\n\n\
For client_secret_basic and client_secret_post a secret with 256 bits of entropy is generated and printed once: \
only its SHA-256 digest is stored, so it cannot be shown again. Scopes must be OpenID Connect scopes or scopes of \
an API in the configuration. Clients declared in the configuration file are managed there, not here.",
        after_help = concat!(
            "Examples:\n",
            "  gatehouse clients add my-bff --name 'My app' --redirect-uri https://app.example.com/bff/callback \\\n",
            "    --scope openid --scope profile --scope offline_access\n",
            "  gatehouse clients add reports-job --grant-type client_credentials --scope api\n",
            "  gatehouse clients add cli-tool --auth-method private_key_jwt --jwks-file cli-tool.jwks.json \\\n",
            "    --redirect-uri http://127.0.0.1:8765/callback\n\n",
            exit_codes!()
        )
    )]
    Add(ClientAdd),
    /// List clients.
    #[command(after_help = concat!("Example:\n  gatehouse clients list\n\n", exit_codes!()))]
    List,
    /// Remove a client (exit 1 when there is none with that client_id).
    #[command(after_help = concat!("Example:\n  gatehouse clients remove my-bff\n\n", exit_codes!()))]
    Remove {
        /// The client_id.
        client_id: String,
    },
}

#[derive(Debug, Args)]
pub struct ClientAdd {
    /// The client_id: 1-128 printable ASCII characters without ':'.
    pub client_id: String,
    /// A display name.
    #[arg(long)]
    pub name: Option<String>,
    /// A redirect URI, matched exactly (repeat for several). Required for authorization_code.
    #[arg(long = "redirect-uri", value_name = "URI")]
    pub redirect_uris: Vec<String>,
    /// Where the client may be sent after logout (repeat for several).
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    pub post_logout_redirect_uris: Vec<String>,
    /// authorization_code, refresh_token or client_credentials (repeat). Default: authorization_code and
    /// refresh_token.
    #[arg(long = "grant-type", value_name = "GRANT", value_parser = grant_type)]
    pub grant_types: Vec<GrantType>,
    /// A scope the client may request (repeat). Default: openid.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// client_secret_basic, client_secret_post, private_key_jwt or none (a public client).
    #[arg(long, value_name = "METHOD", default_value = "client_secret_basic", value_parser = auth_method)]
    pub auth_method: ClientAuthMethod,
    /// A JWK Set (JSON) with the client's public keys, for private_key_jwt.
    #[arg(long, value_name = "PATH")]
    pub jwks_file: Option<PathBuf>,
    /// The ID token signing algorithm: RS256 or ES256. Default: idp.signing.id_token_alg.
    #[arg(long, value_name = "ALG", value_parser = signing_alg)]
    pub id_token_alg: Option<SigningAlg>,
    /// OpenID Connect back-channel logout URI.
    #[arg(long, value_name = "URI")]
    pub backchannel_logout_uri: Option<String>,
    /// Every token request must carry a DPoP proof (RFC 9449).
    #[arg(long)]
    pub require_dpop: bool,
    /// DPoP proofs of this client must carry a server nonce (RFC 9449 §8).
    #[arg(long)]
    pub require_dpop_nonce: bool,
    /// Authorization requests must be pushed first (PAR, RFC 9126).
    #[arg(long)]
    pub require_pushed_authorization_requests: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys: kid, algorithm, state and when each was created, activated and retired (UTC).
    #[command(after_help = concat!("Example:\n  gatehouse keys list\n\n", exit_codes!()))]
    List,
    /// Rotate now: new keys become active; the previous ones stay published so issued tokens keep verifying.
    #[command(
        long_about = "Rotate now: for every algorithm a new key becomes active and the previous one is retired \
(still published in the JWKS, so tokens it signed keep verifying). Running servers pick the new keys up within \
idp.signing.key_reload_interval_seconds.",
        after_help = concat!("Example:\n  gatehouse keys rotate\n\n", exit_codes!())
    )]
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List live IdP sessions (all, or one user's): sid, user, login time, last activity, expiry, clients.
    #[command(after_help = concat!("Example:\n  gatehouse sessions list --user alice\n\n", exit_codes!()))]
    List {
        /// Only this user's sessions.
        #[arg(long)]
        user: Option<String>,
    },
    /// End sessions: their grants (refresh and access tokens) are revoked and every client with a
    /// back-channel logout URI is notified.
    #[command(after_help = concat!("Examples:\n  gatehouse sessions revoke --user alice\n  gatehouse sessions revoke --sid 3q2-7wEAAA\n\n", exit_codes!()))]
    Revoke {
        /// Every live session of this user.
        #[arg(long, conflicts_with = "sid", required_unless_present = "sid")]
        user: Option<String>,
        /// One session.
        #[arg(long)]
        sid: Option<String>,
    },
}

fn grant_type(value: &str) -> Result<GrantType, String> {
    GrantType::parse(value).ok_or_else(|| "use authorization_code, refresh_token or client_credentials".to_owned())
}

fn auth_method(value: &str) -> Result<ClientAuthMethod, String> {
    ClientAuthMethod::parse(value)
        .ok_or_else(|| "use client_secret_basic, client_secret_post, private_key_jwt or none".to_owned())
}

fn signing_alg(value: &str) -> Result<SigningAlg, String> {
    SigningAlg::parse(value).ok_or_else(|| "use RS256 or ES256".to_owned())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_is_accepted_before_or_after_the_subcommand() {
        let before = Cli::try_parse_from(["gatehouse", "--config", "a.toml", "keys", "list"]).unwrap();
        let after = Cli::try_parse_from(["gatehouse", "users", "list", "--config", "b.toml"]).unwrap();
        assert_eq!(before.global.config, PathBuf::from("a.toml"));
        assert_eq!(after.global.config, PathBuf::from("b.toml"));
    }

    #[test]
    fn vocabulary_arguments_are_parsed_into_types() {
        let cli = Cli::try_parse_from([
            "gatehouse",
            "clients",
            "add",
            "m2m",
            "--grant-type",
            "client_credentials",
            "--auth-method",
            "client_secret_post",
            "--id-token-alg",
            "ES256",
        ])
        .unwrap();
        let Command::Clients(ClientsCommand::Add(add)) = cli.command else { panic!("clients add expected") };
        assert_eq!(add.grant_types, [GrantType::ClientCredentials]);
        assert_eq!(add.auth_method, ClientAuthMethod::ClientSecretPost);
        assert_eq!(add.id_token_alg, Some(SigningAlg::ES256));
        let bad = Cli::try_parse_from(["gatehouse", "clients", "add", "x", "--grant-type", "password"]).unwrap_err();
        assert_eq!(bad.exit_code(), 2);
    }
}

//! Command-line interface (clap). Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or usage.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Backend-for-frontend security gateway with a co-located OpenID Provider",
    after_help = "Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or usage.\n\n\
Examples:\n  gatehouse serve\n  gatehouse config check --config /etc/gatehouse.toml\n  \
echo 's3cret-pass' | gatehouse users add carol --name 'Carol' --email carol@example.com"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file.
    #[arg(long, short, global = true, env = "GATEHOUSE_CONFIG", default_value = "config/gatehouse.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the token service (and, when configured, the gateway).
    #[command(after_help = "Example:\n  gatehouse serve --config config/gatehouse.toml")]
    Serve,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage local user accounts in the store the server uses.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage registered clients in the store the server uses.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Inspect and rotate token signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the file and the environment overrides; list every problem with its key.
    #[command(after_help = "Example:\n  GATEHOUSE_IDP__LISTEN=0.0.0.0:9000 gatehouse config check")]
    Check,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user (or reset an existing user's password and claims). The password is read from standard input
    /// when it is not a terminal, otherwise prompted for twice; never from the command line.
    #[command(
        after_help = "Example:\n  printf '%s\\n' 'correct horse battery' | gatehouse users add carol --email carol@example.com"
    )]
    Add(UserAdd),
    /// List users.
    List,
    /// Remove a user.
    #[command(after_help = "Example:\n  gatehouse users remove carol")]
    Remove { username: String },
}

#[derive(Debug, Args)]
pub struct UserAdd {
    pub username: String,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub given_name: Option<String>,
    #[arg(long)]
    pub family_name: Option<String>,
    #[arg(long)]
    pub email: Option<String>,
    #[arg(long)]
    pub email_verified: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client; for client_secret_* a 256-bit secret is generated and printed once.
    #[command(
        after_help = "Example:\n  gatehouse clients add my-bff --redirect-uri https://app.example.com/bff/callback \\\n    --scope openid --scope profile --scope offline_access --grant-type authorization_code --grant-type refresh_token"
    )]
    Add(ClientAdd),
    /// List clients.
    List,
    /// Remove a client.
    Remove { client_id: String },
}

#[derive(Debug, Args)]
pub struct ClientAdd {
    pub client_id: String,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    #[arg(long = "post-logout-redirect-uri")]
    pub post_logout_redirect_uris: Vec<String>,
    /// authorization_code, refresh_token, client_credentials (repeat). Default: authorization_code + refresh_token.
    #[arg(long = "grant-type")]
    pub grant_types: Vec<String>,
    /// Repeat for each scope. Default: openid.
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// client_secret_basic (default), client_secret_post, private_key_jwt, none.
    #[arg(long, default_value = "client_secret_basic")]
    pub auth_method: String,
    /// JWK Set file with the client's public keys (private_key_jwt).
    #[arg(long)]
    pub jwks_file: Option<PathBuf>,
    /// RS256 (default) or ES256.
    #[arg(long, default_value = "RS256")]
    pub id_token_alg: String,
    #[arg(long)]
    pub backchannel_logout_uri: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys and their states.
    List,
    /// Rotate now: new active keys; the previous ones stay published so issued tokens keep verifying.
    Rotate,
}

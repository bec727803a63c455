//! `esim-keys`: API keys from the command line, straight against the gateway's database
//! (`GATEWAY_DATABASE_URL`, migrated first like the gateway does). The way to the first key on
//! a new installation, and to a way back in when every admin key is lost:
//!
//! ```sh
//! kubectl exec deploy/gateway -- esim-keys create --name "web shop" --scope read --scope order
//! esim-keys list [--revoked]
//! esim-keys revoke apiKeys/0198c0de...
//! ```
//!
//! `create` prints the key alone on stdout (so `KEY=$(esim-keys create ...)` works) and what
//! it created on stderr. Running gateways pick changes up within `GATEWAY_KEY_REFRESH_SECS`.

use std::io::Write;

use clap::{Parser, Subcommand};
use esim_proto::gateway::v1 as pb;
use esim_runtime::BoxError;
use sea_orm::DatabaseConnection;

use crate::error::GatewayError;
use crate::scopes::Scope;
use crate::store::{self, KeySpec};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "esim-keys",
    about = "Creates, lists and revokes the gateway's API keys in its database (GATEWAY_DATABASE_URL)."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Creates a key and prints it, once, on stdout.
    Create {
        /// Human-readable name, e.g. "web shop production" (1-100 characters).
        #[arg(long)]
        name: String,
        /// A granted scope: read, order or admin (repeat for several).
        #[arg(long = "scope", value_name = "SCOPE", required = true, value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// Own rate limit: sustained requests per second (default: the per-scope settings).
        #[arg(long, requires = "burst")]
        rps: Option<i32>,
        /// Own rate limit: burst, at least --rps.
        #[arg(long, requires = "rps")]
        burst: Option<i32>,
    },
    /// Lists keys, newest first (active ones unless --revoked).
    List {
        /// Also list revoked keys.
        #[arg(long)]
        revoked: bool,
    },
    /// Revokes a key for good.
    Revoke {
        /// The key: apiKeys/ID (or just ID).
        name: String,
    },
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    Scope::parse(text).ok_or_else(|| format!("{text:?} is not a scope: read, order or admin"))
}

/// Runs `cli` against the database the gateway's settings name.
pub async fn run(cli: Cli) -> Result<(), BoxError> {
    let db = crate::SERVICE.database::<crate::migration::Migrator>().await?;
    let result = execute(
        cli,
        &db,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
    .await;
    db.close().await?;
    result
}

/// Runs `cli` against `db`, writing results to `out` and notes to `notes`.
pub async fn execute(
    cli: Cli,
    db: &DatabaseConnection,
    out: &mut impl Write,
    notes: &mut impl Write,
) -> Result<(), BoxError> {
    match cli.command {
        Command::Create {
            name,
            scopes,
            rps,
            burst,
        } => {
            let spec = KeySpec::from_proto(
                &pb::ApiKey {
                    display_name: name,
                    scopes: scopes.iter().map(|s| s.to_proto() as i32).collect(),
                    rate_limit: rps.zip(burst).map(|(requests_per_second, burst)| pb::RateLimit {
                        requests_per_second,
                        burst,
                    }),
                    ..Default::default()
                },
                "api_key",
            )
            .map_err(cli_error)?;
            let created = store::create(db, &spec, None).await?;
            writeln!(out, "{}", created.key)?;
            writeln!(
                notes,
                "created {} {:?} ({}), scopes {}; the key above is shown only once: store it now",
                created.api_key.name, spec.display_name, created.api_key.key_prefix, spec.scopes
            )?;
        }
        Command::List { revoked } => {
            writeln!(
                out,
                "NAME\tPREFIX\tSTATE\tSCOPES\tRATE_LIMIT\tCREATED\tDISPLAY_NAME"
            )?;
            let mut after: Option<String> = None;
            loop {
                let page = store::list(db, revoked, after.as_deref(), 500).await?;
                for row in &page {
                    let limit =
                        store::stored_limit(row).map_or_else(|| "default".to_owned(), |l| l.to_string());
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        store::resource_name(&row.id),
                        row.key_prefix,
                        row.state,
                        row.scopes,
                        limit,
                        row.create_time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        row.display_name
                    )?;
                }
                match page.last() {
                    Some(last) if page.len() == 500 => after = Some(last.id.clone()),
                    _ => break,
                }
            }
        }
        Command::Revoke { name } => {
            let id = name.strip_prefix("apiKeys/").unwrap_or(&name);
            if !store::is_key_id(id) {
                return Err(
                    format!("{name:?} is not a key name (apiKeys/ID, as `esim-keys list` shows)").into(),
                );
            }
            let revoked = store::revoke(db, id, None).await?;
            writeln!(out, "{}\tREVOKED", revoked.name)?;
        }
    }
    Ok(())
}

/// A validation error in the command's terms rather than the API's.
fn cli_error(err: GatewayError) -> BoxError {
    match err {
        GatewayError::InvalidArgument { field, message } => {
            let option = match field.as_str() {
                "api_key.display_name" => "--name".to_owned(),
                "api_key.rate_limit.requests_per_second" => "--rps".to_owned(),
                "api_key.rate_limit.burst" => "--burst".to_owned(),
                other if other.starts_with("api_key.scopes") => "--scope".to_owned(),
                other => other.to_owned(),
            };
            format!("{option}: {message}").into()
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_parses() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "esim-keys",
            "create",
            "--name",
            "web shop",
            "--scope",
            "read",
            "--scope",
            "ORDER",
            "--rps",
            "5",
            "--burst",
            "10",
        ])
        .unwrap();
        match cli.command {
            Command::Create {
                name,
                scopes,
                rps,
                burst,
            } => {
                assert_eq!(name, "web shop");
                assert_eq!(scopes, vec![Scope::Read, Scope::Order]);
                assert_eq!((rps, burst), (Some(5), Some(10)));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Cli::try_parse_from(["esim-keys", "create", "--name", "x"]).is_err(),
            "no scope"
        );
        assert!(Cli::try_parse_from(["esim-keys", "create", "--name", "x", "--scope", "root"]).is_err());
        assert!(
            Cli::try_parse_from([
                "esim-keys",
                "create",
                "--name",
                "x",
                "--scope",
                "read",
                "--rps",
                "5"
            ])
            .is_err(),
            "--rps without --burst"
        );
        assert!(matches!(
            Cli::try_parse_from(["esim-keys", "list", "--revoked"])
                .unwrap()
                .command,
            Command::List { revoked: true }
        ));
    }
}

//! `esim-sims`: the SFT SIMs provisioning had to quarantine, from the command line, straight
//! against its database (`PROVISIONING_DATABASE_URL`, migrated first like the service does).
//!
//! A SIM is quarantined when its activation timed out or its add-on subscription failed and
//! SFT's state of it cannot be trusted: it is never claimed again by itself, so no traveller
//! gets a SIM that is half active or someone else's. An operator looks it up at SFT and, once
//! it is `Inactive` with no add-on, releases it for the next order:
//!
//! ```sh
//! kubectl exec deploy/provisioning -- esim-sims list
//! kubectl exec deploy/provisioning -- esim-sims release EP000123
//! ```
//!
//! `list --all` shows every claim (claimed: a provision in flight; assigned: the eSIM's for
//! good). Only a quarantined claim can be released; running services see it at their next
//! claim.

use std::io::Write;

use clap::{Parser, Subcommand};
use esim_runtime::BoxError;
use sea_orm::DatabaseConnection;

use crate::store;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "esim-sims",
    about = "Lists the SFT SIMs provisioning quarantined and releases them once checked at SFT \
             (PROVISIONING_DATABASE_URL)."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Lists quarantined SIMs, most recent first (every claimed SIM with --all).
    List {
        /// Every claim, whatever its status.
        #[arg(long)]
        all: bool,
    },
    /// Releases a quarantined SIM so it can be claimed again. Check first at SFT that the
    /// endpoint is Inactive and has no add-on.
    Release {
        /// The SFT endpoint id of the SIM, as `list` shows it.
        endpoint: String,
    },
}

/// Runs `cli` against the database the provisioning service's settings name.
pub async fn run(cli: Cli) -> Result<(), BoxError> {
    let db = crate::SERVICE.database::<crate::migration::Migrator>().await?;
    let result = execute(cli, &db, &mut std::io::stdout().lock()).await;
    db.close().await?;
    result
}

/// Runs `cli` against `db`, writing results to `out`.
pub async fn execute(cli: Cli, db: &DatabaseConnection, out: &mut impl Write) -> Result<(), BoxError> {
    match cli.command {
        Command::List { all } => {
            writeln!(out, "ENDPOINT\tICCID\tESIM\tSTATUS\tSINCE\tREASON")?;
            let status = (!all).then_some("quarantined");
            for claim in store::claims(db, status).await? {
                writeln!(
                    out,
                    "{}\t{}\tesims/{}\t{}\t{}\t{}",
                    claim.sft_endpoint_id,
                    claim.iccid,
                    claim.esim_id,
                    claim.status,
                    claim
                        .update_time
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    claim.reason
                )?;
            }
        }
        Command::Release { endpoint } => match store::release_quarantined(db, &endpoint).await? {
            Some(claim) => writeln!(
                out,
                "{}\t{}\tRELEASED (was quarantined for esims/{})",
                claim.sft_endpoint_id, claim.iccid, claim.esim_id
            )?,
            None => {
                let current = store::claims(db, None)
                    .await?
                    .into_iter()
                    .find(|claim| claim.sft_endpoint_id == endpoint);
                return Err(match current {
                    Some(claim) => format!(
                        "{endpoint} is {}, not quarantined: only a quarantined SIM is released",
                        claim.status
                    ),
                    None => {
                        format!("no claimed SIM has the endpoint {endpoint:?} (see `esim-sims list --all`)")
                    }
                }
                .into());
            }
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_parses() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["esim-sims", "release", "EP1"]).unwrap();
        assert!(matches!(cli.command, Command::Release { endpoint } if endpoint == "EP1"));
        assert!(Cli::try_parse_from(["esim-sims", "release"]).is_err());
    }
}

//! `esim-sims`: quarantined SFT SIMs from the command line (see `esim_provisioning::cli`).

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match esim_provisioning::cli::run(esim_provisioning::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("esim-sims: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

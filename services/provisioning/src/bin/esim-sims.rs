//! `esim-sims`: quarantined SFT SIMs from the command line (see `esim_provisioning::cli`).

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    esim_runtime::service::tool_main(
        "esim-sims",
        esim_provisioning::cli::run(esim_provisioning::cli::Cli::parse()),
    )
    .await
}

//! `esim-keys`: the gateway's API keys from the command line (see `esim_gateway::cli`).

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    esim_runtime::service::tool_main(
        "esim-keys",
        esim_gateway::cli::run(esim_gateway::cli::Cli::parse()),
    )
    .await
}

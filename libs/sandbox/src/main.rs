//! The `esim-sandbox` binary: serves the MP, FMS and SFT simulator on `SANDBOX_LISTEN_ADDR`
//! (default `127.0.0.1:8080`) until Ctrl-C or SIGTERM. Other settings: see
//! [`esim_sandbox::SandboxConfig::from_env`].

use std::net::SocketAddr;

use esim_runtime::{Env, server::shutdown_signal, telemetry};
use esim_sandbox::{Sandbox, SandboxConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    telemetry::init();
    let env = Env::new("SANDBOX");
    let addr: SocketAddr = env.parse_or("LISTEN_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?;
    let config = SandboxConfig::from_env(&env)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "esim-sandbox listening");
    Sandbox::new(config).serve(listener, shutdown_signal()).await?;
    Ok(())
}

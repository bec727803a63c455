#[tokio::main]
async fn main() -> std::process::ExitCode {
    esim_runtime::service::main(esim_gateway::SERVICE, esim_gateway::run).await
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    esim_runtime::service::main(esim_provisioning::SERVICE, esim_provisioning::run).await
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    esim_runtime::service::main(esim_catalog::SERVICE, esim_catalog::run).await
}

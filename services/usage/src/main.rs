#[tokio::main]
async fn main() -> std::process::ExitCode {
    esim_runtime::service::main(esim_usage::SERVICE, esim_usage::run).await
}

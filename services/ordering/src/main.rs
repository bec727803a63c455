#[tokio::main]
async fn main() -> std::process::ExitCode {
    esim_runtime::service::main(esim_ordering::SERVICE, esim_ordering::run).await
}

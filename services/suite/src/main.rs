//! `cargo run` at the repository root: the whole suite in one process, SQLite files under
//! `./data`, stopped cleanly by Ctrl-C.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    esim_suite::main().await
}

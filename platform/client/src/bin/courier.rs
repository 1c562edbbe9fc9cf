//! The `courier` command-line client.

use clap::Parser;
use courier_client::cli::{Args, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("courier: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

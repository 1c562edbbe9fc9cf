//! The `courier-load` binary; everything it does is in `courier_load::cli`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = courier_load::cli::Args::parse();
    match courier_load::cli::run(args).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("courier-load: a threshold failed");
            std::process::ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("courier-load: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

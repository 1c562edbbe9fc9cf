//! What the `courier-server` binary does, as a library function (so that test harnesses can
//! build the very same program): parse flags, set up logging, start, wait for SIGTERM or
//! Ctrl-C, drain.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::{Config, Extensions};

/// Courier messaging server (HTTP API, WebSocket gateway and metrics on one port).
#[derive(Parser)]
#[command(name = "courier-server", version, about)]
struct Args {
    /// A TOML configuration file; `COURIER_<SECTION>__<KEY>` environment variables override it.
    #[arg(long, env = "COURIER_CONFIG")]
    config: Option<PathBuf>,
}

/// Runs the server binary until a termination signal, then drains.
pub async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = Config::load(args.config.as_deref())?;
    init_logging(&config.log.format, &config.log.filter)?;
    let server = crate::start(config, Extensions::default()).await?;
    wait_for_signal().await?;
    tracing::info!("signal received: draining");
    server.shutdown().await;
    Ok(())
}

fn init_logging(format: &str, filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .context("log.filter")?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => anyhow::bail!("log.format must be \"text\" or \"json\", not {other:?}"),
    }
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        _ = terminate.recv() => {}
        result = tokio::signal::ctrl_c() => result.context("cannot listen for Ctrl-C")?,
    }
    Ok(())
}

//! The `courier-business` binary; everything it does is in `courier_business::cli`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    courier_business::cli::main().await
}

//! The server binary; everything it does is in `courier_server::main_entry`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    courier_server::main_entry::main().await
}

//! The server binary, built inside this package so that tests can run it as a child process
//! (and kill it with SIGKILL). It is the same program as `courier-server`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    courier_server::main_entry::main().await
}

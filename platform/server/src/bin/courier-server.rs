//! The server binary; everything it does is in `courier_server::main_entry`.

/// mimalloc instead of the C library's allocator: see docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    courier_server::main_entry::main().await
}

//! The machine's raw ceiling, measured in the same conditions as a run: a minimal TCP echo
//! server and clients on loopback doing round trips of small messages, no WebSocket, no
//! protocol, no storage. Figures of a run read as a fraction of this.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Round trips per second over `connections` loopback connections for `duration`.
pub async fn measure(connections: usize, bytes: usize, duration: Duration) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 4096];
                loop {
                    let n = match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if socket.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let deadline = Instant::now() + duration;
    let mut clients = Vec::new();
    for _ in 0..connections.max(1) {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        clients.push(tokio::spawn(async move {
            let message = vec![7u8; bytes.max(1)];
            let mut reply = vec![0u8; bytes.max(1)];
            let mut trips = 0u64;
            while Instant::now() < deadline {
                if stream.write_all(&message).await.is_err()
                    || stream.read_exact(&mut reply).await.is_err()
                {
                    break;
                }
                trips += 1;
            }
            trips
        }));
    }
    let started = Instant::now();
    let mut total = 0u64;
    for client in clients {
        total += client.await.unwrap_or(0);
    }
    server.abort();
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

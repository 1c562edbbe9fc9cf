//! A raw gateway connection: authenticated WebSocket, binary protobuf frames.
//!
//! [`crate::Messenger`] builds on it; tests and the load harness use it directly to send
//! exactly the bytes they want. Plain `ws://` only: put a TLS-terminating proxy in front of the
//! server in production (see the README).

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use courier_protocol::v1::{ClientFrame, ServerFrame, Welcome, server_frame};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::api::Credentials;
use crate::error::{ClientError, ClientResult};

/// How to open a connection.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// Local address to connect from (load agents spread connections over 127.0.0.x).
    pub bind: Option<IpAddr>,
    /// Another entry point of the same deployment to connect to (an `http(s)://` base URL, such
    /// as another node of a cluster) instead of the server the device registered with.
    pub server: Option<String>,
}

/// What a read returns.
// One value per read, moved straight out: boxing the frame would buy nothing and would change
// the type every caller (tests, load harness) matches on.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Incoming {
    Frame(ServerFrame),
    /// The server closed the connection (with its close code, 1006 if none).
    Closed {
        code: u16,
        reason: String,
    },
}

/// An open, authenticated gateway connection.
pub struct GatewayConnection {
    socket: WebSocketStream<TcpStream>,
}

impl GatewayConnection {
    /// Connects to `url` (`ws://host:port/v1/gateway`) and reads the Welcome frame.
    pub async fn connect(
        url: &str,
        credentials: &Credentials,
        options: &ConnectOptions,
    ) -> ClientResult<(GatewayConnection, Welcome)> {
        let mut request = url.into_client_request()?;
        let authorization = HeaderValue::from_str(&credentials.authorization())
            .map_err(|e| ClientError::Usage(format!("bad credentials: {e}")))?;
        request
            .headers_mut()
            .insert(reqwest::header::AUTHORIZATION, authorization);
        let host = request
            .uri()
            .host()
            .ok_or_else(|| ClientError::Usage(format!("no host in {url}")))?
            .to_owned();
        let port = request.uri().port_u16().unwrap_or(80);
        let target = resolve(&host, port).await?;
        let socket = match target {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(|e| ClientError::Transport(e.to_string()))?;
        if let Some(ip) = options.bind {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| ClientError::Transport(format!("cannot bind {ip}: {e}")))?;
        }
        let stream = socket
            .connect(target)
            .await
            .map_err(|e| ClientError::Transport(format!("cannot connect to {target}: {e}")))?;
        // Best effort: latency matters more than packet count for chat frames.
        let _ = stream.set_nodelay(true);
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (socket, _response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .map_err(handshake_error)?;
        let mut connection = GatewayConnection { socket };
        match connection.recv().await? {
            Incoming::Frame(ServerFrame {
                body: Some(server_frame::Body::Welcome(welcome)),
            }) => Ok((connection, welcome)),
            Incoming::Frame(other) => Err(ClientError::Protocol(format!(
                "expected a Welcome frame first, got {other:?}"
            ))),
            Incoming::Closed { code, reason } => Err(ClientError::Transport(format!(
                "closed before Welcome: {code} {reason}"
            ))),
        }
    }

    pub async fn send(&mut self, frame: &ClientFrame) -> ClientResult<()> {
        self.send_raw(frame.encode_to_vec()).await
    }

    /// Sends arbitrary bytes as one binary frame (tests of malformed input use this).
    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> ClientResult<()> {
        self.socket
            .send(Message::Binary(Bytes::from(bytes)))
            .await?;
        Ok(())
    }

    /// Sends a text frame (which the protocol does not allow; for tests).
    pub async fn send_text(&mut self, text: &str) -> ClientResult<()> {
        self.socket.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// The next server frame, or how the connection closed.
    pub async fn recv(&mut self) -> ClientResult<Incoming> {
        loop {
            let Some(message) = self.socket.next().await else {
                return Ok(Incoming::Closed {
                    code: 1006,
                    reason: "connection lost".into(),
                });
            };
            if let Some(incoming) = incoming(message)? {
                return Ok(incoming);
            }
        }
    }

    /// Splits the connection into a sending and a receiving half, for callers that write and
    /// read concurrently (the load harness).
    pub fn split(self) -> (GatewaySender, GatewayReceiver) {
        let (sink, stream) = self.socket.split();
        (GatewaySender { sink }, GatewayReceiver { stream })
    }

    /// Closes the connection normally (close code 1000, answered by the server).
    pub async fn close(mut self) {
        // The server may already have gone; nothing to do then.
        let _ = self.socket.close(Some(normal_close())).await;
    }
}

async fn resolve(host: &str, port: u16) -> ClientResult<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| ClientError::Transport(format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| ClientError::Transport(format!("no address for {host}")))
}

/// An HTTP refusal of the upgrade (401, 503) becomes an API error with the server's message.
fn handshake_error(error: tokio_tungstenite::tungstenite::Error) -> ClientError {
    match error {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let (code, message) =
                match serde_json::from_str::<courier_protocol::http::ErrorBody>(&body) {
                    Ok(body) => (body.error.code, body.error.message),
                    Err(_) => ("http_error".to_owned(), body),
                };
            ClientError::Api {
                status,
                code,
                message,
            }
        }
        other => other.into(),
    }
}

/// The sending half of a split connection.
pub struct GatewaySender {
    sink: futures_util::stream::SplitSink<WebSocketStream<TcpStream>, Message>,
}

impl GatewaySender {
    pub async fn send(&mut self, frame: &ClientFrame) -> ClientResult<()> {
        self.sink
            .send(Message::Binary(Bytes::from(frame.encode_to_vec())))
            .await?;
        Ok(())
    }

    /// Sends a close frame.
    pub async fn close(mut self) {
        // The peer may be gone already; the connection ends either way.
        let _ = self.sink.send(Message::Close(Some(normal_close()))).await;
        let _ = self.sink.close().await;
    }
}

/// A close frame with code 1000 (normal closure): the server answers it with the same code.
fn normal_close() -> CloseFrame {
    CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }
}

/// The receiving half of a split connection.
pub struct GatewayReceiver {
    stream: futures_util::stream::SplitStream<WebSocketStream<TcpStream>>,
}

impl GatewayReceiver {
    /// The next server frame, or how the connection closed.
    pub async fn recv(&mut self) -> ClientResult<Incoming> {
        loop {
            let Some(message) = self.stream.next().await else {
                return Ok(Incoming::Closed {
                    code: 1006,
                    reason: "connection lost".into(),
                });
            };
            if let Some(incoming) = incoming(message)? {
                return Ok(incoming);
            }
        }
    }
}

/// Interprets one WebSocket message; `None` for control frames to skip.
fn incoming(
    message: Result<Message, tokio_tungstenite::tungstenite::Error>,
) -> ClientResult<Option<Incoming>> {
    use tokio_tungstenite::tungstenite::Error;
    match message {
        Ok(Message::Binary(bytes)) => {
            let frame = ServerFrame::decode(bytes)
                .map_err(|e| ClientError::Protocol(format!("bad server frame: {e}")))?;
            Ok(Some(Incoming::Frame(frame)))
        }
        Ok(Message::Close(frame)) => {
            let (code, reason) = frame
                .map(|f| (u16::from(f.code), f.reason.to_string()))
                .unwrap_or((1005, String::new()));
            Ok(Some(Incoming::Closed { code, reason }))
        }
        Ok(_) => Ok(None),
        Err(Error::ConnectionClosed) | Err(Error::AlreadyClosed) => Ok(Some(Incoming::Closed {
            code: 1006,
            reason: "connection closed".into(),
        })),
        Err(error) => Err(error.into()),
    }
}

//! The WebSocket gateway: authenticated upgrade, one task per connection, binary frames.
//!
//! - [`connection`]: the connection loop: reads `ClientFrame`s, hands them to actors, writes
//!   `ServerFrame`s, pings, enforces limits, closes with documented codes.
//! - [`outbound`]: the bounded queue through which actors push frames to a connection.
//! - [`frames`]: hot-path encoding of deliveries from stored payloads.
//! - [`groups`]: group frames, handed to group actors.
//! - [`rate`]: the per-connection token bucket.

pub mod connection;
pub mod frames;
pub mod groups;
pub mod outbound;
pub mod rate;

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Bytes a connection buffers before writing even without a flush.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// `GET /v1/gateway`: authenticates the device, then upgrades to a WebSocket.
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if state.shutdown.is_draining() {
        return ApiError::Unavailable("server is draining".into()).into_response();
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let device = match state.accounts.authenticate(authorization).await {
        Ok(device) => device,
        Err(error) => return error.into_response(),
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::invalid("websocket_upgrade_required", rejection.body_text())
                .into_response();
        }
    };
    let Ok(permit) = Arc::clone(&state.connection_slots).try_acquire_owned() else {
        return ApiError::Unavailable("connection limit reached".into()).into_response();
    };
    let limits = &state.config.gateway;
    // The socket accepts frames up to twice the limit so that an oversized frame can be
    // answered with FRAME_TOO_LARGE before the close, instead of a bare transport error.
    // Frames are written when flushed (every send flushes; a burst of queued deliveries is
    // flushed once), or when this much is buffered.
    upgrade
        .read_buffer_size(limits.read_buffer_bytes)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(limits.max_frame_bytes * 2)
        .max_frame_size(limits.max_frame_bytes * 2)
        .on_upgrade(move |socket| connection::run(socket, device, state, permit))
}

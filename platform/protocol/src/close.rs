//! WebSocket close codes used by the gateway.
//!
//! Standard codes (RFC 6455) where one fits, and application codes in the 4000–4999 range.

/// The server is shutting down (graceful drain); reconnect to another node or later.
pub const GOING_AWAY: u16 = 1001;
/// The client broke the protocol badly enough that the connection cannot continue.
pub const PROTOCOL_ERROR: u16 = 1002;
/// The client kept flooding after being told it is rate limited.
pub const POLICY_VIOLATION: u16 = 1008;
/// A frame was larger than the server's `max_frame_bytes`.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// An unexpected server error.
pub const INTERNAL_ERROR: u16 = 1011;
/// Another connection of the same device replaced this one.
pub const REPLACED: u16 = 4000;
/// The device was removed (for example the number was registered again elsewhere).
pub const DEVICE_REMOVED: u16 = 4001;
/// The client did not answer pings in time.
pub const IDLE_TIMEOUT: u16 = 4002;

/// A short human-readable name of a close code, for logs and CLIs.
pub fn describe(code: u16) -> &'static str {
    match code {
        1000 => "normal closure",
        GOING_AWAY => "server going away",
        PROTOCOL_ERROR => "protocol error",
        POLICY_VIOLATION => "rate limit exceeded",
        MESSAGE_TOO_BIG => "frame too large",
        INTERNAL_ERROR => "internal server error",
        REPLACED => "replaced by a newer connection of the same device",
        DEVICE_REMOVED => "device removed",
        IDLE_TIMEOUT => "idle timeout",
        _ => "unknown close code",
    }
}

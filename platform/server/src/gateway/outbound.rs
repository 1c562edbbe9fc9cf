//! What actors and the presence hub send to a connection, and the handle they send it with.
//!
//! Frames go through a bounded queue that the connection task writes to its socket. Senders
//! never wait on it: deliveries that do not fit stay in the durable queue and are pushed later,
//! ephemeral events (typing, presence) are dropped. A close request travels on a separate
//! channel so that it gets through even when the frame queue is full.

use bytes::Bytes;
use prost::Message;
use tokio::sync::{mpsc, watch};

use crate::metrics::FrameKind;

/// One thing to write to a connection.
#[derive(Debug)]
pub struct Outbound {
    pub bytes: Bytes,
    pub kind: FrameKind,
}

impl Outbound {
    pub fn frame(frame: &impl Message, kind: FrameKind) -> Self {
        Outbound {
            bytes: Bytes::from(frame.encode_to_vec()),
            kind,
        }
    }
}

/// A request to close a connection with a WebSocket close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseRequest {
    pub code: u16,
    pub reason: &'static str,
}

/// The sending side of a connection, held by actors and the presence hub.
#[derive(Clone, Debug)]
pub struct OutboundSender {
    frames: mpsc::Sender<Outbound>,
    close: watch::Sender<Option<CloseRequest>>,
}

/// The receiving side, owned by the connection task.
pub struct OutboundReceiver {
    pub frames: mpsc::Receiver<Outbound>,
    pub close: watch::Receiver<Option<CloseRequest>>,
}

pub fn channel(capacity: usize) -> (OutboundSender, OutboundReceiver) {
    let (frames_tx, frames_rx) = mpsc::channel(capacity);
    let (close_tx, close_rx) = watch::channel(None);
    (
        OutboundSender {
            frames: frames_tx,
            close: close_tx,
        },
        OutboundReceiver {
            frames: frames_rx,
            close: close_rx,
        },
    )
}

impl OutboundSender {
    /// Queues a frame if there is room; `false` if the queue is full or the connection gone.
    pub fn offer(&self, outbound: Outbound) -> bool {
        self.frames.try_send(outbound).is_ok()
    }

    /// Asks the connection to close. The first request wins.
    pub fn close(&self, code: u16, reason: &'static str) {
        self.close.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(CloseRequest { code, reason });
            true
        });
    }
}

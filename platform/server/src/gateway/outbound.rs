//! What actors and the presence hub send to a connection, and the handle they send it with.
//!
//! Frames go through a bounded queue that the connection task writes to its socket. Senders
//! never wait on it: deliveries that do not fit stay in the durable queue and are pushed later,
//! ephemeral events (typing, presence) are dropped. A close request travels on a separate
//! channel so that it gets through even when the frame queue is full.
//!
//! In cluster mode the actor that pushes to a connection may run on another node than the
//! connection: its handle is then [`OutboundSender::routed`], which hands frames to a
//! [`ConnectionLink`] (the cluster layer) addressed by node and connection id.

use std::fmt;
use std::sync::Arc;

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
    target: Target,
}

#[derive(Clone, Debug)]
enum Target {
    /// A connection of this process.
    Local {
        frames: mpsc::Sender<Outbound>,
        close: watch::Sender<Option<CloseRequest>>,
    },
    /// A connection of a node, reached through the cluster.
    Routed(RoutedConnection),
}

/// Where frames for a connection of some node go: the cluster layer.
pub trait ConnectionLink: Send + Sync + 'static {
    /// Hands a frame on, in order with the frames handed on before for the same connection;
    /// `false` if it cannot be taken now (it stays queued and is pushed again later).
    fn frame(&self, connection: &RoutedConnection, outbound: Outbound) -> bool;
    fn close(&self, node: &str, conn: u64, code: u16, reason: &'static str);
    /// Whether `node` is alive and still the incarnation that opened `conn`.
    fn reachable(&self, node: &str, conn: u64) -> bool;
}

/// A connection held by `node`.
#[derive(Clone)]
pub struct RoutedConnection {
    pub node: Arc<str>,
    pub conn: u64,
    /// Whose connection it is.
    pub device: courier_protocol::DeviceAddress,
    pub link: Arc<dyn ConnectionLink>,
}

impl fmt::Debug for RoutedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.node, self.conn)
    }
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
            target: Target::Local {
                frames: frames_tx,
                close: close_tx,
            },
        },
        OutboundReceiver {
            frames: frames_rx,
            close: close_rx,
        },
    )
}

impl OutboundSender {
    /// A connection of another node (or of this one, reached the same way), in cluster mode.
    pub fn routed(connection: RoutedConnection) -> Self {
        OutboundSender {
            target: Target::Routed(connection),
        }
    }

    /// Queues a frame if there is room; `false` if the queue is full or the connection gone.
    pub fn offer(&self, outbound: Outbound) -> bool {
        match &self.target {
            Target::Local { frames, .. } => frames.try_send(outbound).is_ok(),
            Target::Routed(c) => c.link.frame(c, outbound),
        }
    }

    /// Asks the connection to close. The first request wins.
    pub fn close(&self, code: u16, reason: &'static str) {
        match &self.target {
            Target::Local { close, .. } => {
                close.send_if_modified(|current| {
                    if current.is_some() {
                        return false;
                    }
                    *current = Some(CloseRequest { code, reason });
                    true
                });
            }
            Target::Routed(c) => c.link.close(&c.node, c.conn, code, reason),
        }
    }

    /// Whether frames offered here can still reach the connection: a local one until it
    /// closes, a routed one while its node is alive (a session of a dead node is dropped).
    pub fn reachable(&self) -> bool {
        match &self.target {
            Target::Local { frames, .. } => !frames.is_closed(),
            Target::Routed(c) => c.link.reachable(&c.node, c.conn),
        }
    }

    /// Whether this is a connection of another node's gateway (kept when an actor moves).
    pub fn is_routed(&self) -> bool {
        matches!(self.target, Target::Routed(_))
    }
}

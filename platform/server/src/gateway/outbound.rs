//! What actors and the presence hub send to a connection, and the handle they send it with.
//!
//! Frames go through a bounded queue that the connection task writes to its socket. Senders
//! never wait on it: deliveries that do not fit stay in the durable queue and are pushed later,
//! ephemeral events (typing, presence) are dropped. A close request is kept beside the queue and
//! is taken before any queued frame, so it gets through even when the queue is full.
//!
//! The queue is one small shared allocation (a mutex-guarded `VecDeque` that allocates on first
//! use and gives its memory back when drained, plus a [`Notify`]): an idle connection costs
//! about 150 bytes here, where a tokio `mpsc` channel and a `watch` channel cost about 2 KB. At
//! tens of thousands of connections per process that difference is a fifth of the memory of an
//! idle connection.
//!
//! In cluster mode the actor that pushes to a connection may run on another node than the
//! connection: its handle is then [`OutboundSender::routed`], which hands frames to a
//! [`ConnectionLink`] (the cluster layer) addressed by node and connection id.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use prost::Message;
use tokio::sync::Notify;

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
    Local(Arc<Shared>),
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

/// What a connection's senders and its task share.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<State>,
    /// Wakes the connection task; a wake-up given while it is busy is kept for its next wait.
    wake: Notify,
}

#[derive(Debug)]
struct State {
    frames: VecDeque<Outbound>,
    capacity: usize,
    close: Option<CloseRequest>,
    /// The connection task is gone: nothing offered can reach it.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the queue half-updated: recover it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Frames queued beyond this many slots are given back to the allocator once the queue drains:
/// a burst should not leave an idle connection holding its peak.
const RETAINED_SLOTS: usize = 8;

/// What the connection task takes next.
#[derive(Debug)]
pub enum Next {
    /// Someone asked the connection to close.
    Close(CloseRequest),
    Frame(Outbound),
}

/// The receiving side, owned by the connection task. Dropping it makes every sender's offers
/// fail and releases what was still queued.
pub struct OutboundReceiver {
    shared: Arc<Shared>,
}

impl OutboundReceiver {
    /// The close request if there is one, else the oldest frame; waits for either.
    /// Cancel-safe: nothing is taken unless it is returned.
    pub async fn next(&mut self) -> Next {
        loop {
            if let Some(next) = self.try_next() {
                return next;
            }
            self.shared.wake.notified().await;
        }
    }

    /// What [`Self::next`] would return now, without waiting.
    pub fn try_next(&mut self) -> Option<Next> {
        let mut state = self.shared.lock();
        if let Some(request) = state.close {
            return Some(Next::Close(request));
        }
        let frame = state.frames.pop_front()?;
        if state.frames.is_empty() && state.frames.capacity() > RETAINED_SLOTS {
            state.frames.shrink_to(RETAINED_SLOTS);
        }
        Some(Next::Frame(frame))
    }
}

impl Drop for OutboundReceiver {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.frames = VecDeque::new();
    }
}

/// A queue of at most `capacity` frames for one connection.
pub fn channel(capacity: usize) -> (OutboundSender, OutboundReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            frames: VecDeque::new(),
            capacity,
            close: None,
            closed: false,
        }),
        wake: Notify::new(),
    });
    (
        OutboundSender {
            target: Target::Local(Arc::clone(&shared)),
        },
        OutboundReceiver { shared },
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
            Target::Local(shared) => {
                {
                    let mut state = shared.lock();
                    if state.closed || state.frames.len() >= state.capacity {
                        return false;
                    }
                    state.frames.push_back(outbound);
                }
                shared.wake.notify_one();
                true
            }
            Target::Routed(c) => c.link.frame(c, outbound),
        }
    }

    /// Asks the connection to close. The first request wins.
    pub fn close(&self, code: u16, reason: &'static str) {
        match &self.target {
            Target::Local(shared) => {
                {
                    let mut state = shared.lock();
                    if state.close.is_some() {
                        return;
                    }
                    state.close = Some(CloseRequest { code, reason });
                }
                shared.wake.notify_one();
            }
            Target::Routed(c) => c.link.close(&c.node, c.conn, code, reason),
        }
    }

    /// Whether frames offered here can still reach the connection: a local one until it
    /// closes, a routed one while its node is alive (a session of a dead node is dropped).
    pub fn reachable(&self) -> bool {
        match &self.target {
            Target::Local(shared) => !shared.lock().closed,
            Target::Routed(c) => c.link.reachable(&c.node, c.conn),
        }
    }

    /// Whether this is a connection of another node's gateway (kept when an actor moves).
    pub fn is_routed(&self) -> bool {
        matches!(self.target, Target::Routed(_))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn frame(n: u8) -> Outbound {
        Outbound {
            bytes: Bytes::from(vec![n]),
            kind: FrameKind::Other,
        }
    }

    async fn next_now(receiver: &mut OutboundReceiver) -> Next {
        tokio::time::timeout(Duration::from_secs(5), receiver.next())
            .await
            .expect("something was queued")
    }

    #[tokio::test]
    async fn frames_come_out_in_order_up_to_the_capacity() {
        let (sender, mut receiver) = channel(2);
        assert!(sender.offer(frame(1)));
        assert!(sender.offer(frame(2)));
        assert!(!sender.offer(frame(3)), "a full queue refuses");
        for expected in [1, 2] {
            match next_now(&mut receiver).await {
                Next::Frame(f) => assert_eq!(f.bytes[..], [expected]),
                other => panic!("{other:?}"),
            }
        }
        assert!(sender.offer(frame(4)), "room again once taken");
    }

    #[tokio::test]
    async fn a_close_request_overtakes_a_full_queue_and_the_first_wins() {
        let (sender, mut receiver) = channel(1);
        assert!(sender.offer(frame(1)));
        sender.close(4001, "first");
        sender.close(1001, "second");
        match next_now(&mut receiver).await {
            Next::Close(request) => assert_eq!((request.code, request.reason), (4001, "first")),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_a_frame_offered_from_another_task() {
        let (sender, mut receiver) = channel(4);
        let waiting = tokio::spawn(async move {
            match receiver.next().await {
                Next::Frame(f) => f.bytes[0],
                Next::Close(_) => 0,
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(sender.offer(frame(7)));
        let got = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(got, 7);
    }

    #[tokio::test]
    async fn a_cancelled_wait_loses_nothing() {
        let (sender, mut receiver) = channel(4);
        // Start waiting, then give up (as a select! does when another branch wins).
        let _ = tokio::time::timeout(Duration::from_millis(10), receiver.next()).await;
        assert!(sender.offer(frame(9)));
        match next_now(&mut receiver).await {
            Next::Frame(f) => assert_eq!(f.bytes[..], [9]),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_dropped_receiver_refuses_offers_and_frees_the_queue() {
        let (sender, receiver) = channel(64);
        for n in 0..40 {
            assert!(sender.offer(frame(n)));
        }
        assert!(sender.reachable());
        let Target::Local(shared) = &sender.target else {
            unreachable!()
        };
        let shared = Arc::clone(shared);
        drop(receiver);
        assert!(!sender.reachable());
        assert!(!sender.offer(frame(1)));
        assert_eq!(shared.lock().frames.capacity(), 0);
    }

    #[tokio::test]
    async fn a_drained_queue_gives_back_its_burst_memory() {
        let (sender, mut receiver) = channel(256);
        for n in 0..200 {
            assert!(sender.offer(frame(n as u8)));
        }
        for _ in 0..200 {
            let _ = next_now(&mut receiver).await;
        }
        assert!(receiver.shared.lock().frames.capacity() <= RETAINED_SLOTS);
    }
}

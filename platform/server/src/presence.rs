//! Presence: who is online now, and who wants to know.
//!
//! Presence is ephemeral: events go to the connections subscribed at that moment and are never
//! queued. The last-seen time is the one presence fact kept in storage (written when a user's
//! last device disconnects), and it is shown only to others if the user allows it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use courier_protocol::UserId;
use courier_protocol::v1::{PresenceEvent, ServerFrame, server_frame};

use crate::gateway::outbound::{Outbound, OutboundSender};
use crate::metrics::FrameKind;

/// Subscriptions and the online set of this node.
#[derive(Default)]
pub struct PresenceHub {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Users with at least one connected device.
    online: HashSet<UserId>,
    /// Watched user -> connections watching it.
    watchers: HashMap<UserId, HashMap<u64, OutboundSender>>,
    /// Connection -> users it watches (to unsubscribe on close).
    watching: HashMap<u64, Vec<UserId>>,
}

/// Most users one connection may watch.
pub const MAX_WATCHED_PER_CONNECTION: usize = 1024;

impl PresenceHub {
    pub fn is_online(&self, user: UserId) -> bool {
        self.lock().online.contains(&user)
    }

    /// Records `conn` as a watcher of `users` (replacing nothing; duplicates are ignored).
    /// Returns how many were accepted under [`MAX_WATCHED_PER_CONNECTION`].
    pub fn subscribe(&self, conn: u64, sender: &OutboundSender, users: &[UserId]) -> usize {
        let mut inner = self.lock();
        let mut accepted = 0;
        for user in users {
            let watched = inner.watching.entry(conn).or_default();
            if watched.contains(user) {
                accepted += 1;
                continue;
            }
            if watched.len() >= MAX_WATCHED_PER_CONNECTION {
                break;
            }
            watched.push(*user);
            inner
                .watchers
                .entry(*user)
                .or_default()
                .insert(conn, sender.clone());
            accepted += 1;
        }
        accepted
    }

    pub fn unsubscribe_all(&self, conn: u64) {
        let mut inner = self.lock();
        let Some(users) = inner.watching.remove(&conn) else {
            return;
        };
        for user in users {
            if let Some(watchers) = inner.watchers.get_mut(&user) {
                watchers.remove(&conn);
                if watchers.is_empty() {
                    inner.watchers.remove(&user);
                }
            }
        }
    }

    /// Announces a change of `user`'s presence to its watchers on this node. `last_seen_ms`
    /// must already be 0 if the user hides it. (In a cluster every node applies every change.)
    pub fn apply(&self, user: UserId, online: bool, last_seen_ms: u64) {
        let mut inner = self.lock();
        if online {
            inner.online.insert(user);
        } else {
            inner.online.remove(&user);
        }
        let Some(watchers) = inner.watchers.get(&user) else {
            return;
        };
        let frame = presence_frame(user, online, last_seen_ms);
        for sender in watchers.values() {
            // Presence is best effort: a full outbound queue drops the event.
            sender.offer(Outbound::frame(&frame, FrameKind::Presence));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves only presence bookkeeping behind; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub fn presence_frame(user: UserId, online: bool, last_seen_ms: u64) -> ServerFrame {
    ServerFrame {
        body: Some(server_frame::Body::Presence(PresenceEvent {
            user: user.to_string(),
            online,
            last_seen_ms,
        })),
    }
}

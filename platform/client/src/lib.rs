//! The Courier client SDK and the `courier` command-line client.
//!
//! Layout:
//! - [`client`]: [`Client`] (registration, keys, sessions) and [`Messenger`] (a connected
//!   device: send, receipts, typing, presence) with its stream of [`Event`]s.
//! - [`messenger`]: the [`Messenger`] of a connected device and the task that reads its
//!   connection (requests and their answers, deliveries handled then acknowledged).
//! - [`group_chat`]: groups on the [`Messenger`]: management, sending with Sender Keys
//!   (created, rotated, distributed over pairwise sessions), receiving group messages/events.
//! - [`groups`]: the group state a device keeps ([`GroupInfo`], own and others' Sender Keys).
//! - [`connection`]: a raw gateway connection (binary protobuf frames over WebSocket), for
//!   tests and the load harness.
//! - [`api`]: the typed HTTP API (registration, keys, directory, admin).
//! - [`state`]: the device's state (keys, sessions, groups, seen message ids) and the
//!   [`StateStore`]s that keep it durable item by item ([`StateFile`], [`MemoryStore`]).
//! - [`rich`]: rich messages (reactions, replies, buttons, lists, templates): building,
//!   summarising and answering them.
//! - [`sessions`]: the current and previous sessions with one remote device.
//! - [`history`]: the local message history with delivery statuses.
//! - [`error`]: the error type, [`ClientError`].
//! - [`cli`]: the `courier` command-line client (the binary only parses and calls `cli::run`).
//!
//! End-to-end encryption (X3DH, Double Ratchet) comes from `courier-crypto`; the server only
//! ever receives ciphertext.

pub mod api;
pub mod cli;
pub mod client;
pub mod connection;
pub mod error;
pub mod group_chat;
pub mod groups;
pub mod history;
pub mod messenger;
pub mod rich;
pub mod sessions;
pub mod state;

pub use api::{Api, Credentials};
pub use client::{Client, DeliveryHandler, Event, Messenger, ReceiptKind, Sent};
pub use connection::{ConnectOptions, GatewayConnection, GatewayReceiver, GatewaySender, Incoming};
pub use error::{ClientError, ClientResult};
pub use groups::{GroupEventKind, GroupInfo, GroupMember, GroupSettings, MemberReceipt};
pub use state::{MemoryStore, StateFile, StateStore};

//! The local message history: one JSON line per message or status change, appended.
//!
//! Group messages are stored like 1:1 messages with the group id as `peer`, `group: true` and
//! the member who sent them as `sender`. An outgoing group message lists the members it went
//! to (`recipients`); it counts as "delivered" once every one of them has a delivered receipt
//! and as "read" once every one has read it, as in other messengers.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ClientError, ClientResult};

/// One line of the history file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HistoryRecord {
    /// A message sent or received.
    Message {
        id: String,
        at_ms: u64,
        outgoing: bool,
        /// The other party's user id, or the group id.
        peer: String,
        text: String,
        /// A group message (`peer` is the group id).
        #[serde(default, skip_serializing_if = "is_false")]
        group: bool,
        /// For an incoming group message: the member who sent it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sender: Option<String>,
        /// For an outgoing group message: the members it was sent to.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        recipients: Vec<String>,
        /// A rich message (buttons, a list, a template, a reaction, a reply): the whole
        /// `Content`, protobuf-encoded in base64, so that it can be answered later.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
    },
    /// A message this device sent changed status ("sent", "delivered", "read").
    Status {
        id: String,
        at_ms: u64,
        status: String,
        /// For a group message: the member whose receipt this is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
}

impl HistoryRecord {
    /// A 1:1 message.
    pub fn message(id: &str, at_ms: u64, outgoing: bool, peer: String, text: &str) -> Self {
        HistoryRecord::Message {
            id: id.to_owned(),
            at_ms,
            outgoing,
            peer,
            text: text.to_owned(),
            group: false,
            sender: None,
            recipients: Vec::new(),
            content: None,
        }
    }

    /// The same message with its whole `Content` kept (for rich messages).
    pub fn with_content(mut self, message: &courier_protocol::v1::Content) -> Self {
        use base64::Engine as _;
        use prost::Message as _;
        if let HistoryRecord::Message { content, .. } = &mut self {
            *content =
                Some(base64::engine::general_purpose::STANDARD.encode(message.encode_to_vec()));
        }
        self
    }

    /// A group message received from `sender`.
    pub fn group_incoming(id: &str, at_ms: u64, group: String, sender: String, text: &str) -> Self {
        HistoryRecord::Message {
            id: id.to_owned(),
            at_ms,
            outgoing: false,
            peer: group,
            text: text.to_owned(),
            group: true,
            sender: Some(sender),
            recipients: Vec::new(),
            content: None,
        }
    }

    /// A group message this device sends to `recipients` (the other members).
    pub fn group_outgoing(
        id: &str,
        at_ms: u64,
        group: String,
        recipients: Vec<String>,
        text: &str,
    ) -> Self {
        HistoryRecord::Message {
            id: id.to_owned(),
            at_ms,
            outgoing: true,
            peer: group,
            text: text.to_owned(),
            group: true,
            sender: None,
            recipients,
            content: None,
        }
    }

    /// A status change of a message this device sent; `by` for a group member's receipt.
    pub fn status(id: &str, at_ms: u64, status: &str, by: Option<String>) -> Self {
        HistoryRecord::Status {
            id: id.to_owned(),
            at_ms,
            status: status.to_owned(),
            by,
        }
    }
}

fn decode_content(text: &str) -> Option<courier_protocol::v1::Content> {
    use base64::Engine as _;
    use prost::Message as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    courier_protocol::v1::Content::decode(bytes.as_slice()).ok()
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A message with its latest status, as shown by `courier history`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub id: String,
    pub at_ms: u64,
    pub outgoing: bool,
    pub peer: String,
    pub text: String,
    pub status: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub group: bool,
    /// For an incoming group message: the member who sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// A rich message's whole `Content` (see [`HistoryRecord::Message`]).
    #[serde(skip)]
    pub content: Option<courier_protocol::v1::Content>,
    /// Outgoing group messages: who it went to, who has it, who read it.
    #[serde(skip)]
    recipients: BTreeSet<String>,
    #[serde(skip)]
    delivered_by: BTreeSet<String>,
    #[serde(skip)]
    read_by: BTreeSet<String>,
}

impl HistoryEntry {
    /// Applies a status record; statuses only move forward.
    fn apply_status(&mut self, status: String, by: Option<String>) {
        let status = match by {
            Some(by) if self.group => {
                match status.as_str() {
                    "read" => {
                        self.read_by.insert(by.clone());
                        self.delivered_by.insert(by);
                    }
                    "delivered" => {
                        self.delivered_by.insert(by);
                    }
                    _ => {}
                }
                if self.recipients.is_subset(&self.read_by) {
                    "read".to_owned()
                } else if self.recipients.is_subset(&self.delivered_by) {
                    "delivered".to_owned()
                } else {
                    "sent".to_owned()
                }
            }
            _ => status,
        };
        if rank(&status) > self.status.as_deref().map(rank).unwrap_or(0) {
            self.status = Some(status);
        }
    }
}

#[derive(Clone, Debug)]
pub struct History {
    path: Option<PathBuf>,
}

impl History {
    pub fn at(dir: &Path) -> Self {
        History {
            path: Some(dir.join("history.jsonl")),
        }
    }

    pub fn disabled() -> Self {
        History { path: None }
    }

    pub fn append(&self, record: &HistoryRecord) -> ClientResult<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(record)
            .map_err(|e| ClientError::Storage(format!("cannot encode history: {e}")))?;
        line.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| ClientError::Storage(format!("{}: {e}", path.display())))?;
        file.write_all(&line)
            .map_err(|e| ClientError::Storage(format!("{}: {e}", path.display())))
    }

    /// Messages in order, each with its latest status; optionally only those with `peer`.
    pub fn entries(&self, peer: Option<&str>) -> ClientResult<Vec<HistoryEntry>> {
        let Some(path) = &self.path else {
            return Ok(Vec::new());
        };
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(ClientError::Storage(format!("{}: {error}", path.display()))),
        };
        let mut entries: Vec<HistoryEntry> = Vec::new();
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|e| ClientError::Storage(e.to_string()))?;
            // A torn last line (crash while appending) is skipped, not fatal.
            let Ok(record) = serde_json::from_str::<HistoryRecord>(&line) else {
                continue;
            };
            match record {
                HistoryRecord::Message {
                    id,
                    at_ms,
                    outgoing,
                    peer,
                    text,
                    group,
                    sender,
                    recipients,
                    content,
                } => {
                    // A message re-delivered after a crash may be appended twice.
                    let repeat = entries.iter().any(|e| {
                        e.id == id && e.peer == peer && e.outgoing == outgoing && e.sender == sender
                    });
                    if repeat {
                        continue;
                    }
                    entries.push(HistoryEntry {
                        id,
                        at_ms,
                        outgoing,
                        peer,
                        text,
                        status: outgoing.then(|| "sending".to_owned()),
                        group,
                        sender,
                        content: content.as_deref().and_then(decode_content),
                        recipients: recipients.into_iter().collect(),
                        delivered_by: BTreeSet::new(),
                        read_by: BTreeSet::new(),
                    })
                }
                HistoryRecord::Status { id, status, by, .. } => {
                    if let Some(entry) = entries.iter_mut().rev().find(|e| e.outgoing && e.id == id)
                    {
                        entry.apply_status(status, by);
                    }
                }
            }
        }
        if let Some(peer) = peer {
            entries.retain(|e| e.peer == peer);
        }
        Ok(entries)
    }
}

/// Statuses only move forward: sending < sent < delivered < read.
fn rank(status: &str) -> u8 {
    match status {
        "sending" => 1,
        "sent" => 2,
        "delivered" => 3,
        "read" => 4,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::at(dir.path());
        let message = |id: &str| HistoryRecord::message(id, 1, true, "p".into(), "hi");
        let status = |id: &str, s: &str| HistoryRecord::status(id, 2, s, None);
        history.append(&message("a")).unwrap();
        history.append(&status("a", "read")).unwrap();
        history.append(&status("a", "delivered")).unwrap();
        history.append(&message("b")).unwrap();
        history.append(&status("b", "sent")).unwrap();
        let entries = history.entries(None).unwrap();
        assert_eq!(entries[0].status.as_deref(), Some("read"));
        assert_eq!(entries[1].status.as_deref(), Some("sent"));
        assert!(history.entries(Some("other")).unwrap().is_empty());
    }

    #[test]
    fn group_messages_are_kept_with_their_group_and_sender() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::at(dir.path());
        let incoming =
            HistoryRecord::group_incoming("m1", 5, "g".into(), "bob".into(), "hello all");
        history.append(&incoming).unwrap();
        // A redelivery after a crash is appended again but shown once; another sender's
        // message with the same id is another message.
        history.append(&incoming).unwrap();
        history
            .append(&HistoryRecord::group_incoming(
                "m1",
                6,
                "g".into(),
                "carol".into(),
                "hey",
            ))
            .unwrap();
        history
            .append(&HistoryRecord::message(
                "m9",
                7,
                false,
                "bob".into(),
                "direct",
            ))
            .unwrap();
        let group = history.entries(Some("g")).unwrap();
        assert_eq!(group.len(), 2);
        assert!(group.iter().all(|e| e.group && !e.outgoing));
        assert_eq!(group[0].sender.as_deref(), Some("bob"));
        assert_eq!(group[0].text, "hello all");
        assert_eq!(group[1].sender.as_deref(), Some("carol"));
        let direct = history.entries(Some("bob")).unwrap();
        assert_eq!(direct.len(), 1);
        assert!(!direct[0].group);
        assert_eq!(direct[0].sender, None);
        // The JSON line of a group entry names the group and the sender; 1:1 lines are as before.
        let line = serde_json::to_value(&group[0]).unwrap();
        assert_eq!(line["group"], true);
        assert_eq!(line["sender"], "bob");
        let line = serde_json::to_value(&direct[0]).unwrap();
        assert!(line.get("group").is_none() && line.get("sender").is_none());
    }

    #[test]
    fn an_outgoing_group_message_is_delivered_and_read_when_every_recipient_is() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::at(dir.path());
        let recipients = vec!["bob".to_owned(), "carol".to_owned()];
        history
            .append(&HistoryRecord::group_outgoing(
                "m1",
                1,
                "g".into(),
                recipients,
                "hi",
            ))
            .unwrap();
        let status = |history: &History| history.entries(Some("g")).unwrap()[0].status.clone();
        assert_eq!(status(&history).as_deref(), Some("sending"));
        history
            .append(&HistoryRecord::status("m1", 2, "sent", None))
            .unwrap();
        assert_eq!(status(&history).as_deref(), Some("sent"));
        let by = |user: &str| Some(user.to_owned());
        history
            .append(&HistoryRecord::status("m1", 3, "delivered", by("bob")))
            .unwrap();
        assert_eq!(
            status(&history).as_deref(),
            Some("sent"),
            "Carol has not got it"
        );
        history
            .append(&HistoryRecord::status("m1", 4, "read", by("bob")))
            .unwrap();
        assert_eq!(status(&history).as_deref(), Some("sent"));
        history
            .append(&HistoryRecord::status("m1", 5, "delivered", by("carol")))
            .unwrap();
        assert_eq!(status(&history).as_deref(), Some("delivered"));
        history
            .append(&HistoryRecord::status("m1", 6, "read", by("carol")))
            .unwrap();
        assert_eq!(status(&history).as_deref(), Some("read"));
        // Late delivered receipts do not move it back.
        history
            .append(&HistoryRecord::status("m1", 7, "delivered", by("bob")))
            .unwrap();
        assert_eq!(status(&history).as_deref(), Some("read"));
    }

    #[test]
    fn history_lines_written_before_groups_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let old = concat!(
            r#"{"kind":"message","id":"a","at_ms":1,"outgoing":true,"peer":"p","text":"hi"}"#,
            "\n",
            r#"{"kind":"status","id":"a","at_ms":2,"status":"delivered"}"#,
            "\n"
        );
        std::fs::write(dir.path().join("history.jsonl"), old).unwrap();
        let entries = History::at(dir.path()).entries(None).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].status.as_deref(), Some("delivered"));
        assert!(!entries[0].group);
    }
}

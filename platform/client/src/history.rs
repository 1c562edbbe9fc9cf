//! The local message history: one JSON line per message or status change, appended.

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
        /// The other party's user id.
        peer: String,
        text: String,
    },
    /// A message this device sent changed status ("sent", "delivered", "read").
    Status {
        id: String,
        at_ms: u64,
        status: String,
    },
}

/// A message with its latest status, as shown by `courier history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub id: String,
    pub at_ms: u64,
    pub outgoing: bool,
    pub peer: String,
    pub text: String,
    pub status: Option<String>,
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
                } => {
                    // A message re-delivered after a crash may be appended twice.
                    let repeat = entries
                        .iter()
                        .any(|e| e.id == id && e.peer == peer && e.outgoing == outgoing);
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
                    })
                }
                HistoryRecord::Status { id, status, .. } => {
                    if let Some(entry) = entries.iter_mut().rev().find(|e| e.outgoing && e.id == id)
                        && rank(&status) > entry.status.as_deref().map(rank).unwrap_or(0)
                    {
                        entry.status = Some(status);
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
        let message = |id: &str| HistoryRecord::Message {
            id: id.into(),
            at_ms: 1,
            outgoing: true,
            peer: "p".into(),
            text: "hi".into(),
        };
        let status = |id: &str, s: &str| HistoryRecord::Status {
            id: id.into(),
            at_ms: 2,
            status: s.into(),
        };
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
}

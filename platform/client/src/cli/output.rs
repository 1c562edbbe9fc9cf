//! How the CLI prints: human text, or one JSON object per line with `--json`.

use serde_json::json;

use crate::client::{Client, Event, ReceiptKind, Sent};
use crate::history::HistoryEntry;

pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    fn emit(&self, value: serde_json::Value, text: String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    }

    /// A message for the human only (progress, hints); on stderr with `--json`.
    pub fn notice(&self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("-- {text}");
        }
    }

    pub fn code_requested(&self, phone: &str, expires_in: u64) {
        self.emit(
            json!({"event": "code_requested", "phone": phone, "expires_in_secs": expires_in}),
            format!(
                "A verification code was sent to {phone} (valid {expires_in} s).\n\
                 Without an SMS provider, the server log shows it, or run:\n  \
                 courier admin code {phone}\nthen: courier verify <code>"
            ),
        );
    }

    pub fn whoami(&self, client: &Client) {
        let address = client.address();
        let fingerprint = client.identity().fingerprint();
        self.emit(
            json!({
                "user_id": address.user.to_string(),
                "device_id": address.device,
                "phone": client.phone(),
                "server": client.api().base(),
                "fingerprint": fingerprint,
            }),
            format!(
                "phone:       {}\nuser id:     {}\ndevice:      {}\nserver:      {}\nfingerprint: {}",
                client.phone(),
                address.user,
                address.device,
                client.api().base(),
                fingerprint
            ),
        );
    }

    pub fn sent(&self, sent: &Sent) {
        self.emit(
            json!({"event": "sent", "id": sent.id, "server_timestamp_ms": sent.server_timestamp_ms, "duplicate": sent.duplicate}),
            format!("✓ sent ({})", sent.id),
        );
    }

    pub fn pending_code(&self, pending: &courier_protocol::http::PendingCode) {
        self.emit(
            json!({"phone": pending.phone, "code": pending.code, "expires_in_secs": pending.expires_in_secs}),
            pending.code.clone(),
        );
    }

    pub fn event(&self, event: &Event) {
        let (value, text) = match event {
            Event::Message {
                from,
                device,
                id,
                sent_at_ms,
                text,
            } => (
                json!({"event": "message", "from": from.to_string(), "device": device, "id": id, "sent_at_ms": sent_at_ms, "text": text}),
                format!("<{from}> {text}"),
            ),
            Event::Receipt { kind, by, ids } => {
                let (name, mark) = match kind {
                    ReceiptKind::Delivered => ("delivered", "✓✓"),
                    ReceiptKind::Read => ("read", "✓✓ read"),
                };
                (
                    json!({"event": "receipt", "kind": name, "by": by.to_string(), "ids": ids}),
                    format!("{mark} by {by}: {}", ids.join(", ")),
                )
            }
            Event::Typing { from, typing } => (
                json!({"event": "typing", "from": from.to_string(), "typing": typing}),
                if *typing {
                    format!("{from} is typing…")
                } else {
                    format!("{from} stopped typing")
                },
            ),
            Event::Presence {
                user,
                online,
                last_seen_ms,
            } => (
                json!({"event": "presence", "user": user.to_string(), "online": online, "last_seen_ms": last_seen_ms}),
                if *online {
                    format!("{user} is online")
                } else if *last_seen_ms > 0 {
                    format!("{user} is offline (last seen at {last_seen_ms} ms)")
                } else {
                    format!("{user} is offline")
                },
            ),
            Event::QueueEmpty => (json!({"event": "queue_empty"}), "-- up to date".to_owned()),
            Event::DecryptionFailed { from, id, error } => (
                json!({"event": "decryption_failed", "from": from.to_string(), "id": id, "error": error}),
                format!("!! could not decrypt {id} from {from}: {error}"),
            ),
            Event::ServerError { code, message } => (
                json!({"event": "server_error", "code": code.as_str_name(), "message": message}),
                format!("!! server: {} {message}", code.as_str_name()),
            ),
            Event::Closed { code, reason } => (
                json!({"event": "closed", "code": code, "reason": reason}),
                format!(
                    "-- connection closed: {code} {} {reason}",
                    courier_protocol::close::describe(*code)
                ),
            ),
        };
        self.emit(value, text);
    }

    pub fn history(&self, entries: &[HistoryEntry]) {
        for entry in entries {
            let direction = if entry.outgoing { "→" } else { "←" };
            let status = entry.status.as_deref().unwrap_or("");
            self.emit(
                serde_json::to_value(entry).unwrap_or_default(),
                format!("{direction} {} {} {status}", entry.peer, entry.text),
            );
        }
    }
}

//! How the CLI prints: human text, or one JSON object per line with `--json`.

use courier_protocol::{GroupId, UserId};
use serde_json::json;

use courier_protocol::v1::{Content, content};

use crate::client::{Client, Event, ReceiptKind, Sent};
use crate::groups::{GroupEventKind, GroupInfo, MemberReceipt};
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
                content,
            } => {
                let mut value = json!({"event": "message", "from": from.to_string(), "device": device, "id": id, "sent_at_ms": sent_at_ms, "text": text});
                rich_json(&mut value, content);
                (value, rich_text(*from, id, text, content))
            }
            Event::Receipt {
                kind,
                by,
                ids,
                group,
            } => {
                let (name, mark) = match kind {
                    ReceiptKind::Delivered => ("delivered", "✓✓"),
                    ReceiptKind::Read => ("read", "✓✓ read"),
                };
                let place = group.map(|g| format!(" in group {g}")).unwrap_or_default();
                (
                    json!({"event": "receipt", "kind": name, "by": by.to_string(), "ids": ids, "group": group.map(|g| g.to_string())}),
                    format!("{mark} by {by}{place}: {}", ids.join(", ")),
                )
            }
            Event::GroupMessage {
                group,
                from,
                device,
                id,
                sent_at_ms,
                text,
            } => (
                json!({"event": "group_message", "group": group.to_string(), "from": from.to_string(), "device": device, "id": id, "sent_at_ms": sent_at_ms, "text": text}),
                format!("[{group}] <{from}> {text}"),
            ),
            Event::GroupEvent {
                group,
                revision,
                kind,
                actor,
                users,
            } => (
                json!({"event": "group_event", "group": group.to_string(), "revision": revision, "kind": kind_name(*kind), "actor": actor.map(|a| a.to_string()), "users": users.iter().map(|u| u.to_string()).collect::<Vec<_>>()}),
                format!("[{group}] {}", describe_change(*kind, *actor, users)),
            ),
            Event::GroupKeyReceived { group, from } => {
                // Bookkeeping, not news: shown to scripts only.
                if !self.json {
                    return;
                }
                (
                    json!({"event": "group_key_received", "group": group.to_string(), "from": from.to_string()}),
                    String::new(),
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
            let text = match (entry.group, &entry.sender) {
                (true, Some(sender)) => format!(
                    "{direction} [{}] <{sender}> {} {status}",
                    entry.peer, entry.text
                ),
                (true, None) => format!("{direction} [{}] {} {status}", entry.peer, entry.text),
                (false, _) => format!("{direction} {} {} {status}", entry.peer, entry.text),
            };
            self.emit(serde_json::to_value(entry).unwrap_or_default(), text);
        }
    }

    /// A group's description; `name` renders a member for humans (phone and id if known).
    pub fn group(&self, info: &GroupInfo, name: &dyn Fn(UserId) -> String) {
        let yes_no = |flag: bool| if flag { "yes" } else { "no" };
        let mut text = format!(
            "group:    {}\nsubject:  {}\nrevision: {}\nmembers:  {} (limit {})",
            info.id,
            info.subject,
            info.revision,
            info.members.len(),
            info.size_limit
        );
        for member in &info.members {
            let admin = if member.admin { " (admin)" } else { "" };
            text.push_str(&format!("\n  {}{admin}", name(member.user)));
        }
        text.push_str(&format!(
            "\nsettings: only admins edit info: {}, only admins add members: {}",
            yes_no(info.settings.only_admins_edit_info),
            yes_no(info.settings.only_admins_add_members)
        ));
        if let Some(code) = &info.invite_code {
            text.push_str(&format!("\ninvite:   {code}"));
        }
        self.emit(json!({"event": "group", "group": info}), text);
    }

    /// The groups this device knows, one line each.
    pub fn groups(&self, infos: &[GroupInfo], me: UserId) {
        for info in infos {
            let member = info.is_member(me);
            let note = if member { "" } else { " (not a member)" };
            self.emit(
                json!({"event": "group", "group": info, "member": member}),
                format!(
                    "{} {} ({} members){note}",
                    info.id,
                    info.subject,
                    info.members.len()
                ),
            );
        }
    }

    pub fn invite(&self, group: GroupId, code: &str) {
        self.emit(
            json!({"event": "invite", "group": group.to_string(), "invite_code": code}),
            code.to_owned(),
        );
    }

    /// A change the user made was accepted.
    pub fn done(&self, what: &str, group: GroupId, revision: Option<u64>) {
        self.emit(
            json!({"event": what, "group": group.to_string(), "revision": revision}),
            format!("✓ {} ({group})", what.replace('_', " ")),
        );
    }

    pub fn message_info(&self, group: GroupId, id: &str, receipts: &[MemberReceipt]) {
        let mut text = format!("message {id} in group {group}:");
        if receipts.is_empty() {
            text.push_str("\n  no receipts yet");
        }
        for receipt in receipts {
            let at = |ms: Option<u64>| ms.map(|ms| format!("{ms} ms")).unwrap_or("-".into());
            text.push_str(&format!(
                "\n  {}  delivered {}  read {}",
                receipt.user,
                at(receipt.delivered_at_ms),
                at(receipt.read_at_ms)
            ));
        }
        self.emit(
            json!({"event": "message_info", "group": group.to_string(), "id": id, "members": receipts}),
            text,
        );
    }
}

/// `GROUP_EVENT_KIND_MEMBERS_ADDED` -> `members_added`.
pub fn kind_name(kind: GroupEventKind) -> String {
    kind.as_str_name()
        .trim_start_matches("GROUP_EVENT_KIND_")
        .to_ascii_lowercase()
}

fn describe_change(kind: GroupEventKind, actor: Option<UserId>, users: &[UserId]) -> String {
    let actor = actor
        .map(|a| a.to_string())
        .unwrap_or_else(|| "someone".into());
    let users = users
        .iter()
        .map(|u| u.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let about = if users.is_empty() {
        actor.clone()
    } else {
        users.clone()
    };
    match kind {
        GroupEventKind::Created => format!("{actor} created the group"),
        GroupEventKind::MembersAdded => format!("{actor} added {users}"),
        GroupEventKind::MembersRemoved => format!("{actor} removed {users}"),
        GroupEventKind::MemberLeft => format!("{about} left"),
        GroupEventKind::AdminsPromoted => format!("{actor} made {users} admin"),
        GroupEventKind::AdminsDemoted => format!("{actor} dismissed {users} as admin"),
        GroupEventKind::SubjectChanged => format!("{actor} changed the subject"),
        GroupEventKind::SettingsChanged => format!("{actor} changed the settings"),
        GroupEventKind::InviteChanged => format!("{actor} changed the invite code"),
        GroupEventKind::JoinedByInvite => format!("{about} joined with an invite"),
        GroupEventKind::Unspecified => format!("{actor} changed the group"),
    }
}

/// The rich parts of a message for scripts: its kind, the message it replies to, the sender's
/// push name, and what can be answered (`choices`, numbered from 1 as `courier choose` takes
/// them).
fn rich_json(value: &mut serde_json::Value, message: &Content) {
    let kind = match &message.body {
        Some(content::Body::Text(_)) => "text",
        Some(content::Body::Reaction(_)) => "reaction",
        Some(content::Body::Interactive(_)) => "interactive",
        Some(content::Body::InteractiveReply(_)) => "interactive_reply",
        Some(content::Body::Template(_)) => "template",
        Some(content::Body::SenderKey(_)) | None => "other",
    };
    value["kind"] = json!(kind);
    if let Some(context) = &message.context {
        value["reply_to"] = json!(context.message_id);
    }
    if !message.sender_name.is_empty() {
        value["sender_name"] = json!(message.sender_name);
    }
    match &message.body {
        Some(content::Body::Reaction(reaction)) => {
            value["reaction"] = json!({"message_id": reaction.message_id, "emoji": reaction.emoji});
        }
        Some(content::Body::InteractiveReply(reply)) => {
            value["reply"] =
                json!({"id": reply.id, "title": reply.title, "description": reply.description});
        }
        Some(content::Body::Template(template)) => {
            value["template"] = json!({"name": template.name, "language": template.language});
        }
        _ => {}
    }
    let choices = crate::rich::choices(message);
    if !choices.is_empty() {
        value["choices"] = choices
            .iter()
            .map(|choice| json!({"id": choice.id, "title": choice.title, "description": choice.description}))
            .collect();
    }
}

/// A message for the human: who (with the push name), a reply's quote, and for buttons, lists
/// and templates the numbered choices with how to answer.
fn rich_text(from: UserId, id: &str, text: &str, message: &Content) -> String {
    let who = if message.sender_name.is_empty() {
        from.to_string()
    } else {
        format!("{} ~ {from}", message.sender_name)
    };
    let mut line = format!("<{who}> {text}");
    if let Some(context) = &message.context {
        line.push_str(&format!("  (reply to {})", context.message_id));
    }
    let choices = crate::rich::choices(message);
    if !choices.is_empty() {
        line.push_str(&format!(
            "\n   message {id}: answer with /choose {id} <number> in a chat, or courier choose {from} {id} <number>"
        ));
    }
    line
}

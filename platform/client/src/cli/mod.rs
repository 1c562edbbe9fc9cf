//! The `courier` command-line client: register, send, listen, chat, history, groups.
//!
//! Every command has `--help`; `--json` prints one JSON object per line for scripts.
//! State lives in `--home` (default `$COURIER_HOME`, else `~/.courier`): one directory per
//! device, so two users on one machine use two homes.

mod output;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use courier_protocol::{GroupId, PhoneNumber, UserId, close};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;

use crate::api::Api;
use crate::client::{Client, Event, Messenger};
use crate::error::{ClientError, ClientResult};
use crate::groups::GroupSettings;
use crate::history::HistoryEntry;
use crate::rich;
use crate::state::{StateFile, write_atomically};
use courier_protocol::v1::{Content, MessageContext};
use output::Output;

#[derive(Parser)]
#[command(
    name = "courier",
    version,
    about = "Courier messenger command-line client"
)]
pub struct Args {
    /// Directory of this device's keys, sessions and history.
    #[arg(long, env = "COURIER_HOME", global = true)]
    home: Option<PathBuf>,
    /// Print one JSON object per line instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ask for a verification code for a phone number (step 1 of registration).
    Register {
        /// Server URL, e.g. http://127.0.0.1:8080
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Phone number in E.164 form, e.g. +15550100001
        #[arg(long)]
        phone: String,
    },
    /// Complete registration with the code (step 2): creates keys and the device.
    Verify {
        /// The six-digit code.
        code: String,
        /// A name for this device.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// Show this device's user id, phone and safety fingerprint.
    Whoami,
    /// Send one message and wait until the server has it ("sent").
    Send {
        /// Recipient: a phone number (+1555...) or a user id.
        to: String,
        /// The text.
        text: String,
        /// Reply to (quote) this message id.
        #[arg(long, value_name = "MESSAGE_ID")]
        reply_to: Option<String>,
    },
    /// React to a message with an emoji (an empty emoji takes the reaction back).
    React {
        /// Who sent the message: a phone number or a user id.
        to: String,
        /// The message id (as `courier listen` and `courier history` show it).
        id: String,
        /// The emoji, e.g. 👍
        emoji: String,
    },
    /// Answer a message with buttons, a list or a template's quick replies.
    Choose {
        /// Who sent the message: a phone number or a user id.
        to: String,
        /// The message id (as `courier listen` and `courier history` show it).
        id: String,
        /// The choice: its number as shown (1 is the first), its id or its title.
        choice: String,
    },
    /// Set the name shown with your messages (a push name); no name clears it.
    Name {
        /// The name.
        name: Option<String>,
    },
    /// Print incoming messages, receipts and presence until interrupted.
    Listen {
        /// Send read receipts for every message shown.
        #[arg(long)]
        read: bool,
    },
    /// Chat with one person: lines typed are sent, incoming messages are printed and marked read.
    Chat {
        /// A phone number or a user id.
        with: String,
    },
    /// Show the local history, optionally with one person or one group.
    History {
        /// A phone number, a user id or a group id.
        with: Option<String>,
    },
    /// Groups: create and manage them, send, chat.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Operator commands.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

/// Members are phone numbers (+1555...) or user ids; groups are group ids (UUIDs).
#[derive(Subcommand)]
enum GroupCommand {
    /// Create a group with you as its first admin; prints the group.
    Create {
        /// The group's name.
        subject: String,
        /// Members besides you: phone numbers or user ids.
        members: Vec<String>,
    },
    /// Add members.
    Add {
        /// The group id (a UUID, as `courier group list` shows it).
        group: GroupId,
        /// Phone numbers or user ids.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Remove members (admins only); everyone's next message uses a fresh key.
    Remove {
        /// The group id (a UUID, as `courier group list` shows it).
        group: GroupId,
        /// Phone numbers or user ids.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Make members admins (admins only).
    Promote {
        /// The group id (a UUID, as `courier group list` shows it).
        group: GroupId,
        /// Phone numbers or user ids.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Take admin rights away (admins only).
    Demote {
        /// The group id (a UUID, as `courier group list` shows it).
        group: GroupId,
        /// Phone numbers or user ids.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Leave a group.
    Leave {
        /// The group id (a UUID, as `courier group list` shows it).
        group: GroupId,
    },
    /// Change the subject.
    Subject {
        /// The group id (a UUID, as `courier group list` shows it).
        group: GroupId,
        /// The new subject.
        text: String,
    },
    /// Change who may edit the group and add members (admins only); unset flags stay as they are.
    Settings {
        /// The group id (a UUID, as `courier group list` shows it).
        group: GroupId,
        /// Only admins change the subject and settings.
        #[arg(long, value_name = "true|false")]
        only_admins_edit_info: Option<bool>,
        /// Only admins add members.
        #[arg(long, value_name = "true|false")]
        only_admins_add: Option<bool>,
    },
    /// Create an invite code (admins only; replaces any earlier one) and print it.
    Invite {
        /// The group id (a UUID, as `courier group list` shows it).
        group: GroupId,
    },
    /// Revoke the invite code (admins only).
    RevokeInvite {
        /// The group id (a UUID, as `courier group list` shows it).
        group: GroupId,
    },
    /// Join a group with an invite code.
    Join {
        /// The invite code.
        code: String,
    },
    /// Show a group as the server has it: subject, members, admins, settings.
    Info {
        /// The group id (a UUID, as `courier group list` shows it).
        group: GroupId,
    },
    /// List the groups this device knows (local, no connection).
    List,
    /// Send one message to a group and wait until the server has it ("sent").
    Send {
        /// The group id (a UUID, as `courier group list` shows it).
        group: GroupId,
        /// The text.
        text: String,
    },
    /// Chat in a group: lines typed are sent, incoming messages are printed and marked read.
    Chat {
        /// The group id (a UUID, as `courier group list` shows it).
        group: GroupId,
    },
    /// Who has received and read a message you sent to a group.
    MessageInfo {
        /// The group id (a UUID, as `courier group list` shows it).
        group: GroupId,
        /// The message id (printed when it was sent, and by `courier history`).
        id: String,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Show the pending verification code of a number (for servers without an SMS provider).
    Code {
        /// The phone number.
        phone: String,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// The admin token (or --token-file).
        #[arg(long, env = "COURIER_ADMIN_TOKEN")]
        token: Option<String>,
        /// A file holding the admin token, e.g. the server's <data_dir>/admin.token.
        #[arg(long, default_value = "data/admin.token")]
        token_file: PathBuf,
    },
}

/// What `register` leaves for `verify`.
#[derive(Serialize, Deserialize)]
struct PendingRegistration {
    server: String,
    phone: String,
}

/// Runs one command; the exit code is 0 on success.
pub async fn run(args: Args) -> ClientResult<()> {
    let out = Output::new(args.json);
    let home = match args.home {
        Some(home) => home,
        None => default_home()?,
    };
    match args.command {
        Command::Register { server, phone } => register(&out, &home, server, phone).await,
        Command::Verify { code, name } => verify(&out, &home, &code, &name).await,
        Command::Whoami => {
            let client = Client::open(StateFile::at(&home))?;
            out.whoami(&client);
            Ok(())
        }
        Command::Send { to, text, reply_to } => {
            let client = Client::open(StateFile::at(&home))?;
            let peer = resolve(&client, &to).await?;
            let message = match reply_to {
                Some(id) => rich::reply(quote(&client, peer, &id)?, &text),
                None => rich::text(&text),
            };
            send_one(&out, &client, peer, message).await
        }
        Command::React { to, id, emoji } => {
            let client = Client::open(StateFile::at(&home))?;
            let peer = resolve(&client, &to).await?;
            send_one(&out, &client, peer, rich::reaction(&id, &emoji)).await
        }
        Command::Choose { to, id, choice } => {
            let client = Client::open(StateFile::at(&home))?;
            let peer = resolve(&client, &to).await?;
            let message = answer(&client, peer, &id, &choice)?;
            send_one(&out, &client, peer, message).await
        }
        Command::Name { name } => {
            let client = Client::open(StateFile::at(&home))?;
            client.set_sender_name(name.as_deref()).await?;
            out.notice(&match client.sender_name() {
                Some(name) => format!("your messages now show the name {name:?}"),
                None => "your messages show no name".to_owned(),
            });
            Ok(())
        }
        Command::Listen { read } => listen(&out, &home, read).await,
        Command::Chat { with } => chat(&out, &home, &with).await,
        Command::History { with } => {
            let client = Client::open(StateFile::at(&home))?;
            let peer = match with {
                Some(with) => Some(resolve(&client, &with).await?.to_string()),
                None => None,
            };
            out.history(&client.history().entries(peer.as_deref())?);
            Ok(())
        }
        Command::Group { command } => group(&out, &home, command).await,
        Command::Admin {
            command:
                AdminCommand::Code {
                    phone,
                    server,
                    token,
                    token_file,
                },
        } => {
            let token = match token {
                Some(token) => token,
                None => std::fs::read_to_string(&token_file)
                    .map_err(|e| {
                        ClientError::Usage(format!(
                            "cannot read the admin token from {}: {e} (use --token or --token-file)",
                            token_file.display()
                        ))
                    })?
                    .trim()
                    .to_owned(),
            };
            let pending = Api::new(&server)?.pending_code(&token, &phone).await?;
            out.pending_code(&pending);
            Ok(())
        }
    }
}

fn default_home() -> ClientResult<PathBuf> {
    let base =
        std::env::var_os("HOME").ok_or_else(|| ClientError::Usage("set --home or HOME".into()))?;
    Ok(PathBuf::from(base).join(".courier"))
}

async fn register(
    out: &Output,
    home: &std::path::Path,
    server: String,
    phone: String,
) -> ClientResult<()> {
    let phone = PhoneNumber::parse(&phone)
        .map_err(|e| ClientError::Usage(e.to_string()))?
        .to_string();
    let expires_in = Client::request_code(&server, &phone).await?;
    let pending = PendingRegistration { server, phone };
    let bytes = serde_json::to_vec(&pending).map_err(|e| ClientError::Storage(e.to_string()))?;
    write_atomically(&home.join("pending.json"), &bytes)?;
    out.code_requested(&pending.phone, expires_in);
    Ok(())
}

async fn verify(out: &Output, home: &std::path::Path, code: &str, name: &str) -> ClientResult<()> {
    let path = home.join("pending.json");
    let pending: PendingRegistration = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            ClientError::Usage("no pending registration here; run `courier register` first".into())
        })?;
    let client = Client::register(
        &pending.server,
        &pending.phone,
        code,
        name,
        StateFile::at(home),
    )
    .await?;
    // The registration is complete; the pending file has served its purpose.
    let _ = std::fs::remove_file(&path);
    out.whoami(&client);
    Ok(())
}

/// A phone number (looked up in the directory) or a user id.
async fn resolve(client: &Client, who: &str) -> ClientResult<UserId> {
    if who.starts_with('+') {
        return client.lookup(who).await;
    }
    who.parse::<UserId>().map_err(|_| {
        ClientError::Usage(format!("{who:?} is neither a +phone number nor a user id"))
    })
}

/// Phone numbers or user ids.
async fn resolve_all(client: &Client, who: &[String]) -> ClientResult<Vec<UserId>> {
    let mut users = Vec::with_capacity(who.len());
    for one in who {
        users.push(resolve(client, one).await?);
    }
    Ok(users)
}

/// Connects, sends one message and waits until the server has it.
async fn send_one(
    out: &Output,
    client: &Client,
    peer: UserId,
    message: Content,
) -> ClientResult<()> {
    let messenger = connect_once(client).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let sent = messenger.send_content_as(peer, &id, message).await;
    messenger.close().await;
    out.sent(&sent?);
    Ok(())
}

/// The received message `id` from `peer`, as the local history has it.
fn received(client: &Client, peer: UserId, id: &str) -> ClientResult<HistoryEntry> {
    client
        .history()
        .entries(Some(&peer.to_string()))?
        .into_iter()
        .rev()
        .find(|entry| entry.id == id)
        .ok_or_else(|| {
            ClientError::Usage(format!(
                "no message {id} with {peer} in the local history (see `courier history`)"
            ))
        })
}

/// What a reply to message `id` of the conversation with `peer` quotes.
fn quote(client: &Client, peer: UserId, id: &str) -> ClientResult<MessageContext> {
    let entry = received(client, peer, id)?;
    let author = if entry.outgoing {
        client.user_id()
    } else {
        peer
    };
    Ok(rich::context(id, Some(author)))
}

/// The answer picking `choice` on the message `id` that `peer` sent.
fn answer(client: &Client, peer: UserId, id: &str, choice: &str) -> ClientResult<Content> {
    let entry = received(client, peer, id)?;
    let Some(offered) = entry.content.filter(|_| !entry.outgoing) else {
        return Err(ClientError::Usage(format!(
            "message {id} has no buttons or list to choose from"
        )));
    };
    let picked = rich::choose(&offered, choice)?;
    Ok(rich::interactive_reply(
        rich::context(id, Some(peer)),
        picked,
    ))
}

/// A line typed in `chat`: a text, or one of `/reply <id> <text>`, `/react <id> <emoji>`,
/// `/choose <id> <choice>`.
fn chat_line(client: &Client, peer: UserId, line: &str) -> ClientResult<Content> {
    let Some(command) = line.strip_prefix('/') else {
        return Ok(rich::text(line));
    };
    let mut words = command.splitn(3, ' ');
    let (verb, id, rest) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default().trim(),
    );
    let usage = || {
        ClientError::Usage(
            "commands: /reply <id> <text>, /react <id> <emoji>, /choose <id> <choice>; \
             start a line with // to send one beginning with /"
                .into(),
        )
    };
    match verb {
        _ if command.starts_with('/') => Ok(rich::text(command)),
        "reply" if !id.is_empty() && !rest.is_empty() => {
            Ok(rich::reply(quote(client, peer, id)?, rest))
        }
        "react" if !id.is_empty() => Ok(rich::reaction(id, rest)),
        "choose" if !id.is_empty() && !rest.is_empty() => answer(client, peer, id, rest),
        _ => Err(usage()),
    }
}

/// Connects for one command. Whatever arrives meanwhile is still stored by the SDK (history,
/// state) before it is acknowledged; the events are dropped so a backlog cannot stall the
/// connection.
async fn connect_once(client: &Client) -> ClientResult<Messenger> {
    let (messenger, mut events) = client.connect().await?;
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    Ok(messenger)
}

async fn group(out: &Output, home: &std::path::Path, command: GroupCommand) -> ClientResult<()> {
    let client = Client::open(StateFile::at(home))?;
    match command {
        GroupCommand::List => {
            out.groups(&client.groups(), client.user_id());
            return Ok(());
        }
        GroupCommand::Chat { group } => return group_chat(out, &client, group).await,
        _ => {}
    }
    // Resolve phone numbers before connecting: a typo fails fast.
    let members = match &command {
        GroupCommand::Create { members, .. }
        | GroupCommand::Add { members, .. }
        | GroupCommand::Remove { members, .. }
        | GroupCommand::Promote { members, .. }
        | GroupCommand::Demote { members, .. } => resolve_all(&client, members).await?,
        _ => Vec::new(),
    };
    let messenger = connect_once(&client).await?;
    let result = group_command(out, &client, &messenger, command, &members).await;
    messenger.close().await;
    result
}

async fn group_command(
    out: &Output,
    client: &Client,
    messenger: &Messenger,
    command: GroupCommand,
    members: &[UserId],
) -> ClientResult<()> {
    let me = client.user_id();
    let name = |user: UserId| match client.contact_phone(user) {
        _ if user == me => format!("{} ({user}, you)", client.phone()),
        Some(phone) => format!("{phone} ({user})"),
        None => user.to_string(),
    };
    let changed = |what: &str, info: crate::groups::GroupInfo| {
        out.done(what, info.id, Some(info.revision));
    };
    match command {
        GroupCommand::Create { subject, .. } => {
            let info = messenger.create_group(&subject, members).await?;
            out.group(&info, &name);
        }
        GroupCommand::Add { group, .. } => changed(
            "members_added",
            messenger.add_members(group, members).await?,
        ),
        GroupCommand::Remove { group, .. } => changed(
            "members_removed",
            messenger.remove_members(group, members).await?,
        ),
        GroupCommand::Promote { group, .. } => {
            changed("admins_promoted", messenger.promote(group, members).await?)
        }
        GroupCommand::Demote { group, .. } => {
            changed("admins_demoted", messenger.demote(group, members).await?)
        }
        GroupCommand::Leave { group } => {
            messenger.leave_group(group).await?;
            out.done("left", group, None);
        }
        GroupCommand::Subject { group, text } => changed(
            "subject_changed",
            messenger.set_subject(group, &text).await?,
        ),
        GroupCommand::Settings {
            group,
            only_admins_edit_info,
            only_admins_add,
        } => {
            // The protocol sets both at once: unset flags keep the server's current values.
            let current = messenger.group_info(group).await?.settings;
            let settings = GroupSettings {
                only_admins_edit_info: only_admins_edit_info
                    .unwrap_or(current.only_admins_edit_info),
                only_admins_add_members: only_admins_add.unwrap_or(current.only_admins_add_members),
            };
            let info = messenger.set_group_settings(group, settings).await?;
            out.group(&info, &name);
        }
        GroupCommand::Invite { group } => {
            let code = messenger.create_invite(group).await?;
            out.invite(group, &code);
        }
        GroupCommand::RevokeInvite { group } => {
            changed("invite_revoked", messenger.revoke_invite(group).await?)
        }
        GroupCommand::Join { code } => {
            let info = messenger.join_group(&code).await?;
            out.group(&info, &name);
        }
        GroupCommand::Info { group } => {
            let info = messenger.group_info(group).await?;
            out.group(&info, &name);
        }
        GroupCommand::Send { group, text } => {
            let sent = messenger.send_group_text(group, &text).await?;
            out.sent(&sent);
        }
        GroupCommand::MessageInfo { group, id } => {
            let receipts = messenger.message_info(group, &id).await?;
            out.message_info(group, &id, &receipts);
        }
        GroupCommand::List | GroupCommand::Chat { .. } => {}
    }
    Ok(())
}

async fn group_chat(out: &Output, client: &Client, group: GroupId) -> ClientResult<()> {
    let (messenger, events) = client.connect().await?;
    let info = messenger.group_info(group).await?;
    out.notice(&format!(
        "chatting in {:?} ({} members); type a line and press Enter (Ctrl-D to quit)",
        info.subject,
        info.members.len()
    ));
    converse(out, messenger, events, Conversation::Group(group)).await
}

/// Who an interactive chat is with.
#[derive(Clone, Copy)]
enum Conversation {
    Person(UserId),
    Group(GroupId),
}

/// The interactive loop of `chat` and `group chat`: lines typed are sent, everything incoming is
/// printed, and this conversation's messages are marked read.
async fn converse(
    out: &Output,
    messenger: Messenger,
    mut events: tokio::sync::mpsc::Receiver<Event>,
    with: Conversation,
) -> ClientResult<()> {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let line = line.map_err(|e| ClientError::Usage(format!("stdin: {e}")))?;
                let Some(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                let sent = match with {
                    Conversation::Person(peer) => match chat_line(messenger.client(), peer, &line) {
                        Ok(message) => {
                            let id = uuid::Uuid::new_v4().to_string();
                            messenger.send_content_as(peer, &id, message).await
                        }
                        Err(error) => Err(error),
                    },
                    Conversation::Group(group) => messenger.send_group_text(group, &line).await,
                };
                match sent {
                    Ok(sent) => out.sent(&sent),
                    Err(error) => out.notice(&format!("not sent: {error}")),
                }
            }
            event = events.recv() => {
                let Some(event) = event else { break };
                out.event(&event);
                let read = match (event, with) {
                    (Event::Message { from, id, .. }, Conversation::Person(peer)) if from == peer => {
                        messenger.mark_read(from, vec![id]).await
                    }
                    (Event::GroupMessage { group, from, id, .. }, Conversation::Group(wanted))
                        if group == wanted =>
                    {
                        messenger.mark_group_read(group, from, vec![id]).await
                    }
                    (Event::Closed { .. }, _) => return Ok(()),
                    _ => Ok(()),
                };
                if let Err(error) = read {
                    out.notice(&format!("could not send a read receipt: {error}"));
                }
            }
        }
    }
    messenger.close().await;
    Ok(())
}

/// Closes after which reconnecting would be wrong.
fn final_close(code: u16) -> bool {
    matches!(code, close::REPLACED | close::DEVICE_REMOVED | 1000)
}

async fn listen(out: &Output, home: &std::path::Path, read: bool) -> ClientResult<()> {
    let client = Client::open(StateFile::at(home))?;
    let mut backoff = Duration::from_millis(500);
    loop {
        let (messenger, mut events) = match client.connect().await {
            Ok(connected) => connected,
            Err(ClientError::Transport(error)) => {
                out.notice(&format!(
                    "cannot connect ({error}); retrying in {backoff:?}"
                ));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
            Err(error) => return Err(error),
        };
        backoff = Duration::from_millis(500);
        out.notice("connected; waiting for messages (Ctrl-C to stop)");
        while let Some(event) = events.recv().await {
            out.event(&event);
            match event {
                Event::Message { from, id, .. } if read => {
                    if let Err(error) = messenger.mark_read(from, vec![id]).await {
                        out.notice(&format!("could not send a read receipt: {error}"));
                    }
                }
                Event::GroupMessage {
                    group, from, id, ..
                } if read => {
                    if let Err(error) = messenger.mark_group_read(group, from, vec![id]).await {
                        out.notice(&format!("could not send a read receipt: {error}"));
                    }
                }
                Event::Closed { code, .. } if final_close(code) => return Ok(()),
                _ => {}
            }
        }
        out.notice("disconnected; reconnecting");
        tokio::time::sleep(backoff).await;
    }
}

async fn chat(out: &Output, home: &std::path::Path, with: &str) -> ClientResult<()> {
    let client = Client::open(StateFile::at(home))?;
    let peer = resolve(&client, with).await?;
    let (messenger, events) = client.connect().await?;
    messenger.subscribe_presence(&[peer]).await?;
    out.notice(&format!(
        "chatting with {with}; type a line and press Enter (Ctrl-D to quit); \
         /reply <id> <text>, /react <id> <emoji>, /choose <id> <choice> answer a message"
    ));
    converse(out, messenger, events, Conversation::Person(peer)).await
}

//! The `courier` command-line client: register, send, listen, chat, history.
//!
//! Every command has `--help`; `--json` prints one JSON object per line for scripts.
//! State lives in `--home` (default `$COURIER_HOME`, else `~/.courier`): one directory per
//! device, so two users on one machine use two homes.

mod output;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use courier_protocol::{PhoneNumber, UserId, close};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;

use crate::api::Api;
use crate::client::{Client, Event};
use crate::error::{ClientError, ClientResult};
use crate::state::{StateFile, write_atomically};
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
    /// Show the local history, optionally with one person.
    History {
        /// A phone number or a user id.
        with: Option<String>,
    },
    /// Operator commands.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
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
        Command::Send { to, text } => {
            let client = Client::open(StateFile::at(&home))?;
            let peer = resolve(&client, &to).await?;
            let (messenger, _events) = client.connect().await?;
            let sent = messenger.send_text(peer, &text).await?;
            out.sent(&sent);
            messenger.close().await;
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
    let (messenger, mut events) = client.connect().await?;
    messenger.subscribe_presence(&[peer]).await?;
    out.notice(&format!(
        "chatting with {with}; type a line and press Enter (Ctrl-D to quit)"
    ));
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let line = line.map_err(|e| ClientError::Usage(format!("stdin: {e}")))?;
                let Some(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                match messenger.send_text(peer, &line).await {
                    Ok(sent) => out.sent(&sent),
                    Err(error) => out.notice(&format!("not sent: {error}")),
                }
            }
            event = events.recv() => {
                let Some(event) = event else { break };
                out.event(&event);
                match event {
                    Event::Message { from, id, .. } if from == peer => {
                        if let Err(error) = messenger.mark_read(from, vec![id]).await {
                            out.notice(&format!("could not send a read receipt: {error}"));
                        }
                    }
                    Event::Closed { .. } => return Ok(()),
                    _ => {}
                }
            }
        }
    }
    messenger.close().await;
    Ok(())
}

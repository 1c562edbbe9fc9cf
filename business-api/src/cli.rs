//! The `courier-business` binary: `serve` runs the business API on its own (next to a
//! platform it reaches over HTTP, with its own store); `admin …` are the operator's commands,
//! which call the admin API of a running service (embedded in the server or standalone).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::BusinessConfig;
use crate::clock::SystemClock;
use crate::device::register::Platform;

#[derive(Parser)]
#[command(
    name = "courier-business",
    version,
    about = "The Courier business API (WhatsApp Cloud API compatible)"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the business API standalone.
    Serve {
        /// TOML file with the keys of the server's `[business]` section at its top level;
        /// `COURIER_BUSINESS__<KEY>` variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Directory of the embedded store, the data key and the admin token.
        #[arg(long, default_value = "data-business")]
        data_dir: PathBuf,
    },
    /// A webhook receiver for development: answers the verification request for
    /// `--verify-token`, checks each POST's `X-Hub-Signature-256` against `--app-secret`
    /// (401 if it does not match) and prints each payload as one JSON line.
    ListenWebhooks {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: std::net::SocketAddr,
        #[arg(long)]
        verify_token: String,
        #[arg(long, env = "COURIER_BUSINESS_APP_SECRET")]
        app_secret: String,
    },
    /// Operator commands against a running business API.
    Admin {
        /// The business API's base URL.
        #[arg(
            long,
            env = "COURIER_BUSINESS_URL",
            default_value = "http://127.0.0.1:8090"
        )]
        url: String,
        /// The admin token; by default read from `<data-dir>/business-admin.token`.
        #[arg(long, env = "COURIER_BUSINESS_ADMIN_TOKEN")]
        token: Option<String>,
        /// Where the service keeps its token file (the server's data directory when embedded).
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a business (prints its id, app id and app secret).
    CreateBusiness {
        name: String,
        /// Leave new templates PENDING until `template-status` approves them.
        #[arg(long)]
        review_templates: bool,
    },
    /// List businesses and their numbers.
    Businesses,
    /// Register a phone number for a business (the service becomes its device).
    AddNumber {
        business: String,
        phone: String,
        #[arg(long)]
        name: String,
        /// The code the platform sent to the number (read through the platform otherwise).
        #[arg(long)]
        code: Option<String>,
    },
    /// Create a system-user access token (shown once).
    CreateToken {
        business: String,
        #[arg(long, default_value = "system-user")]
        name: String,
        #[arg(long)]
        expires_in_secs: Option<u64>,
    },
    /// List a business's tokens.
    Tokens { business: String },
    /// Revoke a token.
    RevokeToken { business: String, token_id: String },
    /// Set a template's status (APPROVED, REJECTED, PAUSED, DISABLED, PENDING).
    TemplateStatus { template_id: String, status: String },
    /// List webhooks given up on.
    DeadLetters,
    /// Show one dead letter with its payload.
    DeadLetter {
        number: String,
        app: String,
        seq: u64,
    },
    /// Put a dead letter back into delivery.
    Replay {
        number: String,
        app: String,
        seq: u64,
    },
}

pub async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Command::Serve { config, data_dir } => serve(config, data_dir).await,
        Command::ListenWebhooks {
            listen,
            verify_token,
            app_secret,
        } => listen_webhooks(listen, verify_token, app_secret).await,
        Command::Admin {
            url,
            token,
            data_dir,
            command,
        } => {
            let token = match token {
                Some(token) => token,
                None => std::fs::read_to_string(data_dir.join("business-admin.token"))
                    .with_context(|| {
                        format!(
                            "no --token and no {}/business-admin.token",
                            data_dir.display()
                        )
                    })?
                    .trim()
                    .to_owned(),
            };
            let answer = admin(&url, &token, command).await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
    }
}

async fn admin(url: &str, token: &str, command: AdminCommand) -> anyhow::Result<Value> {
    use reqwest::Method;
    let (method, path, body) = match command {
        AdminCommand::CreateBusiness {
            name,
            review_templates,
        } => (
            Method::POST,
            "/businesses".to_owned(),
            Some(json!({ "name": name, "auto_approve_templates": !review_templates })),
        ),
        AdminCommand::Businesses => (Method::GET, "/businesses".to_owned(), None),
        AdminCommand::AddNumber {
            business,
            phone,
            name,
            code,
        } => (
            Method::POST,
            format!("/businesses/{business}/phone_numbers"),
            Some(json!({ "phone": phone, "verified_name": name, "code": code })),
        ),
        AdminCommand::CreateToken {
            business,
            name,
            expires_in_secs,
        } => (
            Method::POST,
            format!("/businesses/{business}/tokens"),
            Some(json!({ "name": name, "expires_in_secs": expires_in_secs })),
        ),
        AdminCommand::Tokens { business } => {
            (Method::GET, format!("/businesses/{business}/tokens"), None)
        }
        AdminCommand::RevokeToken { business, token_id } => (
            Method::DELETE,
            format!("/businesses/{business}/tokens/{token_id}"),
            None,
        ),
        AdminCommand::TemplateStatus {
            template_id,
            status,
        } => (
            Method::POST,
            format!("/templates/{template_id}/status"),
            Some(json!({ "status": status.to_ascii_uppercase() })),
        ),
        AdminCommand::DeadLetters => (Method::GET, "/dead-letters".to_owned(), None),
        AdminCommand::DeadLetter { number, app, seq } => (
            Method::GET,
            format!("/dead-letters/{number}/{app}/{seq}"),
            None,
        ),
        AdminCommand::Replay { number, app, seq } => (
            Method::POST,
            format!("/dead-letters/{number}/{app}/{seq}/replay"),
            None,
        ),
    };
    let http = reqwest::Client::new();
    let mut request = http
        .request(
            method,
            format!("{}/admin/v1{path}", url.trim_end_matches('/')),
        )
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let answer: Value = response.json().await.context("the answer is not JSON")?;
    if !status.is_success() {
        bail!(
            "{status}: {}",
            answer["error"]["message"].as_str().unwrap_or("error")
        );
    }
    Ok(answer)
}

async fn serve(config_file: Option<PathBuf>, data_dir: PathBuf) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut builder = config::Config::builder();
    if let Some(path) = &config_file {
        builder = builder.add_source(config::File::from(path.as_path()));
    }
    let config: BusinessConfig = builder
        .add_source(config::Environment::with_prefix("COURIER_BUSINESS").separator("__"))
        .build()
        .and_then(|c| c.try_deserialize())
        .context("business configuration")?;
    if config.platform_url.is_empty() {
        bail!("platform_url is required when the business API runs on its own");
    }
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let store = courier_store::embedded::EmbeddedStore::open(
        &data_dir.join("store"),
        courier_store::embedded::Durability::Process,
    )?;
    let deps = crate::Deps {
        store: Arc::new(store),
        clock: Arc::new(SystemClock),
        platform: Platform {
            url: config.platform_url.clone(),
            admin_token: config.platform_admin_token.clone(),
        },
        data_dir,
    };
    let running = crate::start(config, deps).await?;
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    running.shutdown().await;
    Ok(())
}

async fn listen_webhooks(
    listen: std::net::SocketAddr,
    verify_token: String,
    app_secret: String,
) -> anyhow::Result<()> {
    use axum::body::Bytes;
    use axum::extract::Query;
    use axum::http::{HeaderMap, StatusCode};
    use std::collections::HashMap;

    let verify = move |Query(query): Query<HashMap<String, String>>| {
        let verify_token = verify_token.clone();
        async move {
            let param = |name: &str| query.get(name).cloned().unwrap_or_default();
            if param("hub.mode") == "subscribe" && param("hub.verify_token") == verify_token {
                eprintln!("verification request answered");
                (StatusCode::OK, param("hub.challenge"))
            } else {
                eprintln!("verification request with the wrong token refused");
                (StatusCode::FORBIDDEN, String::new())
            }
        }
    };
    let receive = move |headers: HeaderMap, body: Bytes| {
        let app_secret = app_secret.clone();
        async move {
            let given = headers
                .get("x-hub-signature-256")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let expected = crate::webhooks::payload::signature(&app_secret, &body);
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                given.as_bytes(),
                expected.as_bytes(),
            )) {
                eprintln!("a POST with a bad signature refused");
                return StatusCode::UNAUTHORIZED;
            }
            println!("{}", String::from_utf8_lossy(&body));
            StatusCode::OK
        }
    };
    let router = axum::Router::new().route("/", axum::routing::get(verify).post(receive));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!("receiving webhooks at http://{listen}/");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("webhook receiver")?;
    Ok(())
}

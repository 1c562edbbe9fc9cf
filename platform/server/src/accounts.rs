//! Registration by phone number and device authentication.
//!
//! A number asks for a code ([`Accounts::request_code`]); the code goes out through a
//! [`CodeSender`] (the default writes it to the server log, and operators can read pending codes
//! through the admin API); the device proves the number with [`Accounts::verify`] and receives a
//! random password. Every later HTTP call and the gateway upgrade authenticate with
//! `Authorization: Basic base64("<user_id>.<device_id>:<password>")`; the server keeps only the
//! SHA-256 of the password (a 256-bit random secret needs no slow hash).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use courier_protocol::http::{RequestCodeResponse, VerifyCode, VerifyCodeResponse};
use courier_protocol::{DeviceAddress, PhoneNumber, UserId};
use courier_store::{CodeCheck, IssueOutcome, IssuePolicy, Registration, Store};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::now_ms;
use crate::config::RegistrationSection;
use crate::error::ApiError;

/// Delivers verification codes to phone numbers (an SMS gateway in production).
pub trait CodeSender: Send + Sync + 'static {
    fn send(&self, phone: &PhoneNumber, code: &str) -> Result<(), String>;
}

/// The default sender: writes the code to the server log. Operators without an SMS provider
/// read codes from the log or from `GET /admin/v1/verification-codes/{phone}`.
pub struct LogCodeSender;

impl CodeSender for LogCodeSender {
    fn send(&self, phone: &PhoneNumber, code: &str) -> Result<(), String> {
        tracing::info!(%phone, code, "verification code issued");
        Ok(())
    }
}

/// The registration and authentication service.
pub struct Accounts {
    store: Arc<dyn Store>,
    policy: RegistrationSection,
    sender: Arc<dyn CodeSender>,
}

impl Accounts {
    pub fn new(
        store: Arc<dyn Store>,
        policy: RegistrationSection,
        sender: Arc<dyn CodeSender>,
    ) -> Self {
        Accounts {
            store,
            policy,
            sender,
        }
    }

    pub async fn request_code(&self, phone: &str) -> Result<RequestCodeResponse, ApiError> {
        let phone = parse_phone(phone)?;
        let code = random_code()?;
        let policy = IssuePolicy {
            ttl_ms: self.policy.code_ttl_secs * 1000,
            max_per_window: self.policy.max_codes_per_window,
            window_ms: self.policy.code_window_secs * 1000,
        };
        match self
            .store
            .issue_code(&phone, &code, now_ms(), policy)
            .await?
        {
            IssueOutcome::Issued { .. } => {}
            IssueOutcome::RateLimited { retry_after_ms } => {
                return Err(ApiError::RateLimited {
                    message: format!("too many codes requested for {phone}"),
                    retry_after_secs: retry_after_ms.div_ceil(1000),
                });
            }
        }
        self.sender
            .send(&phone, &code)
            .map_err(|e| ApiError::Unavailable(format!("could not send the code: {e}")))?;
        Ok(RequestCodeResponse {
            expires_in_secs: self.policy.code_ttl_secs,
        })
    }

    /// Checks the code and creates (or re-creates) the account's device.
    pub async fn verify(
        &self,
        request: &VerifyCode,
    ) -> Result<(Registration, VerifyCodeResponse), ApiError> {
        let phone = parse_phone(&request.phone)?;
        let now = now_ms();
        match self
            .store
            .check_code(&phone, request.code.trim(), now, self.policy.max_attempts)
            .await?
        {
            CodeCheck::Valid => {}
            CodeCheck::Wrong { attempts_left } => {
                return Err(ApiError::Forbidden {
                    code: "invalid_code",
                    message: format!("wrong code; {attempts_left} attempts left"),
                });
            }
            CodeCheck::Expired => {
                return Err(ApiError::Gone {
                    code: "code_expired",
                    message: "the code has expired; request a new one".into(),
                });
            }
            CodeCheck::Missing => {
                return Err(ApiError::Forbidden {
                    code: "no_pending_code",
                    message: "no pending code for this number (never requested, already used \
                              or burnt by wrong guesses)"
                        .into(),
                });
            }
        }
        let password = random_secret()?;
        let name = request
            .device_name
            .as_deref()
            .unwrap_or("primary")
            .chars()
            .take(64)
            .collect::<String>();
        let registration = self
            .store
            .register(&phone, &name, hash_password(&password), now)
            .await?;
        let response = VerifyCodeResponse {
            user_id: registration.account.user_id,
            device_id: registration.device.address.device,
            password,
        };
        Ok((registration, response))
    }

    /// Resolves an `Authorization` header to the device it authenticates.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<DeviceAddress, ApiError> {
        let unauthorized = |m: &str| ApiError::Unauthorized(m.to_owned());
        let header = header.ok_or_else(|| unauthorized("missing Authorization header"))?;
        let (address, password) =
            parse_basic(header).ok_or_else(|| unauthorized("malformed Authorization header"))?;
        let Some(device) = self.store.device(address).await? else {
            tracing::debug!(%address, "authentication failed: unknown device");
            return Err(unauthorized("unknown device or wrong password"));
        };
        let presented = hash_password(&password);
        if bool::from(presented.ct_eq(&device.credential_hash)) {
            Ok(address)
        } else {
            tracing::debug!(%address, "authentication failed: wrong password");
            Err(unauthorized("unknown device or wrong password"))
        }
    }
}

pub fn parse_phone(raw: &str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse(raw).map_err(|e| ApiError::invalid("invalid_phone_number", e.to_string()))
}

/// `Basic base64("<user>.<device>:<password>")` into its parts.
fn parse_basic(header: &str) -> Option<(DeviceAddress, String)> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (login, password) = decoded.split_once(':')?;
    let (user, device) = login.rsplit_once('.')?;
    let user: UserId = user.parse().ok()?;
    let device: u32 = device.parse().ok()?;
    Some((DeviceAddress::new(user, device), password.to_owned()))
}

/// The `Authorization` header value for a device credential.
pub fn basic_auth(address: DeviceAddress, password: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}.{}:{}", address.user, address.device, password))
    )
}

pub fn hash_password(password: &str) -> [u8; 32] {
    Sha256::digest(password.as_bytes()).into()
}

fn random_bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::Internal(format!("no randomness available: {e}")))?;
    Ok(bytes)
}

/// Six uniformly random decimal digits.
fn random_code() -> Result<String, ApiError> {
    loop {
        let n = u32::from_le_bytes(random_bytes::<4>()?);
        // Rejection sampling keeps every code equally likely.
        if n < u32::MAX - (u32::MAX % 1_000_000) {
            return Ok(format!("{:06}", n % 1_000_000));
        }
    }
}

/// A 256-bit password, URL-safe base64.
fn random_secret() -> Result<String, ApiError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_round_trips() {
        let address = DeviceAddress::new(UserId::random(), 3);
        let header = basic_auth(address, "s3cret:with:colons");
        let (parsed, password) = parse_basic(&header).unwrap();
        assert_eq!(parsed, address);
        assert_eq!(password, "s3cret:with:colons");
    }

    #[test]
    fn malformed_basic_headers_are_rejected() {
        assert!(parse_basic("Bearer abc").is_none());
        assert!(parse_basic("Basic !!!").is_none());
        let no_device = format!("Basic {}", STANDARD.encode("user:pw"));
        assert!(parse_basic(&no_device).is_none());
        let bad_user = format!("Basic {}", STANDARD.encode("nope.1:pw"));
        assert!(parse_basic(&bad_user).is_none());
    }

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..100 {
            let code = random_code().unwrap();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}

//! The HTTP API of the server, typed.

use courier_protocol::http::*;
use courier_protocol::{DeviceAddress, DeviceId, UserId};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;

use crate::error::{ClientError, ClientResult};

/// A device credential: what authenticates every call.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    pub address: DeviceAddress,
    pub password: String,
}

impl Credentials {
    /// The `Authorization` header value (`Basic base64("<user>.<device>:<password>")`).
    pub fn authorization(&self) -> String {
        use base64::Engine;
        let login = format!(
            "{}.{}:{}",
            self.address.user, self.address.device, self.password
        );
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(login)
        )
    }
}

/// A client of the HTTP API of one server.
#[derive(Clone, Debug)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// `base` is the server's HTTP URL, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: &str) -> ClientResult<Api> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Usage(format!(
                "server URL must start with http:// or https://, not {base:?}"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Api { base, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The gateway's WebSocket URL.
    pub fn gateway_url(&self) -> String {
        let rest = self.base.strip_prefix("http").unwrap_or(self.base.as_str());
        format!("ws{rest}{}", courier_protocol::GATEWAY_PATH)
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    fn authed(&self, method: Method, path: &str, credentials: &Credentials) -> RequestBuilder {
        self.request(method, path)
            .header(reqwest::header::AUTHORIZATION, credentials.authorization())
    }

    pub async fn request_code(&self, phone: &str) -> ClientResult<RequestCodeResponse> {
        let body = RequestCode {
            phone: phone.to_owned(),
        };
        json(
            self.request(Method::POST, "/v1/registration/code")
                .json(&body),
        )
        .await
    }

    pub async fn verify(&self, request: &VerifyCode) -> ClientResult<VerifyCodeResponse> {
        json(
            self.request(Method::POST, "/v1/registration/verify")
                .json(request),
        )
        .await
    }

    pub async fn upload_keys(
        &self,
        credentials: &Credentials,
        keys: &UploadKeys,
    ) -> ClientResult<()> {
        empty(self.authed(Method::PUT, "/v1/keys", credentials).json(keys)).await
    }

    pub async fn add_one_time_prekeys(
        &self,
        credentials: &Credentials,
        keys: Vec<OneTimePreKey>,
    ) -> ClientResult<()> {
        let body = AddOneTimePreKeys {
            one_time_prekeys: keys,
        };
        empty(
            self.authed(Method::POST, "/v1/keys/one-time", credentials)
                .json(&body),
        )
        .await
    }

    pub async fn prekey_count(&self, credentials: &Credentials) -> ClientResult<u64> {
        let count: PreKeyCount =
            json(self.authed(Method::GET, "/v1/keys/count", credentials)).await?;
        Ok(count.one_time_prekeys)
    }

    /// Bundles of every device of `user`, or of one device.
    pub async fn bundles(
        &self,
        credentials: &Credentials,
        user: UserId,
        device: Option<DeviceId>,
    ) -> ClientResult<PreKeyBundles> {
        let mut path = format!("/v1/keys/{user}");
        if let Some(device) = device {
            path.push_str(&format!("?device={device}"));
        }
        json(self.authed(Method::GET, &path, credentials)).await
    }

    pub async fn lookup(
        &self,
        credentials: &Credentials,
        phone: &str,
    ) -> ClientResult<DirectoryEntry> {
        let path = format!("/v1/directory/{}", urlencode(phone));
        json(self.authed(Method::GET, &path, credentials)).await
    }

    /// The number and devices of `user`.
    pub async fn lookup_user(
        &self,
        credentials: &Credentials,
        user: courier_protocol::UserId,
    ) -> ClientResult<DirectoryEntry> {
        let path = format!("/v1/directory/users/{user}");
        json(self.authed(Method::GET, &path, credentials)).await
    }

    /// The pending verification code of `phone` (admin API).
    pub async fn pending_code(&self, admin_token: &str, phone: &str) -> ClientResult<PendingCode> {
        let path = format!("/admin/v1/verification-codes/{}", urlencode(phone));
        json(self.request(Method::GET, &path).bearer_auth(admin_token)).await
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

async fn check(response: Response) -> ClientResult<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => (body.error.code, body.error.message),
        Err(_) => ("http_error".to_owned(), text),
    };
    Err(ClientError::Api {
        status: status.as_u16(),
        code,
        message,
    })
}

async fn json<T: DeserializeOwned>(request: RequestBuilder) -> ClientResult<T> {
    let response = check(request.send().await?).await?;
    response
        .json::<T>()
        .await
        .map_err(|e| ClientError::Protocol(format!("unexpected answer: {e}")))
}

async fn empty(request: RequestBuilder) -> ClientResult<()> {
    check(request.send().await?).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_url_follows_the_scheme() {
        assert_eq!(
            Api::new("http://127.0.0.1:8080/").unwrap().gateway_url(),
            "ws://127.0.0.1:8080/v1/gateway"
        );
        assert_eq!(
            Api::new("https://chat.example").unwrap().gateway_url(),
            "wss://chat.example/v1/gateway"
        );
        assert!(Api::new("127.0.0.1:8080").is_err());
    }

    #[test]
    fn phone_numbers_are_escaped_in_paths() {
        assert_eq!(urlencode("+1 555"), "%2B1%20555");
    }
}

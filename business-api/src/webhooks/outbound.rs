//! Requests this service makes to addresses that businesses give it: webhook callbacks (the
//! verification handshake and deliveries) and media links. Each URL is checked first: http or
//! https only, and with `refuse_private_addresses` no host that resolves to a loopback,
//! private, link-local or otherwise internal address (server-side request forgery).
//!
//! The check resolves the host itself, then the request resolves it again: a host whose DNS
//! answer changes in between (rebinding) is not caught. Deployments that need that closed put
//! an egress proxy in front.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::Url;

use crate::error::{BusinessError, BusinessResult};

#[derive(Clone)]
pub struct Outbound {
    http: reqwest::Client,
    refuse_private: bool,
}

/// Why a webhook POST did not count as delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryFailure {
    #[error("callback URL refused: {0}")]
    Refused(String),
    #[error("request failed: {0}")]
    Transport(String),
    #[error("callback answered {0}")]
    Status(u16),
}

fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // 100.64/10
                || v4.octets()[0] >= 240
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_internal(IpAddr::V4(v4)))
        }
    }
}

impl Outbound {
    pub fn new(timeout: Duration, refuse_private: bool) -> BusinessResult<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            // A redirect could lead anywhere, past the address check.
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|e| BusinessError::Internal(format!("HTTP client: {e}")))?;
        Ok(Outbound {
            http,
            refuse_private,
        })
    }

    /// Parses and checks a URL a business gave.
    pub async fn check_url(&self, url: &str) -> BusinessResult<Url> {
        let parsed = Url::parse(url)
            .map_err(|e| BusinessError::Invalid(format!("{url:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(BusinessError::Invalid(format!(
                "{url:?} must be http or https"
            )));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| BusinessError::Invalid(format!("{url:?} has no host")))?
            .to_owned();
        if self.refuse_private {
            let port = parsed.port_or_known_default().unwrap_or(443);
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let addresses = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| BusinessError::Invalid(format!("cannot resolve {host}: {e}")))?;
            for address in addresses {
                if is_internal(address.ip()) {
                    return Err(BusinessError::Invalid(format!(
                        "{host} resolves to an internal address ({}), which this deployment refuses",
                        address.ip()
                    )));
                }
            }
        }
        Ok(parsed)
    }

    /// The verification handshake: `GET url?hub.mode=subscribe&hub.challenge=…&hub.verify_token=…`
    /// must answer 200 with the challenge as its body.
    pub async fn verify_callback(&self, url: &str, verify_token: &str) -> BusinessResult<()> {
        let mut parsed = self
            .check_url(url)
            .await
            .map_err(|e| BusinessError::CallbackVerification(e.to_string()))?;
        let challenge = u64::from_be_bytes(crate::ids::random_bytes()?).to_string();
        parsed
            .query_pairs_mut()
            .append_pair("hub.mode", "subscribe")
            .append_pair("hub.challenge", &challenge)
            .append_pair("hub.verify_token", verify_token);
        let fail = |m: String| BusinessError::CallbackVerification(m);
        let response = self
            .http
            .get(parsed)
            .send()
            .await
            .map_err(|e| fail(format!("URL couldn't be validated: {e}")))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| fail(format!("reading the answer: {e}")))?;
        if !status.is_success() {
            return Err(fail(format!("the callback answered HTTP {status}")));
        }
        if body.trim() != challenge {
            return Err(fail("the response does not match the challenge".into()));
        }
        Ok(())
    }

    /// POSTs one signed webhook body.
    pub async fn post_webhook(
        &self,
        url: &str,
        body: Bytes,
        signature: &str,
    ) -> Result<(), DeliveryFailure> {
        let url = self
            .check_url(url)
            .await
            .map_err(|e| DeliveryFailure::Refused(e.to_string()))?;
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Hub-Signature-256", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryFailure::Transport(e.to_string()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(DeliveryFailure::Status(response.status().as_u16()))
        }
    }

    /// Fetches a media link with bounded size; the MIME type comes from the answer.
    pub async fn fetch(&self, url: &str, max_bytes: usize) -> BusinessResult<(String, Vec<u8>)> {
        let url = self.check_url(url).await?;
        let media = |m: String| BusinessError::Media(m);
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| media(format!("cannot fetch the link: {e}")))?;
        if !response.status().is_success() {
            return Err(media(format!(
                "the link answered HTTP {}",
                response.status()
            )));
        }
        if response
            .content_length()
            .is_some_and(|n| n > max_bytes as u64)
        {
            return Err(media(format!("the linked file is over {max_bytes} bytes")));
        }
        let mime = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| media(format!("reading the link: {e}")))?;
            if body.len() + chunk.len() > max_bytes {
                return Err(media(format!("the linked file is over {max_bytes} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((mime, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in ["8.8.8.8", "2001:4860:4860::8888", "100.128.0.1"] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn refuses_private_targets_when_configured() {
        let strict = Outbound::new(Duration::from_secs(1), true).unwrap();
        assert!(strict.check_url("http://127.0.0.1:9/hook").await.is_err());
        assert!(strict.check_url("http://localhost:9/hook").await.is_err());
        assert!(strict.check_url("ftp://example.com/").await.is_err());
        let open = Outbound::new(Duration::from_secs(1), false).unwrap();
        assert!(open.check_url("http://127.0.0.1:9/hook").await.is_ok());
        assert!(open.check_url("file:///etc/passwd").await.is_err());
    }
}

//! A webhook delivery: one `POST` of the event's JSON body, signed.
//!
//! Headers: `Content-Type: application/json`, `X-Mailroom-Delivery: <journal sequence>` (the same
//! on every retry and after a restart: receivers drop duplicates by it), `X-Mailroom-Event`, and,
//! when the sink has a secret, `X-Mailroom-Signature: sha256=<hex HMAC-SHA256 of the body>`. Any
//! 2xx answer delivers; anything else, a redirect included, or no answer within the timeout, is a
//! failed attempt. The client is async: a slow endpoint holds only its own deliverer.

use super::event::Event;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// Largest part of a failed answer's body kept for the log.
const ERROR_BODY: usize = 200;

pub(crate) struct Webhook {
    client: reqwest::Client,
    url: String,
    secret: Option<Vec<u8>>,
    timeout: Duration,
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` keyed with `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

impl Webhook {
    pub fn new(url: String, secret: Option<Vec<u8>>, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("mailroom/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .build()?;
        Ok(Self { client, url, secret, timeout })
    }

    /// One attempt: `Ok("HTTP 200")`, or what went wrong.
    pub async fn post(&self, ev: &Event) -> Result<String, String> {
        let mut req = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Mailroom-Delivery", ev.seq.to_string())
            .header("X-Mailroom-Event", ev.name.as_str());
        if let Some(secret) = &self.secret {
            req = req.header("X-Mailroom-Signature", signature(secret, &ev.body));
        }
        let mut resp = req.body(ev.body.clone()).send().await.map_err(|e| describe(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(format!("HTTP {}", status.as_u16()));
        }
        let mut body = Vec::new();
        while body.len() < ERROR_BODY {
            match resp.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c),
                _ => break,
            }
        }
        body.truncate(ERROR_BODY);
        let text = String::from_utf8_lossy(&body);
        let text = text.trim();
        Err(if text.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {text}") })
    }
}

/// The error's chain in one line, without the URL (it may carry a token).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        causes.push(s.to_string());
        src = s.source();
    }
    match causes.last() {
        Some(root) => format!("{what}: {root}"),
        None => what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::signature;

    /// RFC 4231, test case 2.
    #[test]
    fn signatures_are_hmac_sha256_in_hex() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

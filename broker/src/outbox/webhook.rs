//! A webhook delivery: one `POST` of the event's JSON body, signed.
//!
//! Headers: `Content-Type: application/json`, `X-Mailroom-Delivery: <journal sequence>` (the same
//! on every retry and after a restart: receivers drop duplicates by it), `X-Mailroom-Event`, and,
//! when the sink has a secret, `X-Mailroom-Signature: sha256=<hex HMAC-SHA256 of the body>`. Any
//! 2xx answer delivers; anything else, a redirect included, or no answer within the timeout, is a
//! failed attempt. The client is async: a slow endpoint holds only its own deliverer.
//!
//! The POST itself goes through a [`Poster`]: the broker library carries no HTTP client (the
//! engine stays off the HTTP stack), and the `mailroom` binary gives it one (`mailroom-http`).

use super::event::Event;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// What a [`Poster`] returns: `Ok` with a short summary (`"HTTP 200"`) for a 2xx answer, `Err`
/// with what went wrong (a status and the start of the body, a timeout, no connection) — never
/// the URL, which may carry a token.
pub type Posted = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// One HTTP POST as the process running the broker makes it: no redirects followed, the whole
/// request bounded by `timeout`.
pub trait Poster: Send + Sync + 'static {
    fn post(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Posted;
}

pub(crate) struct Webhook {
    poster: Arc<dyn Poster>,
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
    pub fn new(poster: Arc<dyn Poster>, url: String, secret: Option<Vec<u8>>, timeout: Duration) -> Self {
        Self { poster, url, secret, timeout }
    }

    /// One attempt: `Ok("HTTP 200")`, or what went wrong.
    pub async fn post(&self, ev: &Event) -> Result<String, String> {
        let mut headers = vec![
            ("Content-Type", "application/json".to_string()),
            ("X-Mailroom-Delivery", ev.seq.to_string()),
            ("X-Mailroom-Event", ev.name.clone()),
        ];
        if let Some(secret) = &self.secret {
            headers.push(("X-Mailroom-Signature", signature(secret, &ev.body)));
        }
        self.poster.post(&self.url, headers, ev.body.clone(), self.timeout).await
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

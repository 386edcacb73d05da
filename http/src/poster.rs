//! The HTTP client the broker's webhooks POST through (the broker library carries none; see
//! `mailroom::outbox::Poster`): reqwest with rustls, no redirects followed, each request
//! bounded by the webhook's timeout, and errors described without the URL (it may carry a
//! token).

use mailroom::outbox::{Posted, Poster};
use std::time::Duration;

/// Largest part of a failed answer's body kept for the log.
const ERROR_BODY: usize = 200;

/// The `mailroom` binary's webhook client.
pub struct WebhookClient {
    client: reqwest::Client,
}

impl WebhookClient {
    pub fn new() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("mailroom/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { client })
    }
}

impl Poster for WebhookClient {
    fn post(
        &self,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Posted {
        let mut req = self.client.post(url).timeout(timeout);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req.body(body);
        Box::pin(async move {
            let mut resp = req.send().await.map_err(|e| describe(&e))?;
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
        })
    }
}

/// The error's chain in one line, without the URL.
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

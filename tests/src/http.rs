//! Talking to a broker's HTTP surface from a test: where it listens (`broker/http.addr`), its
//! token, plain requests that return the status and the JSON, and an event-stream reader.

use crate::{Root, wait_for};
use std::io::BufRead;
use std::time::Duration;

/// The environment variable `mailroom run` reads for `--http`. Tests set it to an ephemeral
/// loopback port, so brokers running at once never compete for one.
pub const HTTP_ENV: &str = "MAILROOM_HTTP";

/// A broker's HTTP surface.
pub struct Api {
    pub base: String,
    pub token: String,
    agent: ureq::Agent,
}

/// A response: status, headers, body as text, and the body as JSON when it is JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub content_type: String,
    pub text: String,
    pub json: serde_json::Value,
}

impl Root {
    /// The running broker's HTTP surface, once it has written `broker/http.addr`.
    pub fn api(&self) -> Api {
        let addr = self.comms().join("broker/http.addr");
        wait_for(Duration::from_secs(20), || addr.exists());
        let base = format!("http://{}", std::fs::read_to_string(&addr).expect("http.addr").trim());
        let token = std::fs::read_to_string(self.comms().join("broker/http.token")).expect("http.token");
        Api::new(base, token.trim().to_string())
    }
}

impl Api {
    pub fn new(base: String, token: String) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Self { base, token, agent }
    }

    fn finish(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let r = r.expect("the HTTP request went through");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let content_type =
            r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let text = r.into_body().read_to_string().expect("read the body");
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Reply { status, headers, content_type, text, json }
    }

    /// `GET path`, without the token.
    pub fn get(&self, path: &str) -> Reply {
        Self::finish(self.agent.get(format!("{}{path}", self.base)).call())
    }

    /// `GET path` with `Authorization: <auth>` (`None`: no header).
    pub fn get_as(&self, path: &str, auth: Option<&str>) -> Reply {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        Self::finish(req.call())
    }

    /// `GET path` with extra headers (an `Origin`, say).
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request("GET", path, headers)
    }

    /// Any method without a body (`OPTIONS` for a CORS preflight), with the headers given.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = ureq::http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::finish(self.agent.run(req.body(()).expect("a well-formed request")))
    }

    /// `POST path` with the token and a JSON body.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> Reply {
        self.post_as(path, body, Some(&format!("Bearer {}", self.token)))
    }

    /// `POST path` with `Authorization: <auth>` (`None`: no header).
    pub fn post_as(&self, path: &str, body: &serde_json::Value, auth: Option<&str>) -> Reply {
        let mut req =
            self.agent.post(format!("{}{path}", self.base)).header("content-type", "application/json");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        Self::finish(req.send(body.to_string().as_bytes()))
    }

    /// Opens `/api/events`, resuming after `last_event_id` if given.
    pub fn events(&self, last_event_id: Option<u64>) -> Events {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into();
        let mut req = agent.get(format!("{}/api/events", self.base));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let r = req.call().expect("open the event stream");
        assert_eq!(r.status().as_u16(), 200, "the event stream opens");
        Events { reader: std::io::BufReader::new(Box::new(r.into_body().into_reader())) }
    }
}

/// An open event stream.
pub struct Events {
    reader: std::io::BufReader<Box<dyn std::io::Read + Send>>,
}

/// One event: its `id:` and its data as JSON.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Option<u64>,
    pub data: serde_json::Value,
}

impl Events {
    /// The next event that carries data (comments and `retry:` lines are skipped).
    pub fn next_event(&mut self) -> Event {
        let (mut id, mut data) = (None, String::new());
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read the event stream");
            assert!(n > 0, "the event stream ended");
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !data.is_empty() {
                    let data = serde_json::from_str(&data).expect("event data is JSON");
                    return Event { id, data };
                }
                id = None;
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
    }
}

impl Reply {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
}

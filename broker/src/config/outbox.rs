//! The outbox's sections of `mailroom.toml`: `[[webhooks]]` and `[[hooks]]`. Each names the
//! events it wants and, optionally, the pools; everything is checked when the file is read, and
//! an error names the key (`webhooks[0].events`), never a silently ignored typo.
//!
//! An event is either a task **status** (`PENDING`, `IN_PROGRESS`, `COMPLETED`, `FAILED`,
//! `BLOCKED`, `CANCELLED`), matching every journaled transition that sets a task to it, or a
//! journal **operation** in lower case (`submit`, `claim`, `complete`, `reject`, `requeue`, ...;
//! see [`OPS`]), matching every record of that operation.

use protocol::Status;
use protocol::names::validate_pool;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// The journal operations a sink may ask for. `dispatch` moves a task's file without changing its
/// status, so it matches no status event, only itself; `reject`, `stray` and `requeue` are about
/// quarantined input.
pub const OPS: &[&str] = &[
    "submit", "import", "dispatch", "claim", "complete", "fail", "release", "expire", "vanish", "cancel",
    "retry", "block", "reject", "stray", "requeue",
];

/// What a sink wants: statuses, operations, and the pools they must be in (empty: any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Events {
    pub statuses: Vec<Status>,
    pub ops: BTreeSet<String>,
    /// Pools of the task's type (see `Config::pool_of`); empty matches every record.
    pub pools: BTreeSet<String>,
}

impl Events {
    fn parse(key: &str, names: &[String], pools: &[String]) -> Result<Self, String> {
        if names.is_empty() {
            return Err(format!("{key}: must name at least one event"));
        }
        let mut ev = Self::default();
        for n in names {
            if let Ok(s) = n.parse::<Status>()
                && s.as_str() == n
            {
                if !ev.statuses.contains(&s) {
                    ev.statuses.push(s);
                }
            } else if OPS.contains(&n.as_str()) {
                ev.ops.insert(n.clone());
            } else {
                return Err(format!(
                    "{key}: `{n}` is neither a status (PENDING, IN_PROGRESS, COMPLETED, FAILED, BLOCKED, \
                     CANCELLED) nor an operation ({})",
                    OPS.join(", ")
                ));
            }
        }
        for p in pools {
            validate_pool(p).map_err(|e| format!("{key}: pools: {}", e.rule))?;
            ev.pools.insert(p.clone());
        }
        Ok(ev)
    }

    /// The events as they were written, for operators (statuses first).
    pub fn names(&self) -> Vec<String> {
        self.statuses.iter().map(|s| s.as_str().to_string()).chain(self.ops.iter().cloned()).collect()
    }
}

/// How a sink retries a failed delivery: exponential backoff from `base` to `max`, forever
/// unless `max_attempts` is set (then the event is given up, logged, and the sink moves on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub timeout: Duration,
    pub base: Duration,
    pub max: Duration,
    /// 0: retry forever (the sink waits for its endpoint; nothing is skipped).
    pub max_attempts: u32,
}

impl Retry {
    /// The wait after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// A `[[webhooks]]` entry: matching transitions are POSTed as JSON to `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// The sink's name: its journaled position is kept under `webhook:<name>`.
    pub name: String,
    pub url: String,
    pub events: Events,
    /// The HMAC key's file (relative paths are taken from the root); no signature without one.
    pub secret_file: Option<PathBuf>,
    pub retry: Retry,
}

impl Webhook {
    /// The id its position is journaled under.
    pub fn sink(&self) -> String {
        format!("webhook:{}", self.name)
    }
}

/// A `[[hooks]]` entry: a program run for each matching transition, the task on its stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub name: String,
    /// The program and its arguments; `{task_id}`, `{status}` and `{pool}` are replaced in the
    /// arguments. Never run through a shell.
    pub run: Vec<String>,
    pub events: Events,
    pub retry: Retry,
}

impl Hook {
    pub fn sink(&self) -> String {
        format!("hook:{}", self.name)
    }
}

fn ten() -> u64 {
    10
}
fn thirty() -> u64 {
    30
}
fn second() -> u64 {
    1000
}
fn minute() -> u64 {
    60_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    url: String,
    #[serde(default)]
    name: Option<String>,
    events: Vec<String>,
    #[serde(default)]
    pools: Vec<String>,
    #[serde(default)]
    secret_file: Option<PathBuf>,
    #[serde(default = "ten")]
    timeout_secs: u64,
    #[serde(default)]
    max_attempts: u32,
    #[serde(default = "second")]
    retry_base_ms: u64,
    #[serde(default = "minute")]
    retry_max_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHook {
    on: Vec<String>,
    run: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    pools: Vec<String>,
    #[serde(default = "thirty")]
    timeout_secs: u64,
    #[serde(default)]
    max_attempts: u32,
    #[serde(default = "second")]
    retry_base_ms: u64,
    #[serde(default = "minute")]
    retry_max_ms: u64,
}

fn retry(
    key: &str,
    timeout_secs: u64,
    base_ms: u64,
    max_ms: u64,
    max_attempts: u32,
) -> Result<Retry, String> {
    if timeout_secs == 0 || base_ms == 0 || max_ms < base_ms {
        return Err(format!(
            "{key}: timeout_secs and retry_base_ms must be at least 1, and retry_max_ms at least retry_base_ms"
        ));
    }
    Ok(Retry {
        timeout: Duration::from_secs(timeout_secs),
        base: Duration::from_millis(base_ms),
        max: Duration::from_millis(max_ms),
        max_attempts,
    })
}

/// The URL without credentials or query (which may hold a token): what a default name and
/// operators' views show.
pub fn redacted_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let path = if path.is_empty() { String::new() } else { format!("/{path}") };
    format!("{scheme}://{host}{path}")
}

fn check_name(key: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(format!("{key}: name must be 1 to 200 characters, none of them a control character"));
    }
    Ok(())
}

pub(super) fn webhooks(raw: Vec<RawWebhook>) -> Result<Vec<Webhook>, String> {
    let mut out: Vec<Webhook> = Vec::new();
    for (i, w) in raw.into_iter().enumerate() {
        let key = format!("webhooks[{i}]");
        let lower = w.url.to_ascii_lowercase();
        let after_scheme =
            lower.strip_prefix("http://").or_else(|| lower.strip_prefix("https://")).unwrap_or_default();
        if after_scheme.is_empty() || after_scheme.starts_with('/') {
            return Err(format!("{key}.url: `{}` must be an http:// or https:// URL with a host", w.url));
        }
        let name = w.name.unwrap_or_else(|| redacted_url(&w.url));
        check_name(&key, &name)?;
        if out.iter().any(|o| o.name == name) {
            return Err(format!("{key}: another webhook is named `{name}`: give each a distinct `name`"));
        }
        let events = Events::parse(&format!("{key}.events"), &w.events, &w.pools)?;
        let retry = retry(&key, w.timeout_secs, w.retry_base_ms, w.retry_max_ms, w.max_attempts)?;
        out.push(Webhook { name, url: w.url, events, secret_file: w.secret_file, retry });
    }
    Ok(out)
}

pub(super) fn hooks(raw: Vec<RawHook>) -> Result<Vec<Hook>, String> {
    let mut out: Vec<Hook> = Vec::new();
    for (i, h) in raw.into_iter().enumerate() {
        let key = format!("hooks[{i}]");
        if h.run.first().is_none_or(|p| p.is_empty()) {
            return Err(format!("{key}.run: must name a program (then its arguments)"));
        }
        let name = h.name.unwrap_or_else(|| h.run.join(" "));
        check_name(&key, &name)?;
        if out.iter().any(|o| o.name == name) {
            return Err(format!("{key}: another hook is named `{name}`: give each a distinct `name`"));
        }
        let events = Events::parse(&format!("{key}.on"), &h.on, &h.pools)?;
        let retry = retry(&key, h.timeout_secs, h.retry_base_ms, h.retry_max_ms, h.max_attempts)?;
        out.push(Hook { name, run: h.run, events, retry });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn webhooks_and_hooks_parse_with_defaults() {
        let c = Config::parse(
            r#"
[[webhooks]]
url = "https://user:pw@example.com/hooks/mr?token=s3cret"
events = ["COMPLETED", "FAILED", "reject"]
pools = ["build"]
secret_file = "secrets/webhook"

[[hooks]]
on = ["COMPLETED"]
run = ["/usr/local/bin/notify", "{task_id}", "{status}"]
timeout_secs = 5
max_attempts = 3
"#,
        )
        .unwrap();
        let w = &c.webhooks[0];
        assert_eq!(w.name, "https://example.com/hooks/mr", "credentials and query never in the name");
        assert_eq!(w.sink(), "webhook:https://example.com/hooks/mr");
        assert_eq!(w.events.names(), ["COMPLETED", "FAILED", "reject"]);
        assert!(w.events.pools.contains("build"));
        assert_eq!(w.retry.timeout.as_secs(), 10);
        assert_eq!(w.retry.max_attempts, 0);
        let h = &c.hooks[0];
        assert_eq!(h.sink(), "hook:/usr/local/bin/notify {task_id} {status}");
        assert_eq!((h.retry.timeout.as_secs(), h.retry.max_attempts), (5, 3));
        assert_eq!(h.retry.backoff(1).as_millis(), 1000);
        assert_eq!(h.retry.backoff(3).as_millis(), 4000);
        assert_eq!(h.retry.backoff(40).as_millis(), 60_000);
    }

    #[test]
    fn errors_name_the_key() {
        let err = |t: &str| Config::parse(t).unwrap_err();
        assert!(
            err("[[webhooks]]\nurl = \"http://h/\"\nevents = [\"DONE\"]\n").contains("webhooks[0].events")
        );
        assert!(err("[[webhooks]]\nurl = \"ftp://h/\"\nevents = [\"FAILED\"]\n").contains("webhooks[0].url"));
        assert!(err("[[webhooks]]\nurl = \"http://h/\"\nevents = []\n").contains("webhooks[0].events"));
        assert!(err("[[webhooks]]\nurl = \"http://h/\"\nevnts = [\"FAILED\"]\n").contains("evnts"));
        assert!(
            err("[[webhooks]]\nurl = \"http://h/\"\nevents = [\"FAILED\"]\npools = [\"../x\"]\n")
                .contains("webhooks[0].events: pools")
        );
        let two = "[[webhooks]]\nurl = \"http://h/a?x=1\"\nevents = [\"FAILED\"]\n\
                   [[webhooks]]\nurl = \"http://h/a?x=2\"\nevents = [\"FAILED\"]\n";
        assert!(err(two).contains("webhooks[1]: another webhook is named"));
        assert!(err("[[hooks]]\non = [\"COMPLETED\"]\nrun = []\n").contains("hooks[0].run"));
        assert!(err("[[hooks]]\non = [\"completed\"]\nrun = [\"x\"]\n").contains("hooks[0].on"));
        assert!(err("[[hooks]]\non = [\"FAILED\"]\nrun = [\"x\"]\ntimeout_secs = 0\n").contains("hooks[0]"));
    }
}

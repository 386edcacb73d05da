//! `mailroom.toml`: routes and broker settings, and the outbox's webhooks and hooks
//! ([`outbox`]). Every setting has a default, so the file is optional; an unknown key is an error
//! naming it, so a typo never silently changes nothing.

pub mod outbox;

pub use outbox::{Events, Hook, Retry, Webhook};
use protocol::Task;
use protocol::names;
use runtime_layout::{Durability, Fs, FsError, Layout};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where a route sends tasks of one `task_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Pool(String),
    Agent(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    /// Default lease of a claim, in seconds.
    pub lease_secs: u64,
    /// How much is fsynced before the broker moves on: `always`, `batch` (group commit, the
    /// default) or `never`.
    pub durability: Durability,
    /// Largest message or dropped file read, in bytes; larger files are quarantined unread.
    pub max_message_bytes: u64,
    /// Period of the full rescan, in milliseconds.
    pub tick_ms: u64,
    /// A dropped file is taken once it parses and has not changed for this long.
    pub settle_ms: u64,
    /// A dropped file that still does not parse after this long is quarantined.
    pub settle_timeout_secs: u64,
    /// How many finished tasks the completed board shows (older ones remain in the journal).
    pub completed_board_limit: usize,
    /// Create the mailbox of an unknown `assigned_to` agent instead of rejecting the task.
    pub allow_unknown_agents: bool,
    /// Processed messages stay in `broker/inbox/cur/` this long for operators, then are removed.
    pub inbox_retention_secs: u64,
    pub backoff_base_secs: u64,
    pub backoff_max_secs: u64,
    /// Messages handled per batch (one journal fsync per batch).
    pub batch_size: usize,
    /// Start a new journal snapshot after this many records.
    pub compact_after_records: u64,
    /// Every this many seconds, check that each queued task file is still there and unchanged
    /// (a deleted one is delivered again, a rewritten one replaced). 0 turns the audit off.
    pub audit_secs: u64,
    /// An outbox sink (webhook or hook) journals its position after this many deliveries (and
    /// at least every second while it has delivered something since): after a crash, at most
    /// this many deliveries per sink are made again.
    pub delivery_journal_every: u64,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            lease_secs: 300,
            durability: Durability::Batch,
            max_message_bytes: protocol::message::DEFAULT_MAX_MESSAGE_BYTES,
            tick_ms: 500,
            settle_ms: 500,
            settle_timeout_secs: 30,
            completed_board_limit: 1000,
            allow_unknown_agents: false,
            inbox_retention_secs: 3600,
            backoff_base_secs: 5,
            backoff_max_secs: 3600,
            batch_size: 512,
            compact_after_records: 200_000,
            audit_secs: 10,
            delivery_journal_every: 32,
        }
    }
}

/// How ready tasks are released to agents.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchSettings {
    /// At most this many ready tasks of one maildir (a pool or an agent's mailbox) are files in
    /// its `new/`; the rest wait in the broker's state, in dispatch order, and get their file as
    /// claims make room. A task that sorts before the window's last file takes its place at
    /// once. Keeps a claim (which lists `new/`) and a pass costing the same at any queue depth.
    /// `0` means no limit.
    pub ready_window: usize,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self { ready_window: 256 }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    broker: BrokerSettings,
    /// `task_type = "pool:NAME"` or `task_type = "agent:NAME"`.
    #[serde(default)]
    routes: BTreeMap<String, String>,
    #[serde(default)]
    ingest: IngestSettings,
    #[serde(default)]
    dispatch: DispatchSettings,
    #[serde(default)]
    http: HttpSettings,
    #[serde(default)]
    webhooks: Vec<outbox::RawWebhook>,
    #[serde(default)]
    hooks: Vec<outbox::RawHook>,
}

/// Where existing scripts write, besides `drop/`. Paths are relative to the root (the directory
/// that holds `agent_comms/`) and must stay beneath it (no `..`, not absolute): the broker reads,
/// moves and writes nothing outside its root. Files are taken by renaming them into the broker's
/// inbox.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// More drop directories for task files written any way at all (e.g. `tasks`, where a scanner
    /// writes `LEAD-<PLATFORM>-<id>.json` with a plain `open('w')`). Legacy spellings are normalised.
    pub task_dirs: Vec<PathBuf>,
    /// Legacy mailbox trees: for each `<dir>/<agent>/inbox/`, JSON messages dropped there are
    /// normalised and delivered as mail to `<agent>` (or to the recipient they name).
    pub mail_dirs: Vec<PathBuf>,
    /// Absorb edits that something other than the broker makes to `central_task_boards/`.
    pub absorb_board_edits: bool,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self { task_dirs: Vec::new(), mail_dirs: Vec::new(), absorb_board_edits: true }
    }
}

/// The HTTP surface of `mailroom run` (API, event stream, metrics, dashboard). `--http` on the
/// command line overrides `listen`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// `ADDR:PORT` to listen on, or `off` (default [`DEFAULT_HTTP_LISTEN`]). Beyond loopback only
    /// with `token_file` set.
    pub listen: Option<String>,
    /// The bearer token mutations need (reads too, beyond loopback). Relative paths are taken
    /// from the root. Default `agent_comms/broker/http.token`, created (mode 0600) if absent.
    pub token_file: Option<PathBuf>,
    /// Origins allowed to call the API from a browser page served elsewhere (CORS). None by
    /// default: only the dashboard, served from the same origin, can.
    pub cors_origins: Vec<String>,
}

/// Where `mailroom run` listens unless told otherwise.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:7878";

impl HttpSettings {
    /// The address to listen on (or `off`), and whether it was chosen rather than defaulted.
    pub fn listen(&self) -> (&str, bool) {
        match &self.listen {
            Some(l) => (l, true),
            None => (DEFAULT_HTTP_LISTEN, false),
        }
    }
}

/// The parsed configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub broker: BrokerSettings,
    pub routes: BTreeMap<String, Route>,
    pub ingest: IngestSettings,
    pub dispatch: DispatchSettings,
    pub http: HttpSettings,
    pub webhooks: Vec<Webhook>,
    pub hooks: Vec<Hook>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Fs(#[from] FsError),
}

impl Config {
    /// Reads `<root>/agent_comms/mailroom.toml`; a missing file gives the defaults.
    pub fn load(fs: &dyn Fs, layout: &Layout) -> Result<Self, ConfigError> {
        let path = layout.config_file();
        if fs.stat(&path)?.is_none() {
            return Ok(Self::default());
        }
        let bytes = fs.read(&path, 1 << 20)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| ConfigError::Invalid { path: path.clone(), message: "is not UTF-8".into() })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid { path, message })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut routes = BTreeMap::new();
        for (task_type, target) in raw.routes {
            let route = match target.split_once(':') {
                Some(("pool", p)) => names::validate_pool(p).map(|()| Route::Pool(p.to_string())),
                Some(("agent", a)) => names::validate_agent(a).map(|()| Route::Agent(a.to_string())),
                _ => {
                    return Err(format!(
                        "routes.{task_type}: `{target}` must be `pool:NAME` or `agent:NAME`"
                    ));
                }
            }
            .map_err(|e| format!("routes.{task_type}: {}", e.rule))?;
            routes.insert(task_type, route);
        }
        for (key, dirs) in [("task_dirs", &raw.ingest.task_dirs), ("mail_dirs", &raw.ingest.mail_dirs)] {
            for d in dirs {
                let beneath = !d.as_os_str().is_empty()
                    && d.components().all(|c| matches!(c, std::path::Component::Normal(_)));
                if !beneath {
                    return Err(format!(
                        "ingest.{key}: `{}` must be a relative path beneath the root (no `..`, not absolute)",
                        d.display()
                    ));
                }
            }
        }
        if raw.broker.lease_secs == 0
            || raw.broker.tick_ms == 0
            || raw.broker.batch_size == 0
            || raw.broker.delivery_journal_every == 0
        {
            return Err(
                "broker: lease_secs, tick_ms, batch_size and delivery_journal_every must be at least 1"
                    .into(),
            );
        }
        let webhooks = outbox::webhooks(raw.webhooks)?;
        let hooks = outbox::hooks(raw.hooks)?;
        Ok(Self {
            broker: raw.broker,
            routes,
            ingest: raw.ingest,
            dispatch: raw.dispatch,
            http: raw.http,
            webhooks,
            hooks,
        })
    }

    /// Where a task goes when it has no `assigned_to`: its `task_type`'s route, else the pool
    /// named after its type.
    pub fn route_of(&self, task: &Task) -> Route {
        if let Some(r) = task.task_type.as_ref().and_then(|t| self.routes.get(t)) {
            return r.clone();
        }
        Route::Pool(names::pool_for_task_type(task.task_type.as_deref()))
    }

    /// The pool a task belongs to: the one its `task_type` routes to (`None` when its type
    /// routes to an agent). A claim does not change it: a task taken from `build` by an agent
    /// is still a `build` task when it completes. What `--pool` filters and a sink's `pools`
    /// match on.
    pub fn pool_of(&self, task: &Task) -> Option<String> {
        match self.route_of(task) {
            Route::Pool(p) => Some(p),
            Route::Agent(_) => None,
        }
    }

    /// The directories existing scripts write into, besides `drop/` (each beneath the root).
    pub fn ingest_dirs(&self, layout: &Layout) -> Vec<PathBuf> {
        self.ingest.task_dirs.iter().chain(&self.ingest.mail_dirs).map(|d| layout.root().join(d)).collect()
    }

    pub fn backoff(&self) -> protocol::Backoff {
        protocol::Backoff { base_secs: self.broker.backoff_base_secs, max_secs: self.broker.backoff_max_secs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_routes_and_settings() {
        let c = Config::parse(
            "[broker]\nlease_secs = 60\ndurability = \"always\"\n[routes]\nLEAD_ANALYSIS = \"pool:leads\"\nREVIEW = \"agent:Agent-5\"\n",
        )
        .unwrap();
        assert_eq!(c.broker.lease_secs, 60);
        assert_eq!(c.broker.durability, Durability::Always);
        assert_eq!(c.routes["LEAD_ANALYSIS"], Route::Pool("leads".into()));
        assert_eq!(c.routes["REVIEW"], Route::Agent("Agent-5".into()));
    }

    #[test]
    fn errors_name_the_key() {
        assert!(Config::parse("[broker]\nleese_secs = 1\n").unwrap_err().contains("leese_secs"));
        assert!(Config::parse("[routes]\nX = \"queue:a\"\n").unwrap_err().contains("routes.X"));
        assert!(Config::parse("[routes]\nX = \"agent:../a\"\n").unwrap_err().contains("routes.X"));
        assert!(Config::parse("").is_ok());
        for bad in ["/etc", "../outside", "tasks/../../x", "./tasks", ""] {
            let e = Config::parse(&format!("[ingest]\ntask_dirs = [{bad:?}]\n")).unwrap_err();
            assert!(e.contains("ingest.task_dirs") && e.contains("beneath the root"), "{bad}: {e}");
        }
        let e = Config::parse("[ingest]\nmail_dirs = [\"/var/mail\"]\n").unwrap_err();
        assert!(e.contains("ingest.mail_dirs"), "{e}");
        let c = Config::parse("[ingest]\ntask_dirs = [\"tasks\", \"legacy/leads\"]\n").unwrap();
        assert_eq!(c.ingest.task_dirs.len(), 2);
        assert!(Config::parse("[http]\nlisen = \"x\"\n").unwrap_err().contains("lisen"));
    }

    #[test]
    fn http_settings_default_to_loopback_and_parse() {
        assert_eq!(Config::parse("").unwrap().http.listen(), (DEFAULT_HTTP_LISTEN, false));
        let c = Config::parse(
            "[http]\nlisten = \"off\"\ntoken_file = \"/etc/mr.token\"\ncors_origins = [\"http://a:1\"]\n",
        )
        .unwrap();
        assert_eq!(c.http.listen(), ("off", true));
        assert_eq!(c.http.token_file.as_deref(), Some(std::path::Path::new("/etc/mr.token")));
        assert_eq!(c.http.cors_origins, ["http://a:1"]);
    }
}

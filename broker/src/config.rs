//! `mailroom.toml`: routes and broker settings, and the outbox's webhooks and hooks
//! ([`outbox`]). Every setting has a default, so the file is optional; an unknown key is an error
//! naming it, so a typo never silently changes nothing.

pub mod cluster;
pub mod outbox;

pub use cluster::ClusterSettings;
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
    /// ...and only the newest this many of them (the journal holds what was accepted anyway).
    pub inbox_keep_count: u64,
    /// ...and only the newest that fit in this many bytes.
    pub inbox_keep_bytes: u64,
    /// The broker warns when less than this percentage of the filesystem's space or inodes is
    /// free, or when what is free would not hold what the retention limits still allow to grow.
    pub low_space_percent: u64,
    pub backoff_base_secs: u64,
    pub backoff_max_secs: u64,
    /// Messages handled per batch (one journal fsync per batch).
    pub batch_size: usize,
    /// Start a new journal snapshot after this many records...
    pub compact_after_records: u64,
    /// ...or once this many bytes of records were appended since the last one, whichever comes
    /// first (large task bodies make records large: the live journal stays within this).
    pub compact_after_bytes: u64,
    /// ...or once the records appended since the last snapshot are at least this many bytes and
    /// twice that snapshot's size: the live journal stays in proportion to the live state.
    pub compact_min_bytes: u64,
    /// The broker remembers at most this many finished tasks (their ids, for duplicate
    /// submissions and redrives; about 43 bytes each in memory and 80 in the tomb files); beyond
    /// it the oldest are forgotten, and their ids may be submitted again as new tasks. 0: no
    /// limit.
    pub finished_keep_count: usize,
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
            inbox_keep_count: 10_000,
            inbox_keep_bytes: 100_000_000,
            low_space_percent: 10,
            backoff_base_secs: 5,
            backoff_max_secs: 3600,
            batch_size: 512,
            compact_after_records: 200_000,
            compact_after_bytes: 256_000_000,
            compact_min_bytes: 4_000_000,
            finished_keep_count: 1_000_000,
            audit_secs: 10,
            delivery_journal_every: 32,
        }
    }
}

/// How tasks are ordered and released: priority aging and dependencies that do not exist.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchSettings {
    /// A queued task waiting longer than this many seconds rises one priority level (for dispatch
    /// order only) per further `aging_secs`, never above CRITICAL. `0` (the default) turns aging
    /// off.
    pub aging_secs: u64,
    /// A task waiting for a task id that does not exist is BLOCKED after this many seconds.
    pub missing_dependency_secs: u64,
    /// At most this many ready tasks of one maildir (a pool or an agent's mailbox) are files in
    /// its `new/`; the rest wait in the broker's state, in dispatch order, and get their files
    /// once claims have drained the window to three quarters of this (then up to this again). A
    /// task that sorts before the window's last file takes the room, or that file's place, at
    /// once. Keeps a claim (which lists `new/`) and a pass costing the same at any queue depth.
    /// `0` means no limit.
    pub ready_window: usize,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self { aging_secs: 0, missing_dependency_secs: 86_400, ready_window: 256 }
    }
}

/// Agent presence.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSettings {
    /// An agent not seen (no claim, heartbeat or message) for this many seconds is `stale`.
    pub stale_secs: u64,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self { stale_secs: 600 }
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
    /// `name = ["Agent-2", "Agent-5"]`: mail to `@name` goes to these agents.
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    dispatch: DispatchSettings,
    #[serde(default)]
    agents: AgentSettings,
    #[serde(default)]
    http: HttpSettings,
    #[serde(default)]
    journal: JournalSettings,
    #[serde(default)]
    webhooks: Vec<outbox::RawWebhook>,
    #[serde(default)]
    hooks: Vec<outbox::RawHook>,
    #[serde(default)]
    cluster: Option<cluster::RawCluster>,
}

/// What happens to journal segments once a snapshot covers them (`journal/archive/`): they are
/// compressed (zstd) and kept for `mailroom trace` within both limits, oldest removed first.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct JournalSettings {
    /// How long archived history is kept: `"7d"`, `"12h"`, `"30m"`, `"90s"`, a number of
    /// seconds, or `"forever"`.
    pub archive_keep: KeepFor,
    /// At most this many bytes of archive (compressed), oldest segments removed first.
    pub archive_keep_bytes: u64,
    /// Compress archived segments (`segment-N.jsonl.zst`).
    pub compress_archive: bool,
    /// Zeros written ahead of the live segment's records, so that a commit's fsync writes the
    /// records alone (see `journal::RESERVE`); 0 grows the segment with every commit instead
    /// (`tail -f` then shows new records; each fsync also commits the growth).
    pub reserve_bytes: u64,
}

impl Default for JournalSettings {
    fn default() -> Self {
        Self {
            archive_keep: KeepFor::Secs(7 * 86_400),
            archive_keep_bytes: 1_000_000_000,
            compress_archive: true,
            reserve_bytes: crate::journal::RESERVE,
        }
    }
}

/// A retention time: a number of seconds, or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepFor {
    Secs(u64),
    Forever,
}

impl KeepFor {
    /// `"7d"`, `"12h"`, `"30m"`, `"90s"`, `"3600"` or `"forever"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "forever" {
            return Ok(Self::Forever);
        }
        let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => s.split_at(i),
            None => (s, "s"),
        };
        let n: u64 = digits.parse().map_err(|_| format!("`{s}` is not a duration like \"7d\""))?;
        let per = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(format!("`{s}`: the unit must be s, m, h or d (or \"forever\")")),
        };
        n.checked_mul(per).map(Self::Secs).ok_or_else(|| format!("`{s}` is too long"))
    }

    /// Is something `age_secs` old past this limit?
    pub fn expired(self, age_secs: i64) -> bool {
        matches!(self, Self::Secs(limit) if age_secs > 0 && age_secs as u64 > limit)
    }
}

impl<'de> Deserialize<'de> for KeepFor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) => Ok(Self::Secs(n)),
            Raw::Text(t) => Self::parse(&t).map_err(serde::de::Error::custom),
        }
    }
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
    /// Named groups of agents, addressed as `@name` (members in the order written, each once).
    pub groups: BTreeMap<String, Vec<String>>,
    pub dispatch: DispatchSettings,
    pub agents: AgentSettings,
    pub http: HttpSettings,
    pub journal: JournalSettings,
    pub webhooks: Vec<Webhook>,
    pub hooks: Vec<Hook>,
    /// This broker as a node of a cluster sharing pools (`None`: a broker on its own).
    pub cluster: Option<ClusterSettings>,
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
            || raw.broker.compact_after_bytes == 0
            || raw.broker.compact_min_bytes < 1_000_000
        {
            return Err(
                "broker: lease_secs, tick_ms, batch_size, delivery_journal_every and compact_after_bytes must be at least 1, compact_min_bytes at least 1000000"
                    .into(),
            );
        }
        let mut groups = BTreeMap::new();
        for (name, members) in raw.groups {
            names::validate_group(&name).map_err(|e| format!("groups.{name}: {}", e.rule))?;
            let mut unique: Vec<String> = Vec::with_capacity(members.len());
            for m in members {
                names::validate_agent(&m).map_err(|e| format!("groups.{name}: {}", e.rule))?;
                if !unique.contains(&m) {
                    unique.push(m);
                }
            }
            groups.insert(name, unique);
        }
        if raw.agents.stale_secs == 0 {
            return Err("agents: stale_secs must be at least 1".into());
        }
        let webhooks = outbox::webhooks(raw.webhooks)?;
        let hooks = outbox::hooks(raw.hooks)?;
        let cluster = raw.cluster.map(cluster::parse).transpose()?;
        Ok(Self {
            broker: raw.broker,
            routes,
            ingest: raw.ingest,
            http: raw.http,
            webhooks,
            hooks,
            groups,
            dispatch: raw.dispatch,
            agents: raw.agents,
            journal: raw.journal,
            cluster,
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

    /// Whether tasks routed to `pool` travel through the cluster (never without `[cluster]`).
    pub fn shared(&self, pool: &str) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.shares(pool))
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
        assert!(Config::parse("[groups]\n\"a b\" = []\n").unwrap_err().contains("groups.a b"));
        assert!(Config::parse("[groups]\nr = [\"ALL\"]\n").unwrap_err().contains("reserved"));
        assert!(Config::parse("[http]\nlisen = \"x\"\n").unwrap_err().contains("lisen"));
        assert!(Config::parse("[journal]\narchive_keep = \"7w\"\n").unwrap_err().contains("unit"));
        assert!(Config::parse("[journal]\narchive_kep = \"7d\"\n").unwrap_err().contains("archive_kep"));
    }

    #[test]
    fn dispatch_and_agent_settings() {
        let c = Config::parse("").unwrap();
        assert_eq!(
            (c.dispatch.aging_secs, c.dispatch.missing_dependency_secs, c.agents.stale_secs),
            (0, 86_400, 600)
        );
        let c = Config::parse(
            "[dispatch]\naging_secs = 30\nmissing_dependency_secs = 5\n[agents]\nstale_secs = 9\n",
        )
        .unwrap();
        assert_eq!(
            (c.dispatch.aging_secs, c.dispatch.missing_dependency_secs, c.agents.stale_secs),
            (30, 5, 9)
        );
        assert!(Config::parse("[dispatch]\naging = 1\n").unwrap_err().contains("aging"));
        assert!(Config::parse("[agents]\nstale_secs = 0\n").is_err());
        // A tiny floor would compact at almost every pass where little is live.
        assert!(Config::parse("[broker]\ncompact_min_bytes = 0\n").is_err());
        let c = Config::parse("[broker]\ncompact_min_bytes = 2000000\nfinished_keep_count = 0\n").unwrap();
        assert_eq!((c.broker.compact_min_bytes, c.broker.finished_keep_count), (2_000_000, 0));
    }

    #[test]
    fn groups_list_valid_agents_once() {
        let c = Config::parse("[groups]\nreviewers = [\"Agent-2\", \"Agent-5\", \"Agent-2\"]\n").unwrap();
        assert_eq!(c.groups["reviewers"], ["Agent-2", "Agent-5"]);
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

    #[test]
    fn retention_settings_parse_with_units_and_default_to_bounded_limits() {
        let c = Config::parse(
            "[broker]\ninbox_keep_count = 5\ninbox_keep_bytes = 1000\n[journal]\narchive_keep = \"12h\"\narchive_keep_bytes = 2000\n",
        )
        .unwrap();
        assert_eq!((c.broker.inbox_keep_count, c.broker.inbox_keep_bytes), (5, 1000));
        assert_eq!(c.journal.archive_keep, KeepFor::Secs(43_200));
        assert_eq!(c.journal.archive_keep_bytes, 2000);
        for (text, want) in [
            ("90s", KeepFor::Secs(90)),
            ("30m", KeepFor::Secs(1800)),
            ("7d", KeepFor::Secs(604_800)),
            ("3600", KeepFor::Secs(3600)),
            ("forever", KeepFor::Forever),
        ] {
            assert_eq!(KeepFor::parse(text), Ok(want), "{text}");
        }
        assert!(KeepFor::parse("d").is_err() && KeepFor::parse("-1d").is_err());
        let n = Config::parse("[journal]\narchive_keep = 60\n").unwrap();
        assert_eq!(n.journal.archive_keep, KeepFor::Secs(60));
        let d = Config::default();
        assert_eq!((d.broker.inbox_keep_count, d.broker.inbox_keep_bytes), (10_000, 100_000_000));
        assert_eq!(d.journal.archive_keep, KeepFor::Secs(7 * 86_400));
        assert!(d.journal.compress_archive && d.journal.archive_keep_bytes == 1_000_000_000);
        assert_eq!(d.journal.reserve_bytes, 1 << 20);
        assert_eq!(Config::parse("[journal]\nreserve_bytes = 0\n").unwrap().journal.reserve_bytes, 0);
        assert!(KeepFor::Secs(10).expired(11) && !KeepFor::Secs(10).expired(10));
        assert!(!KeepFor::Forever.expired(i64::MAX));
    }
}

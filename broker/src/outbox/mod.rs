//! The outbox: webhooks (`[[webhooks]]`) and transition hooks (`[[hooks]]`) fed from the journal,
//! at least once, and never inside the broker's pass.
//!
//! Each sink is a deliverer task ([`sink`]) on the broker's runtime. It reads committed records
//! only — from the broker's subscription (`Handle::subscribe`) and, for whatever that cannot give,
//! from the journal's files ([`crate::feed`]) — so nothing is delivered that a crash could undo, and the
//! pass never waits on a network or a child process: a slow or dead endpoint holds only its own
//! deliverer.
//!
//! **Positions.** A sink's position ("every record up to N is handled") is journaled as an
//! `Entry::Delivered` through the command channel and applied to the state, so a restart resumes
//! after it, reading what it missed from the journal. A deliverer journals after every
//! `delivery_journal_every` deliveries (and a second after a delivery when nothing follows), and
//! waits for that commit before going on; `run::serve` journals every sink's position once more
//! when the broker stops cleanly. So a restart after a crash delivers again at most
//! `delivery_journal_every` records per sink (receivers drop them by `X-Mailroom-Delivery`), and
//! nothing is lost: an undelivered record is retried until it succeeds, or given up after
//! `max_attempts` when that is set (logged, and counted in [`Deliveries`]).
//!
//! **Status.** [`Deliveries`] is the shared, cheap handle on what each sink did (recent attempts,
//! failures, positions), for the HTTP API and the dashboard: `Handle::deliveries()`.

mod event;
mod hook;
mod sink;
mod status;
mod webhook;

pub use status::{Attempt, Deliveries, RECENT, SinkStatus};
pub use webhook::{Posted, Poster, signature};

use crate::config::{Config, ConfigError, outbox::redacted_url};
use crate::engine::commands::Handle;
use runtime_layout::{Fs, Layout};
use sink::{Context, Sink, Target};
use std::path::Path;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Largest secret file read.
const MAX_SECRET_BYTES: u64 = 64 << 10;

/// The configured sinks, ready to start.
pub struct Outbox {
    sinks: Vec<Sink>,
    deliveries: Deliveries,
}

/// The deliverers of a started outbox; dropping it stops them (a running hook's process group is
/// killed, an unanswered request abandoned: both are delivered again after a restart).
pub struct Running(Vec<JoinHandle<()>>);

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn invalid(layout: &Layout, message: String) -> ConfigError {
    ConfigError::Invalid { path: layout.config_file(), message }
}

/// A webhook's key: the file's bytes, less trailing whitespace (`echo secret > file` works).
fn read_secret(layout: &Layout, key: &str, file: &Path) -> Result<Vec<u8>, ConfigError> {
    // Outside the tree and often a link (mounted secrets are): read with the standard library.
    let path = if file.is_relative() { layout.root().join(file) } else { file.to_path_buf() };
    let too_big = |len: u64| len > MAX_SECRET_BYTES;
    let meta = std::fs::metadata(&path)
        .map_err(|e| invalid(layout, format!("{key}.secret_file: {}: {e}", path.display())))?;
    if too_big(meta.len()) {
        return Err(invalid(layout, format!("{key}.secret_file: {} is over 64 KiB", path.display())));
    }
    let mut bytes = std::fs::read(&path)
        .map_err(|e| invalid(layout, format!("{key}.secret_file: {}: {e}", path.display())))?;
    bytes.truncate(bytes.trim_ascii_end().len());
    if bytes.is_empty() {
        return Err(invalid(layout, format!("{key}.secret_file: {} is empty", path.display())));
    }
    Ok(bytes)
}

impl Outbox {
    /// Builds the sinks of `cfg`: reads each webhook's secret and gives it `poster`, the HTTP
    /// client of the process (webhooks cannot run without one). An error names the sink and the
    /// key; the broker does not start on it.
    pub fn prepare(
        cfg: &Config,
        layout: &Layout,
        poster: Option<Arc<dyn Poster>>,
    ) -> Result<Self, ConfigError> {
        let deliveries = Deliveries::default();
        let mut sinks = Vec::new();
        for (i, w) in cfg.webhooks.iter().enumerate() {
            let key = format!("webhooks[{i}]");
            let secret = w.secret_file.as_deref().map(|f| read_secret(layout, &key, f)).transpose()?;
            let Some(poster) = poster.clone() else {
                return Err(invalid(
                    layout,
                    format!("{key}: webhooks need an HTTP client, which only the `mailroom` binary gives"),
                ));
            };
            let client = webhook::Webhook::new(poster, w.url.clone(), secret, w.retry.timeout);
            let mut st = status::SinkStatus::new(w.sink(), "webhook", redacted_url(&w.url), w.events.names());
            st.pools = w.events.pools.iter().cloned().collect();
            deliveries.insert(st);
            sinks.push(Sink {
                id: w.sink(),
                target: Target::Webhook(client),
                events: w.events.clone(),
                retry: w.retry,
            });
        }
        for h in &cfg.hooks {
            let target = Target::Hook(hook::Hook::new(&h.run, layout.root(), h.retry.timeout));
            let mut st = status::SinkStatus::new(h.sink(), "hook", h.run[0].clone(), h.events.names());
            st.pools = h.events.pools.iter().cloned().collect();
            deliveries.insert(st);
            sinks.push(Sink { id: h.sink(), target, events: h.events.clone(), retry: h.retry });
        }
        Ok(Self { sinks, deliveries })
    }

    /// No webhook and no hook is configured.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    pub fn deliveries(&self) -> Deliveries {
        self.deliveries.clone()
    }

    /// Starts one deliverer per sink on the current tokio runtime, talking to the broker
    /// through `handle`. A sink with no journaled position (new in the configuration) starts
    /// after record `new_after`: the broker passes the last record before its start, so a new
    /// sink gets everything from this start on, and no history before it.
    pub fn start(
        self,
        handle: Handle,
        fs: Arc<dyn Fs>,
        layout: &Layout,
        cfg: Arc<Config>,
        new_after: u64,
    ) -> Running {
        let cx = Context {
            handle,
            new_after,
            fs,
            journal_dir: layout.journal_dir(),
            journal_every: cfg.broker.delivery_journal_every,
            cfg,
            deliveries: self.deliveries,
        };
        Running(self.sinks.into_iter().map(|s| tokio::spawn(s.run(cx.clone()))).collect())
    }
}

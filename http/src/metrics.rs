//! `GET /metrics`: the Prometheus exposition (OpenMetrics text, from `prometheus-client`). Every
//! name starts `mailroom_`.
//!
//! Three sources: counters and histograms the [observer](crate::observer) feeds from the record
//! stream (transitions, lease expiries, quarantines, submit→claim and claim→finish); gauges
//! computed at scrape time from a snapshot (tasks by status and pool, queue depth, claims held per
//! agent); and the loop's own figures (`Command::Stats`: journal commit and pass durations, inbox
//! backlog, and the filesystem operations its `Fs` counted: `mailroom_fs_operations{op}`,
//! `mailroom_fs_written_bytes{what}`, `mailroom_fs_read_bytes`), which the loop counts and this
//! module only formats. The footprint per area (files and bytes of `inbox/cur`, the journal, the
//! archive, quarantine, ...) and the filesystem's free space and inodes are counted from the disk
//! at scrape time (`mailroom::footprint::measure`).

use crate::AppState;
use crate::routes::ApiError;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use mailroom::engine::commands::{Histogram as LoopHistogram, Stats, View};
use mailroom::footprint::Footprint;
use mailroom::journal::Place;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use runtime_layout::FsCounts;
use std::collections::BTreeMap;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a scrape reads besides the stream's counters.
#[derive(Debug)]
struct AtScrape {
    /// (status, pool) → tasks.
    tasks: BTreeMap<(String, String), i64>,
    /// queue dir (`queues/p`, `mailboxes/a`) → queued files.
    queued: BTreeMap<String, i64>,
    held: BTreeMap<String, i64>,
    stats: Stats,
    quarantined: i64,
    footprint: Footprint,
    /// The local socket's counters as read at the scrape, when the broker runs one here.
    socket: Option<SocketNow>,
}

/// [`mailroom::socket::Counters`], read once.
#[derive(Debug)]
struct SocketNow {
    open: u64,
    awaiting: u64,
    accepted: u64,
    turned_away: u64,
    requests: [(&'static str, u64); 5],
}

impl SocketNow {
    fn read(c: &mailroom::socket::Counters) -> Self {
        let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        Self {
            open: get(&c.open),
            awaiting: get(&c.awaiting),
            accepted: get(&c.accepted),
            turned_away: get(&c.turned_away),
            requests: [
                ("accepted", get(&c.accepted_requests)),
                ("refused", get(&c.refused_requests)),
                ("offered", get(&c.offered_requests)),
                ("claimed", get(&c.claimed_requests)),
                ("nothing", get(&c.nothing_requests)),
            ],
        }
    }

    fn encode(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        enc.encode_descriptor(
            "mailroom_socket_connections",
            "Connections to broker/broker.sock open now",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&(self.open as i64))?;
        enc.encode_descriptor(
            "mailroom_socket_awaiting",
            "Agents waiting now on broker/broker.sock to be named a task file",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&(self.awaiting as i64))?;
        enc.encode_descriptor(
            "mailroom_socket_accepted_connections",
            "Connections to broker/broker.sock accepted since the broker started",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, u64>(&self.accepted, None)?;
        enc.encode_descriptor(
            "mailroom_socket_turned_away_connections",
            "Connections to broker/broker.sock closed at once because the most it serves were open",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, u64>(&self.turned_away, None)?;
        let mut m = enc.encode_descriptor(
            "mailroom_socket_requests",
            "Messages answered on broker/broker.sock, by verdict (accepted, refused)",
            None,
            MetricType::Counter,
        )?;
        for (verdict, n) in &self.requests {
            m.encode_family(&[("verdict", *verdict)])?.encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }
        Ok(())
    }
}

fn encode_loop_histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &LoopHistogram,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(h.sum_secs, h.count, &h.cumulative(), None)
}

/// The broker process's filesystem operations on its root, as the `Fs` counted them.
fn encode_fs(enc: &mut DescriptorEncoder, fs: &FsCounts) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(
        "mailroom_fs_operations",
        "Filesystem operations the broker process performed on its root since it started, by kind \
         (create, rewrite, rename, unlink, fsync_file, fsync_dir, append, read, list, stat, mkdir, touch)",
        None,
        MetricType::Counter,
    )?;
    for (op, n) in fs.operations() {
        m.encode_family(&[("op", op)])?.encode_counter::<NoLabelSet, _, u64>(&n, None)?;
    }
    let mut m = enc.encode_descriptor(
        "mailroom_fs_written",
        "Bytes the broker process wrote on its root: into files it created or rewrote in place \
         (created) and appended to the journal (appended)",
        Some(&Unit::Bytes),
        MetricType::Counter,
    )?;
    for (what, n) in [("created", fs.created_bytes), ("appended", fs.appended_bytes)] {
        m.encode_family(&[("what", what)])?.encode_counter::<NoLabelSet, _, u64>(&n, None)?;
    }
    enc.encode_descriptor(
        "mailroom_fs_read",
        "Bytes the broker process read from files of its root",
        Some(&Unit::Bytes),
        MetricType::Counter,
    )?
    .encode_counter::<NoLabelSet, _, u64>(&fs.read_bytes, None)
}

impl Collector for AtScrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        {
            let mut m = enc.encode_descriptor(
                "mailroom_tasks",
                "Tasks the broker holds (live, and the recently finished it remembers), by status and pool",
                None,
                MetricType::Gauge,
            )?;
            for ((status, pool), n) in &self.tasks {
                m.encode_family(&[("status", status.as_str()), ("pool", pool.as_str())])?.encode_gauge(n)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "mailroom_queue_depth",
                "Task files waiting to be claimed, per pool or agent mailbox",
                None,
                MetricType::Gauge,
            )?;
            for (dir, n) in &self.queued {
                m.encode_family(&[("queue", dir.as_str())])?.encode_gauge(n)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "mailroom_held_claims",
                "Claims each agent holds",
                None,
                MetricType::Gauge,
            )?;
            for (agent, n) in &self.held {
                m.encode_family(&[("agent", agent.as_str())])?.encode_gauge(n)?;
            }
        }
        enc.encode_descriptor(
            "mailroom_inbox_backlog",
            "Messages waiting in broker/inbox/new as the loop last listed them (a backlog counts down as it is taken)",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&(self.stats.inbox_waiting as i64))?;
        enc.encode_descriptor(
            "mailroom_quarantined_files",
            "Entries in broker/quarantine",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&self.quarantined)?;
        {
            let f = &self.footprint;
            let mut m = enc.encode_descriptor(
                "mailroom_footprint_files",
                "Files under agent_comms/ by area (inbox_kept, journal_live, archive, quarantine, ...)",
                None,
                MetricType::Gauge,
            )?;
            for (area, a) in f.areas() {
                m.encode_family(&[("area", area)])?.encode_gauge(&(a.files as i64))?;
            }
            let mut m = enc.encode_descriptor(
                "mailroom_footprint",
                "Bytes under agent_comms/ by area",
                Some(&Unit::Bytes),
                MetricType::Gauge,
            )?;
            for (area, a) in f.areas() {
                m.encode_family(&[("area", area)])?.encode_gauge(&(a.bytes as i64))?;
            }
            if let Some(space) = f.space {
                enc.encode_descriptor(
                    "mailroom_filesystem_free",
                    "Space an unprivileged writer can still use on the root's filesystem",
                    Some(&Unit::Bytes),
                    MetricType::Gauge,
                )?
                .encode_gauge(&(space.free_bytes as i64))?;
                enc.encode_descriptor(
                    "mailroom_filesystem_free_inodes",
                    "Inodes an unprivileged writer can still create on the root's filesystem",
                    None,
                    MetricType::Gauge,
                )?
                .encode_gauge(&(space.free_inodes as i64))?;
            }
        }
        enc.encode_descriptor(
            "mailroom_journal_records",
            "Journal records committed since the broker started",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, u64>(&self.stats.records, None)?;
        enc.encode_descriptor(
            "mailroom_messages",
            "Inbox messages handled since the broker started",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, u64>(&self.stats.messages, None)?;
        if let Some(fs) = &self.stats.fs {
            encode_fs(&mut enc, fs)?;
        }
        if let Some(socket) = &self.socket {
            socket.encode(&mut enc)?;
        }
        encode_loop_histogram(
            &mut enc,
            "mailroom_journal_commit",
            "Journal group commits (append and fsync) that wrote records",
            &self.stats.commits,
        )?;
        encode_loop_histogram(
            &mut enc,
            "mailroom_pass_duration",
            "Passes of the broker's loop",
            &self.stats.passes,
        )
    }
}

/// The exposition text of one scrape.
pub fn render(
    state: &AppState,
    view: &View,
    stats: Stats,
    quarantined: i64,
    footprint: Footprint,
) -> Result<String, std::fmt::Error> {
    let c = &state.observer.counters;
    let mut reg = Registry::default();
    reg.register("mailroom_transitions", "Journaled records by operation and pool", c.transitions.clone());
    reg.register(
        "mailroom_lease_expiries",
        "Claims taken back because their lease ran out, by pool",
        c.lease_expiries.clone(),
    );
    reg.register(
        "mailroom_quarantines",
        "Inputs refused into quarantine, by kind and field",
        c.quarantines.clone(),
    );
    reg.register_with_unit(
        "mailroom_submit_to_claim",
        "From a task's queueing (submission or redispatch) to its claim",
        Unit::Seconds,
        c.submit_to_claim.clone(),
    );
    reg.register_with_unit(
        "mailroom_claim_to_finish",
        "From a claim to its completion or failure",
        Unit::Seconds,
        c.claim_to_finish.clone(),
    );
    let mut at = AtScrape {
        tasks: BTreeMap::new(),
        queued: BTreeMap::new(),
        held: BTreeMap::new(),
        stats,
        quarantined,
        footprint,
        socket: state.socket.as_deref().map(SocketNow::read),
    };
    for t in &view.tasks {
        let key = (t.task.status.as_str().to_string(), t.pool.clone().unwrap_or_default());
        *at.tasks.entry(key).or_default() += 1;
        if let Place::Held { agent, .. } = &t.place {
            *at.held.entry(agent.clone()).or_default() += 1;
        }
    }
    for a in &view.agents {
        at.held.entry(a.name.clone()).or_default();
    }
    for q in &view.queues {
        at.queued.insert(q.dir.clone(), q.queued as i64);
    }
    reg.register_collector(Box::new(at));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(out)
}

pub async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    let view = state.handle.snapshot().await?;
    let stats = state.handle.stats().await?;
    let (fs, layout) = (state.fs.clone(), state.layout.clone());
    let (quarantined, footprint) = tokio::task::spawn_blocking(move || {
        let quarantined = crate::quarantine::entry_names(fs.as_ref(), &layout).map(|n| n.len() as i64)?;
        let footprint = mailroom::footprint::measure(fs.as_ref(), &layout)?;
        Ok::<_, runtime_layout::FsError>((quarantined, footprint))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let text = render(&state, &view, stats, quarantined, footprint).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

//! Keeping the broker inside its root *and* serving, whatever replaces a directory of its tree.
//!
//! The broker works on a [`RootFs`](runtime_layout::RootFs): every path is resolved beneath the
//! root without following a link, so a directory replaced by a symlink (or a file) is never
//! followed; the operation is refused with a containment error naming it
//! ([`FsError::NotBeneath`]). What the broker does then:
//!
//! 1. If the journal is concerned (the journal directory or a directory above it is not a real
//!    directory, or the segment being written is no longer the file at its path), it stops: exit
//!    code 8 and a message saying what to put back ([`TreeError::Journal`]). The journal is its
//!    only record of what it acknowledged; it never writes one it cannot trust, nor starts afresh
//!    beside the real one.
//! 2. Otherwise it *displaces* what stood in the way (the entry itself is renamed
//!    `<name>.displaced-<time>`, never followed), checks every directory it owns the same way
//!    ([`Layout::ensure_dirs`]), logs an error naming each, and
//! 3. rebuilds its state from the journal and reconciles the tree, as after a crash: a pass that
//!    failed half way never acted on records that were not durable, and reconcile finishes the
//!    moves of a commit the failure interrupted.
//!
//! At start the same check runs before anything is read ([`prepare`]), and again with every
//! inbox prune ([`check`]), for directories that no operation of the broker touches.

use crate::config::Config;
use crate::engine::{Engine, EngineError};
use crate::journal::JournalError;
use crate::run::RunError;
use runtime_layout::{Displaced, Fs, FsError, Layout, TreeError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Openings retried at once after a repair, before waiting a tick between attempts (a link put
/// back as fast as it is moved aside costs the broker a tick per attempt, not a busy loop).
const QUICK_RETRIES: u32 = 8;

/// The containment refusal that failed an operation, if that is what failed it: a link or a
/// file where a directory belongs, a replaced journal segment, or a directory of the way missing
/// (removed, or caught between an agent's rename and its symlink).
pub fn containment(e: &EngineError) -> Option<&FsError> {
    match e {
        EngineError::Fs(f) | EngineError::Journal(JournalError::Fs(f))
            if matches!(f, FsError::NotBeneath { .. } | FsError::Replaced { .. }) || missing_dir(f) =>
        {
            Some(f)
        }
        _ => None,
    }
}

/// Did resolving the directory that holds the path fail because a directory on the way is gone?
fn missing_dir(e: &FsError) -> bool {
    matches!(e, FsError::Io { op: "resolve", .. }) && e.is_not_found()
}

/// A containment refusal that did not touch the journal (a board or an inbox directory, say).
pub fn spares_journal(layout: &Layout, e: &EngineError) -> bool {
    matches!(e, EngineError::Fs(f) if matches!(f, FsError::NotBeneath { .. })
        && f.culprit().is_some_and(|c| !layout.holds_journal(c)))
}

fn log_displaced(layout: &Layout, d: &Displaced) {
    tracing::error!(
        path = %layout.rel(&d.path),
        kind = %d.kind,
        moved_to = %layout.rel(&d.to),
        "a {} stood where the broker's directory belongs: moved aside (never followed) and a directory made in its place",
        d.kind
    );
}

/// Before the broker (or an import) reads anything: makes every directory it owns a real
/// directory beneath the root (a missing one created, an impostor displaced, the journal's
/// refused), then loads the configuration and does the same for the ingest directories.
pub fn prepare(fs: &dyn Fs, layout: &Layout) -> Result<Config, RunError> {
    let now = runtime_layout::now();
    for d in layout.ensure_dirs(fs, &[], now)? {
        log_displaced(layout, &d);
    }
    let cfg = Config::load(fs, layout)?;
    for d in layout.ensure_dirs(fs, &cfg.ingest_dirs(layout), now)? {
        log_displaced(layout, &d);
    }
    Ok(cfg)
}

/// Repairs the tree after the containment refusal `e`; [`TreeError::Journal`] when the journal
/// is concerned.
pub fn repair(fs: &dyn Fs, layout: &Layout, cfg: &Config, e: &FsError) -> Result<(), TreeError> {
    if let FsError::Replaced { path } = e
        && layout.holds_journal(path)
    {
        return Err(TreeError::Journal {
            path: path.clone(),
            what: "the journal segment being written is no longer the file at this path (it, or the \
                   journal directory, was replaced or moved away)"
                .into(),
        });
    }
    if let FsError::Io { path, .. } = e
        && missing_dir(e)
        && layout.holds_journal(path)
    {
        // Made again empty, the journal would be a broker that forgot everything it acknowledged.
        return Err(TreeError::Journal {
            path: path.clone(),
            what: "a directory on its way is missing".into(),
        });
    }
    // Someone still swapping directories while the broker repairs (a link put where a directory
    // was just made, a directory moved away again) makes a step fail the same way: look again,
    // a bounded number of times, before giving up.
    let mut tries = 0;
    loop {
        match repair_once(fs, layout, cfg, e) {
            Err(TreeError::Fs(f)) if tries < REPAIR_TRIES && raced(&f) => {
                tracing::warn!(error = %f, "the tree changed while it was repaired: looking again");
                tries += 1;
            }
            other => return other,
        }
    }
}

/// How many times a repair looks again at a tree that keeps changing under it.
const REPAIR_TRIES: u32 = 10;

/// An error that a concurrent change of the tree explains.
fn raced(e: &FsError) -> bool {
    e.is_containment() || e.is_already_exists() || e.is_not_found()
}

fn repair_once(fs: &dyn Fs, layout: &Layout, cfg: &Config, e: &FsError) -> Result<(), TreeError> {
    let now = runtime_layout::now();
    if let Some(culprit) = e.culprit()
        && let Some(d) = layout.displace(fs, culprit, now)?
    {
        log_displaced(layout, &d);
    }
    for d in layout.ensure_dirs(fs, &cfg.ingest_dirs(layout), now)? {
        log_displaced(layout, &d);
    }
    Ok(())
}

/// The periodic look at the tree (with the inbox prune): every owned directory checked as at
/// start, for the ones no operation of the broker touches (agents write `broker/inbox/tmp/`, the
/// broker never reads it). Returns whether something was moved aside (the caller rebuilds its
/// state, as after a refused operation).
pub fn check(fs: &dyn Fs, layout: &Layout, cfg: &Config) -> Result<bool, TreeError> {
    let moved = layout.ensure_dirs(fs, &cfg.ingest_dirs(layout), runtime_layout::now())?;
    for d in &moved {
        log_displaced(layout, d);
    }
    Ok(!moved.is_empty())
}

/// Opens the engine (replay, then reconcile), repairing the tree and trying again whenever a
/// containment refusal gets in the way. `None` when `shutdown` completes first.
pub async fn open_engine(
    fs: &Arc<dyn Fs>,
    layout: &Layout,
    cfg: &Config,
    shutdown: &mut Pin<&mut impl Future<Output = ()>>,
) -> Option<Result<Engine, RunError>> {
    open_engine_from(fs, layout, cfg, shutdown).await.map(|r| r.map(|(engine, _)| engine))
}

/// [`open_engine`], also saying the sequence number of the last record replayed, before
/// reconcile journaled anything (where an outbox sink configured since the last run starts).
pub async fn open_engine_from(
    fs: &Arc<dyn Fs>,
    layout: &Layout,
    cfg: &Config,
    shutdown: &mut Pin<&mut impl Future<Output = ()>>,
) -> Option<Result<(Engine, u64), RunError>> {
    let tick = Duration::from_millis(cfg.broker.tick_ms);
    let mut attempts = 0u32;
    loop {
        let opened = Engine::open(fs.clone(), layout.clone(), cfg.clone()).and_then(|mut e| {
            let replayed = e.next_seq() - 1;
            e.reconcile()?;
            Ok((e, replayed))
        });
        let e = match opened {
            Ok(opened) => return Some(Ok(opened)),
            Err(e) => e,
        };
        let Some(refusal) = containment(&e) else { return Some(Err(e.into())) };
        tracing::error!(error = %refusal, "starting: refused to go through a path that is not a real directory beneath the root");
        if let Err(t) = repair(fs.as_ref(), layout, cfg, refusal) {
            return Some(Err(t.into()));
        }
        attempts += 1;
        if attempts > QUICK_RETRIES {
            tokio::select! {
                biased;
                _ = shutdown.as_mut() => return None,
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }
}

/// After a pass failed with the containment refusal in `e`: repairs the tree and reopens the
/// engine from the journal. `Some(Err)` stops the broker (the journal is concerned); `None`:
/// shutdown was requested meanwhile.
pub async fn recover(
    fs: &Arc<dyn Fs>,
    layout: &Layout,
    cfg: &Config,
    e: &FsError,
    shutdown: &mut Pin<&mut impl Future<Output = ()>>,
) -> Option<Result<Engine, RunError>> {
    tracing::error!(error = %e, "refused to go through a path that is not a real directory beneath the root; \
        repairing the tree and rebuilding the state from the journal");
    if let Err(t) = repair(fs.as_ref(), layout, cfg, e) {
        return Some(Err(t.into()));
    }
    open_engine(fs, layout, cfg, shutdown).await
}

//! The broker's event loop. Watcher events (`wakeups.rs`) are only hints that something
//! arrived: each one wakes the loop, and says where the pass should look (and which messages
//! arrived in the inbox, when the events name them all). A pass at least once a tick looks
//! everywhere and lists the inbox, so a missed or overflowed event costs at most one tick of
//! latency, never a task. Commands from
//! in-process front ends (see [`crate::engine::commands`]) wake it too and are answered between
//! passes, and so are those of the [outbox](crate::outbox)'s deliverers, which the loop starts
//! (one task per webhook or hook) and stops with it.

use crate::config::Config;
use crate::engine::commands::{self, Command, Commands};
use crate::engine::{Engine, EngineError, Look};
use crate::outbox::{Deliveries, Outbox, Poster};
use crate::repair;
use crate::wakeups::Wakeups;
use runtime_layout::{BrokerLock, Fs, Layout, LockError, TreeError};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The journal's directory is not a real directory beneath the root, or the segment being
    /// written was replaced: the broker stops rather than write a journal it cannot trust.
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error("signal handlers: {0}")]
    Signal(std::io::Error),
}

/// Most commands answered in one go between two passes (one commit for all of them).
const COMMAND_BATCH: usize = 256;

/// The period of passes while retention has work left (archived segments to compress).
const HOUSEKEEPING_TICK: Duration = Duration::from_millis(20);

/// Takes the root's lock, rebuilds state, reconciles the tree, then serves until `shutdown`
/// completes. On shutdown the message in hand is finished, the journal flushed, the boards
/// written and the lock released.
pub async fn run(
    fs: Arc<dyn Fs>,
    layout: Layout,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    serve(fs, layout, shutdown, None).await
}

/// [`run`], also answering the commands of in-process front ends that hold the
/// [`Handle`](crate::engine::commands::Handle) of `commands`' channel.
///
/// `fs` should be a [`RootFs`](runtime_layout::RootFs) on the layout's root (as `mailroom run`
/// opens it): then nothing an agent does to the tree makes the broker read, move, write or
/// delete a file outside the root, and a directory of the tree replaced by a link or a file is
/// moved aside and made again while the broker keeps serving ([`crate::repair`]).
pub async fn serve(
    fs: Arc<dyn Fs>,
    layout: Layout,
    shutdown: impl Future<Output = ()>,
    commands: Option<Commands>,
) -> Result<(), RunError> {
    serve_with(fs, layout, shutdown, commands, None).await
}

/// [`serve`], with the HTTP client the outbox's webhooks POST through (the `mailroom` binary
/// gives one; without it, a configured webhook is a configuration error).
pub async fn serve_with(
    fs: Arc<dyn Fs>,
    layout: Layout,
    shutdown: impl Future<Output = ()>,
    commands: Option<Commands>,
    poster: Option<Arc<dyn Poster>>,
) -> Result<(), RunError> {
    // The lock is on the root directory: it must exist (a RootFs was opened on it already).
    fs.create_dir_all(layout.root()).map_err(EngineError::from)?;
    let lock = BrokerLock::acquire(fs.as_ref(), &layout)?;
    let cfg = repair::prepare(fs.as_ref(), &layout)?;
    if let Err(e) = lock.record_holder(fs.as_ref()) {
        tracing::warn!(error = %e, "cannot write who holds the lock into broker/broker.lock (the lock is held all the same)");
    }
    let outbox = Outbox::prepare(&cfg, &layout, poster)?;
    let tick = Duration::from_millis(cfg.broker.tick_ms);
    // The tree is looked at as often as processed messages expire (and at least once a minute):
    // retention works in directories no other operation may meet (`inbox/tmp/`, say).
    let check_every = Duration::from_secs(cfg.broker.inbox_retention_secs.clamp(1, 60));
    let started = Instant::now();
    let mut shutdown = std::pin::pin!(shutdown);
    // A sink configured since the last run starts after what was replayed: with what this start
    // journals.
    let (mut engine, outbox_start) = match repair::open_engine_from(&fs, &layout, &cfg, &mut shutdown).await {
        Some(opened) => opened?,
        None => return Ok(()),
    };
    tracing::info!(root = %layout.root().display(), elapsed_ms = started.elapsed().as_millis() as u64, "serving");

    let deliveries = outbox.deliveries();
    let mut commands = Inlets { external: commands, outbox: None };
    let _deliverers = (!outbox.is_empty()).then(|| {
        let (handle, rx) = commands::channel(64);
        commands.outbox = Some(rx);
        outbox.start(handle, fs.clone(), &layout, Arc::new(cfg.clone()), outbox_start)
    });

    let wakeups = Wakeups::new(fs.as_ref(), &layout, engine.config());
    let mut last_check = Instant::now();
    let mut arrived: Option<Command> = None;
    // Where the next pass looks: where events said something arrived, and everywhere (the inbox
    // listed) at least once a tick (a missed event costs at most that).
    let mut look = Look::EVERYWHERE;
    let mut looked_everywhere = Instant::now();
    let result = loop {
        let mut this = look.or(wakeups.pending(fs.as_ref()));
        if looked_everywhere.elapsed() >= tick {
            this = Look::EVERYWHERE;
        }
        if this == Look::EVERYWHERE {
            looked_everywhere = Instant::now();
        }
        look = Look::QUIET;
        engine.take(take_commands(&mut commands, &deliveries, arrived.take()));
        // What arrived while the pass read and handled joins its commit.
        let pass = engine.step_taking(this, || take_commands(&mut commands, &deliveries, None));
        let (more, housekeeping) = match pass {
            Ok(r) => (r.more, r.housekeeping),
            Err(e) if e.is_no_space() => {
                // Nothing is lost: what was acknowledged is in the journal, and messages stay in
                // the inbox until a journaled pass consumes them. So drop the in-memory state and
                // rebuild it from the journal, as a restart would, once writes succeed again.
                tracing::error!(error = %e, "out of space: accepting no new work until space returns");
                drop(engine);
                match reopen_when_space_returns(&fs, &layout, &cfg, &mut shutdown).await {
                    Some(Ok(e)) => {
                        tracing::info!("space is back: serving again");
                        engine = e;
                        look = Look::EVERYWHERE;
                        continue;
                    }
                    Some(Err(e)) => return Err(e),
                    None => {
                        drop(lock);
                        tracing::info!(
                            "stopped while out of space (the journal holds everything acknowledged)"
                        );
                        return Ok(());
                    }
                }
            }
            Err(e) if repair::containment(&e).is_some() => {
                let refusal = repair::containment(&e).expect("matched");
                let reopened = repair::recover(&fs, &layout, &cfg, refusal, &mut shutdown).await;
                drop(e);
                match reopened {
                    Some(Ok(e)) => {
                        tracing::info!("tree repaired and state rebuilt from the journal: serving again");
                        wakeups.refresh(fs.as_ref());
                        engine = e;
                        look = Look::EVERYWHERE;
                        continue;
                    }
                    Some(Err(e)) => return Err(e),
                    None => {
                        drop(lock);
                        tracing::info!(
                            "stopped while repairing the tree (the journal holds everything acknowledged)"
                        );
                        return Ok(());
                    }
                }
            }
            Err(e) => break Err(e),
        };
        if !more && last_check.elapsed() >= check_every {
            last_check = Instant::now();
            // The periodic look at the tree, for directories no operation of the broker touches.
            match repair::check(fs.as_ref(), &layout, &cfg) {
                Ok(false) => {}
                Ok(true) => {
                    drop(engine);
                    match repair::open_engine(&fs, &layout, &cfg, &mut shutdown).await {
                        Some(Ok(e)) => {
                            engine = e;
                            look = Look::EVERYWHERE;
                        }
                        Some(Err(e)) => return Err(e),
                        None => return Ok(()),
                    }
                }
                Err(e @ TreeError::Journal { .. }) => return Err(e.into()),
                Err(e) => tracing::warn!(error = %e, "cannot check the tree's directories"),
            }
            // Directories made since the start, or made again by a repair, are watched.
            wakeups.refresh(fs.as_ref());
        }
        // Let the front ends on this thread run between two passes, whatever comes next: the
        // answers this pass committed reach their connections now (a command waiting in the
        // channel would otherwise start the next pass at once, and its answers would wait for
        // that pass too), the requests that arrived meanwhile are read to join the next pass,
        // the HTTP surface answers under load, and the observer and event streams keep up with
        // the records. A shutdown request is looked at after that, so the last pass's answers
        // are written before the loop stops.
        tokio::task::yield_now().await;
        if more {
            tokio::select! {
                biased;
                _ = &mut shutdown => break Ok(()),
                _ = std::future::ready(()) => continue,
            }
        }
        // An agent waiting on the socket is answered by a pass at its deadline (or once a file
        // named to another agent may be named again).
        let offers_due = engine.wake_at();
        tokio::select! {
            biased;
            _ = &mut shutdown => break Ok(()),
            cmd = commands.next() => arrived = Some(cmd),
            seen = wakeups.arrived(fs.as_ref()) => look = look.or(seen),
            () = async {
                match offers_due {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            } => {}
            // Compression still to do: another pass soon (each does a bounded piece of it).
            // Otherwise the tick counts from the last pass that looked everywhere, not from the
            // last pass: one woken by a command or a claim lists nothing, and counting from it
            // could leave a file no event named waiting two ticks.
            _ = tokio::time::sleep_until(if housekeeping {
                tokio::time::Instant::now() + HOUSEKEEPING_TICK
            } else {
                tokio::time::Instant::from_std(looked_everywhere + tick)
            }) => {
                if !housekeeping {
                    look = Look::EVERYWHERE;
                }
            }
        }
    };
    let flushed = match journal_positions(&mut engine, &deliveries).and_then(|()| engine.flush()) {
        // The journal is flushed first; boards are derived and rewritten at the next start.
        Err(e) if repair::spares_journal(&layout, &e) => {
            tracing::error!(error = %e, "boards not written at shutdown (rewritten at the next start)");
            Ok(())
        }
        other => other,
    };
    drop(lock);
    match (result, flushed) {
        (Err(e), _) | (Ok(()), Err(e)) => Err(e.into()),
        (Ok(()), Ok(())) => {
            tracing::info!("stopped cleanly");
            Ok(())
        }
    }
}

/// Where commands come from: front ends' channel, and the outbox's deliverers' own. A channel
/// whose every handle is gone is dropped (no longer listened to).
struct Inlets {
    external: Option<Commands>,
    outbox: Option<Commands>,
}

impl Inlets {
    /// The next command from either channel; never, when neither has a sender left.
    async fn next(&mut self) -> Command {
        loop {
            let got = tokio::select! {
                c = recv(&mut self.external) => (c, true),
                c = recv(&mut self.outbox) => (c, false),
            };
            match got {
                (Some(c), _) => return c,
                (None, true) => self.external = None,
                (None, false) => self.outbox = None,
            }
        }
    }

    /// A command waiting now, if any.
    fn try_next(&mut self) -> Option<Command> {
        [&mut self.external, &mut self.outbox].into_iter().flatten().find_map(|rx| rx.try_recv().ok())
    }
}

/// The next command of a channel, or never when there is none.
async fn recv(rx: &mut Option<Commands>) -> Option<Command> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// `first` and whatever other commands are waiting (at most [`COMMAND_BATCH`]), for the engine
/// to take into a pass: their changes share its commit. The handle on the outbox's deliveries is
/// the loop's to give, here; everything else goes to the engine.
fn take_commands(commands: &mut Inlets, deliveries: &Deliveries, first: Option<Command>) -> Vec<Command> {
    let mut batch: Vec<Command> = Vec::new();
    let mut next = first.or_else(|| commands.try_next());
    while let Some(c) = next {
        match c {
            Command::Deliveries(reply) => {
                let _ = reply.send(deliveries.clone());
            }
            c => batch.push(c),
        }
        next = if batch.len() < COMMAND_BATCH { commands.try_next() } else { None };
    }
    batch
}

/// On a clean stop: journals the position each sink has reached since it last journaled one,
/// so that a restart delivers again only what was in flight.
fn journal_positions(engine: &mut Engine, deliveries: &Deliveries) -> Result<(), EngineError> {
    let batch: Vec<Command> = deliveries
        .unjournaled()
        .into_iter()
        .map(|(sink, through)| {
            let (reply, _) = tokio::sync::oneshot::channel();
            Command::Delivered { sink, through, reply }
        })
        .collect();
    if batch.is_empty() { Ok(()) } else { engine.serve(batch) }
}

/// Retries opening the engine (replay and reconcile) every second until it no longer runs out of
/// space; `None` when shutdown is requested meanwhile.
async fn reopen_when_space_returns(
    fs: &Arc<dyn Fs>,
    layout: &Layout,
    cfg: &Config,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<Result<Engine, RunError>> {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.as_mut() => return None,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let reopened = Engine::open(fs.clone(), layout.clone(), cfg.clone()).and_then(|mut e| {
            e.reconcile()?;
            Ok(e)
        });
        match reopened {
            Ok(e) => return Some(Ok(e)),
            Err(e) if e.is_no_space() => tracing::debug!(error = %e, "still out of space"),
            Err(e) => match repair::containment(&e) {
                Some(refusal) => return repair::recover(fs, layout, cfg, refusal, shutdown).await,
                None => return Some(Err(e.into())),
            },
        }
    }
}

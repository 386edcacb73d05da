//! `mailroom run`: the broker on a tokio runtime with its HTTP surface beside it on the same
//! runtime, its local socket (`mailroom::socket`) on a thread of its own, stopped cleanly by
//! SIGINT or SIGTERM.
//!
//! The HTTP surface holds only a command-channel handle. It waits for the broker to serve before
//! it binds, so a root locked by another broker reports that (exit 4), not a busy port. If it
//! cannot start on an address that was asked for, the broker stops too (exit 6): an operator who
//! asked for a dashboard must not be left without one unknowingly.

use super::exit::{self, Failure};
use mailroom::config::Config;
use mailroom::engine::commands;
use mailroom::run;
use runtime_layout::{Fs, Layout};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// Requests waiting for the loop before a front end's `send` waits.
const COMMAND_DEPTH: usize = 1024;

pub fn run_broker(fs: Arc<dyn Fs>, layout: Layout, http: Option<String>) -> Result<(), Failure> {
    // The configuration is read again by the broker; here only for the HTTP settings (a bad file
    // is reported before anything starts, with the same exit code the broker would use).
    // The tree is made (and repaired) by the broker once it holds the lock.
    let cfg = Config::load(fs.as_ref(), &layout).map_err(|e| Failure::new(exit::INVALID, e))?;
    let (listen, chosen) = match &http {
        Some(h) => (h.as_str(), true),
        None => cfg.http.listen(),
    };
    let listen = mailroom_http::Listen::parse(listen).map_err(|e| Failure::new(exit::USAGE, e))?;
    let (handle, rx) = commands::channel(COMMAND_DEPTH);
    // The inode of the local socket this broker bound (0: none), removed at its stop.
    let bound = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // What the socket served, for the HTTP surface's metrics.
    let socket_counters = Arc::new(mailroom::socket::Counters::default());
    // The local socket, one more front end on the channel, on a thread of its own: reading and
    // parsing requests and writing answers never take the broker's thread (on its thread they
    // were about a sixth of it). It stops when the broker's end of the channel is gone.
    let local = {
        let (fs, layout, handle, bound) = (fs.clone(), layout.clone(), handle.clone(), bound.clone());
        let counters = socket_counters.clone();
        let max = cfg.broker.max_message_bytes;
        std::thread::Builder::new().name("local-socket".into()).spawn(move || {
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(mailroom::socket::serve(fs, layout, handle, max, bound, counters)),
                Err(e) => tracing::warn!(error = %e, "no local socket: clients deliver files"),
            }
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::ERROR, e))?;
    let http_failed: Rc<RefCell<Option<mailroom_http::HttpError>>> = Rc::default();
    let result = rt.block_on(async {
        // Handlers are installed before the broker starts serving, so a SIGTERM that arrives at
        // any point after that is a clean shutdown, never the default (killing) disposition.
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).map_err(run::RunError::Signal)?;
        let mut term = signal(SignalKind::terminate()).map_err(run::RunError::Signal)?;
        let (http_down, http_down_rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            tokio::select! {
                _ = int.recv() => tracing::info!("signal received: finishing the message in hand"),
                _ = term.recv() => tracing::info!("signal received: finishing the message in hand"),
                Ok(()) = http_down_rx => tracing::error!("the http surface could not start: stopping"),
            }
        };
        // The cluster link, when `[cluster]` is configured: one more front end on the channel.
        let link = {
            let (cluster, lease, handle) = (cfg.cluster.clone(), cfg.broker.lease_secs, handle.clone());
            async move {
                if let Some(c) = cluster {
                    mailroom_cluster::run(c, lease, handle).await;
                }
                std::future::pending::<()>().await
            }
        };
        // `GET /api/cluster` reads the cluster-wide board through the cluster crate: the HTTP
        // surface itself does not speak to NATS.
        let cluster = cfg.cluster.clone().map(|c| -> mailroom_http::cluster::ClusterReader {
            std::sync::Arc::new(move || {
                let c = c.clone();
                Box::pin(async move {
                    let rows = mailroom_cluster::board(&c).await.map_err(|e| e.to_string())?;
                    serde_json::to_value(rows).map_err(|e| e.to_string())
                })
            })
        });
        let opts = mailroom_http::Options { listen, chosen, cluster, socket: Some(socket_counters) };
        let failed = http_failed.clone();
        let (hfs, hlayout) = (fs.clone(), layout.clone());
        let front = async move {
            if let Err(e) = mailroom_http::serve(hfs, hlayout, cfg, opts, handle).await {
                *failed.borrow_mut() = Some(e);
                let _ = http_down.send(());
            }
            std::future::pending::<()>().await
        };
        // The webhooks' HTTP client: the broker library has none of its own.
        let poster: Option<std::sync::Arc<dyn mailroom::outbox::Poster>> =
            match mailroom_http::poster::WebhookClient::new() {
                Ok(c) => Some(std::sync::Arc::new(c)),
                Err(e) => {
                    tracing::warn!(error = %e, "no HTTP client for webhooks");
                    None
                }
            };
        tokio::select! {
            r = run::serve_with(fs.clone(), layout.clone(), shutdown, Some(rx), poster) => r,
            () = front => unreachable!("the http front end never returns"),
            () = link => unreachable!("the cluster link never returns"),
        }
    });
    // The broker's end of the channel is gone: the socket's thread stops.
    if let Ok(t) = local {
        let _ = t.join();
    }
    // A broker refused the root's lock never wrote the address: the file is the other's.
    if !matches!(result, Err(run::RunError::Locked(_))) {
        if let Err(e) = mailroom_http::forget_addr(fs.as_ref(), &layout) {
            tracing::warn!(error = %e, "could not remove broker/http.addr");
        }
        mailroom::socket::forget(fs.as_ref(), &layout, &bound);
    }
    if let Some(e) = http_failed.borrow_mut().take() {
        return Err(Failure::new(exit::INVALID, e));
    }
    result.map_err(failure)
}

/// The exit code and message of a broker that stopped (or never started).
pub fn failure(e: run::RunError) -> Failure {
    match e {
        run::RunError::Locked(e) => Failure::new(exit::LOCKED, e),
        run::RunError::Config(e) => Failure::new(exit::INVALID, e),
        run::RunError::Engine(e) => Failure::new(exit::FATAL_IO, format!("broker stopped: {e}")),
        run::RunError::Tree(e) => Failure::new(exit::FATAL_IO, format!("broker stopped: {e}")),
        run::RunError::Signal(e) => Failure::new(exit::ERROR, format!("installing signal handlers: {e}")),
    }
}

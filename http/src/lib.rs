//! The HTTP surface of a running broker: a JSON API (documented in `openapi.json`), a Server-Sent
//! Events stream of every journaled transition, Prometheus metrics and a live dashboard, on the
//! broker's own tokio runtime.
//!
//! It is a front end like any other (see `mailroom::engine::commands`): it never writes a board
//! nor moves a task file. Reads come from [`Handle::snapshot`], from the journal (read-only, off
//! the runtime thread) and from listings of the tree; changes go through the command channel, so
//! they take the same validation, journal and state machine as messages in the inbox. The only
//! files it writes are its own: the token (created once, mode 0600) and `broker/http.addr`.
//!
//! Parts: [`auth`] (the token, who may do what), [`routes`] (the router and its route table,
//! checked against the OpenAPI document), [`tasks`], [`ops`], [`quarantine`] and [`deliveries`]
//! (the API), [`events`] (the event stream and its resume from the journal), [`observer`] (rates,
//! latencies and series computed from the committed-record stream), [`metrics`] (the Prometheus
//! exposition) and [`dashboard`] (the embedded page).

pub mod auth;
pub mod cluster;
pub mod dashboard;
pub mod deliveries;
pub mod events;
pub mod metrics;
pub mod observer;
pub mod ops;
pub mod poster;
pub mod quarantine;
pub mod routes;
pub mod tasks;

use mailroom::config::Config;
use mailroom::engine::commands::{Handle, Stopped};
use observer::Observer;
use runtime_layout::{Fs, FsError, Layout};
use std::net::SocketAddr;
use std::sync::Arc;

/// Why the HTTP surface cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("http listen `{0}`: must be ADDR:PORT (e.g. 127.0.0.1:7878) or `off`")]
    BadListen(String),
    #[error(
        "http listen {0}: listening beyond loopback needs a token chosen by the operator \
         (set [http] token_file in mailroom.toml)"
    )]
    OpenWithoutToken(SocketAddr),
    #[error("http token {}: {why}", path.display())]
    Token { path: std::path::PathBuf, why: String },
    #[error("http listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("http: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// Where to listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Off,
    At(SocketAddr),
}

impl Listen {
    /// `off`, or `ADDR:PORT` (`127.0.0.1:0` picks a free port, reported in `broker/http.addr`).
    pub fn parse(s: &str) -> Result<Self, HttpError> {
        if s.trim().eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        s.trim().parse().map(Self::At).map_err(|_| HttpError::BadListen(s.to_string()))
    }
}

/// What every handler reads: the broker's handle, the tree, the configuration, the observer.
#[derive(Clone)]
pub struct AppState {
    pub handle: Handle,
    pub fs: Arc<dyn Fs>,
    pub layout: Layout,
    pub cfg: Arc<Config>,
    pub token: Arc<auth::Token>,
    /// Reads need the token too (the listener is reachable beyond loopback).
    pub reads_need_token: bool,
    pub observer: Arc<Observer>,
    /// What the webhooks and hooks did (kept current by the broker's outbox).
    pub deliveries: mailroom::outbox::Deliveries,
    /// Reads the cluster-wide board (`GET /api/cluster`), on a cluster node.
    pub cluster: Option<cluster::ClusterReader>,
    /// What the broker's local socket served, when it runs beside this surface (for metrics).
    pub socket: Option<Arc<mailroom::socket::Counters>>,
}

/// How the broker's HTTP surface was set up.
pub struct Options {
    pub listen: Listen,
    /// `listen` was chosen (command line or `mailroom.toml`) rather than defaulted: failing to
    /// bind it is an error; failing to bind the default only a warning (the broker's job comes
    /// first, and a second broker on another root must not be refused for a busy port).
    pub chosen: bool,
    /// The cluster-wide board's reader, on a cluster node.
    pub cluster: Option<cluster::ClusterReader>,
    /// What the broker's local socket serves (its metrics), when the same process runs one.
    pub socket: Option<Arc<mailroom::socket::Counters>>,
}

/// Serves until the broker stops answering (or forever: drop the future to stop). Waits for the
/// broker to serve first, so a broker that cannot start (its root locked by another) reports that
/// rather than a busy port. Returns an error only when the surface cannot start.
pub async fn serve(
    fs: Arc<dyn Fs>,
    layout: Layout,
    cfg: Config,
    opts: Options,
    handle: Handle,
) -> Result<(), HttpError> {
    let Listen::At(addr) = opts.listen else {
        tracing::info!("http surface off");
        return Ok(());
    };
    if !addr.ip().is_loopback() && cfg.http.token_file.is_none() {
        return Err(HttpError::OpenWithoutToken(addr));
    }
    if handle.snapshot().await.is_err() {
        return Ok(()); // the broker did not start
    }
    let token = Arc::new(auth::Token::load_or_create(fs.as_ref(), &layout, &cfg)?);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(source) if !opts.chosen => {
            tracing::warn!(%addr, error = %source, "http surface not started: the default address is busy (set --http or [http] listen)");
            return Ok(());
        }
        Err(source) => return Err(HttpError::Bind { addr, source }),
    };
    let bound = listener.local_addr().map_err(HttpError::Serve)?;
    let observer = Observer::start(handle.clone(), fs.clone(), layout.clone(), cfg.clone()).await;
    let deliveries = deliveries::handle_of(&handle).await;
    let state = AppState {
        handle,
        fs: fs.clone(),
        layout: layout.clone(),
        cfg: Arc::new(cfg),
        token,
        reads_need_token: !bound.ip().is_loopback(),
        observer,
        deliveries,
        cluster: opts.cluster,
        socket: opts.socket,
    };
    let app = routes::router(state);
    write_addr(fs.as_ref(), &layout, bound)?;
    tracing::info!(addr = %bound, "http surface: dashboard at http://{bound}/");
    axum::serve(listener, app).await.map_err(HttpError::Serve)
}

/// Records where the surface listens, atomically, for scripts and tests (`127.0.0.1:0`).
fn write_addr(fs: &dyn Fs, layout: &Layout, addr: SocketAddr) -> Result<(), FsError> {
    let names = runtime_layout::NameSource::new();
    let text = format!("{addr}\n");
    runtime_layout::write_atomic(
        fs,
        &layout.http_addr_file(),
        text.as_bytes(),
        &names,
        runtime_layout::Durability::Never,
    )
}

/// Removes `broker/http.addr` (the broker stopped). A file already gone is fine.
pub fn forget_addr(fs: &dyn Fs, layout: &Layout) -> Result<(), FsError> {
    match fs.remove_file(&layout.http_addr_file()) {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// The broker stopped answering: a request that needed it gets 503.
impl From<Stopped> for routes::ApiError {
    fn from(_: Stopped) -> Self {
        routes::ApiError::unavailable()
    }
}

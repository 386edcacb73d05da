//! `mailroom board`: the central boards, filtered by status, pool, agent and type, once or
//! redrawn on every change (`--watch`, until SIGINT or SIGTERM). Changes are noticed by watching
//! `central_task_boards/` (the broker replaces a board by renaming a new file over it), with a
//! rescan every second in case an event is missed; a redraw happens only when what is shown
//! changed. With `--json`, each redraw is one JSON array on one line. With `--cluster`, the
//! cluster-wide board instead (`cluster_board.rs`).

use super::exit::{self, Failure, not_initialised};
use super::io::emit;
use mailroom::board::{self, Filter};
use mailroom::config::Config;
use mailroom::views::agents;
use protocol::{Status, Task};
use runtime_layout::{Board, DirWatch, Fs, Interest, Layout};
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::time::Duration;

pub struct Args {
    pub status: Option<String>,
    pub pool: Option<String>,
    pub agent: Option<String>,
    pub task_type: Option<String>,
    pub json: bool,
    pub watch: bool,
    pub cluster: bool,
}

pub fn board(fs: &dyn Fs, layout: &Layout, args: Args) -> Result<(), Failure> {
    if !layout.is_initialised(fs) {
        return Err(not_initialised(layout.root()));
    }
    let status = args
        .status
        .map(|s| s.parse::<Status>())
        .transpose()
        .map_err(|e| Failure::new(exit::USAGE, format!("--status: {}", e.rule)))?;
    let cfg = Config::load(fs, layout).map_err(|e| Failure::new(exit::INVALID, e))?;
    if args.cluster {
        return super::cluster_board::show(&cfg, status, args.pool, args.agent, args.json);
    }
    let filter = Filter { status, pool: args.pool, agent: args.agent, task_type: args.task_type };
    if args.watch {
        return watch(fs, layout, &filter, &cfg, args.json);
    }
    emit(&show(fs, layout, &filter, &cfg, args.json, true)?)
}

/// What one drawing prints. `once` is a single drawing (not `--watch`, whose redraws would
/// follow every tick of the agents' ages): pretty JSON, and the agents under an unfiltered board.
fn show(
    fs: &dyn Fs,
    layout: &Layout,
    filter: &Filter,
    cfg: &Config,
    json: bool,
    once: bool,
) -> Result<String, Failure> {
    let rows = board::read_filtered(fs, layout, filter, cfg).map_err(|e| Failure::new(exit::ERROR, e))?;
    Ok(if json {
        let v = Value::Array(rows.iter().map(|(b, t)| with_board(*b, t)).collect());
        let text = if once { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) };
        format!("{}\n", text.map_err(|e| Failure::new(exit::ERROR, e))?)
    } else {
        let mut text = board::render(&rows);
        // Unfiltered, the board ends with the agents and their presence.
        if once && *filter == Filter::default() {
            let now = runtime_layout::now();
            let list = agents::list(fs, layout, cfg, now).map_err(|e| Failure::new(exit::ERROR, e))?;
            if !list.is_empty() {
                text.push('\n');
                text.push_str(&agents::render(&list, now));
            }
        }
        text
    })
}

/// A task as `--json` prints it: its board, and what it waits for when that may never come.
fn with_board(b: Board, t: &Task) -> Value {
    let mut v = t.to_value();
    if let Value::Object(m) = &mut v {
        m.insert("board".into(), board::board_name(b).into());
        if let Some(n) = board::note(t) {
            m.insert("note".into(), n.into());
        }
    }
    v
}

fn watch(fs: &dyn Fs, layout: &Layout, filter: &Filter, cfg: &Config, json: bool) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::ERROR, e))?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let sig = |k| signal(k).map_err(|e| Failure::new(exit::ERROR, format!("signal handlers: {e}")));
        let (mut int, mut term) = (sig(SignalKind::interrupt())?, sig(SignalKind::terminate())?);
        // Boards are replaced by rename: their arrival in the directory wakes the redraw.
        // Without a watch (inotify limits), the rescan every second still redraws.
        // (The safe constructor: `DirWatch` owns its descriptor for its whole life.)
        #[allow(deprecated)]
        let watch = DirWatch::new()
            .and_then(|w| w.add(&layout.boards_dir(), Interest::Arrivals, 0).map(|_| w))
            .and_then(|w| tokio::io::unix::AsyncFd::with_interest(w, tokio::io::Interest::READABLE))
            .ok();
        let changed = || async {
            let Some(w) = &watch else { return std::future::pending().await };
            match w.readable().await {
                Ok(mut ready) => {
                    let _ = ready.get_inner().drain(fs);
                    ready.clear_ready();
                }
                Err(_) => std::future::pending().await,
            }
        };
        let tty = std::io::stdout().is_terminal() && !json;
        let mut last = String::new();
        loop {
            let shown = show(fs, layout, filter, cfg, json, false)?;
            if shown != last {
                let mut out = std::io::stdout().lock();
                let frame = if tty {
                    let now = runtime_layout::now();
                    format!("\x1b[2J\x1b[Hmailroom board  {now}  (Ctrl-C to quit)\n\n{shown}")
                } else {
                    shown.clone()
                };
                // A reader that went away (`| head`) ends the watch, quietly.
                if out.write_all(frame.as_bytes()).and_then(|()| out.flush()).is_err() {
                    return Ok(());
                }
                last = shown;
            }
            tokio::select! {
                _ = int.recv() => return Ok(()),
                _ = term.recv() => return Ok(()),
                _ = changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    })
}

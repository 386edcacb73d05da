//! The command line: one module per group of verbs. `mod.rs` declares the verbs and routes each
//! to its module; `exit.rs` maps errors to documented exit codes; `io.rs` reads input and prints.

mod agent;
mod answer;
mod bench;
mod board;
mod cluster_board;
pub mod exit;
mod gc;
mod import;
mod io;
mod mail;
mod producer;
mod quarantine;
mod serve;
mod status;
mod views;

use clap::{Parser, Subcommand};
use exit::Failure;
use runtime_layout::{Layout, Resolve, RootFs};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "mailroom", version, about = "A task broker for multi-agent systems on plain directories")]
pub struct Cli {
    /// Runtime root (default: $MAILROOM_ROOT, else ./runtime).
    #[arg(long, global = true, env = "MAILROOM_ROOT", default_value = "runtime")]
    pub root: PathBuf,
    /// Do not wait for the broker's answer to a message: return once it is delivered (and
    /// fsynced by this command). By default every message waits to be accepted or refused.
    #[arg(long, global = true)]
    pub no_wait: bool,
    /// How long to wait for the broker's answer, in seconds (then exit 10: no broker took it;
    /// the message waits in the inbox). With no broker running on the root, a second.
    #[arg(long, global = true, default_value_t = 30.0, value_name = "SECS")]
    pub answer_within: f64,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Create the runtime tree.
    Init,
    /// Run the broker until SIGINT or SIGTERM, with its HTTP surface (API, events, metrics,
    /// dashboard; docs/HTTP.md).
    Run {
        /// Where the HTTP surface listens: `ADDR:PORT` (`127.0.0.1:0` picks a free port, written
        /// to broker/http.addr) or `off`. Default: `[http] listen` of mailroom.toml, else
        /// 127.0.0.1:7878.
        #[arg(long, env = "MAILROOM_HTTP", value_name = "ADDR|off")]
        http: Option<String>,
    },
    /// Submit a task (a JSON task object, or a `{"kind":"submit","task":...}` message).
    Submit {
        /// File to read, or `-` for stdin.
        file: String,
    },
    /// Claim the next task for an agent; prints the task JSON with its `claim`.
    Claim {
        #[arg(long)]
        agent: String,
        /// Pools to claim from (default: every pool), besides the agent's own mailbox.
        #[arg(long = "pool")]
        pools: Vec<String>,
        /// Wait up to this many seconds for a task to arrive.
        #[arg(long)]
        wait: Option<f64>,
    },
    /// Renew the lease on a claim.
    Heartbeat {
        #[arg(long)]
        agent: String,
        #[arg(long)]
        claim: String,
    },
    /// Report a claimed task done.
    Complete {
        #[arg(long)]
        agent: String,
        #[arg(long)]
        claim: String,
        /// Result as JSON (or text) from a file, or `-` for stdin.
        #[arg(long)]
        result: Option<String>,
    },
    /// Report a claimed task failed.
    Fail {
        #[arg(long)]
        agent: String,
        #[arg(long)]
        claim: String,
        #[arg(long)]
        error: String,
        /// Dead-letter it now instead of retrying.
        #[arg(long)]
        no_retry: bool,
    },
    /// Give a claimed task back untouched.
    Release {
        #[arg(long)]
        agent: String,
        #[arg(long)]
        claim: String,
    },
    /// Cancel a task (a held claim is revoked).
    Cancel {
        task_id: String,
        /// Cancel a shared task cluster-wide, by compare-and-set on its record, wherever it is
        /// (`[cluster]` in mailroom.toml): the node holding it cancels its copy.
        #[arg(long)]
        cluster: bool,
    },
    /// Redrive a FAILED, BLOCKED or CANCELLED task.
    Retry {
        task_id: String,
        /// Retry a FAILED or CANCELLED shared task cluster-wide, by compare-and-set on its
        /// record (`[cluster]` in mailroom.toml): it goes back to the cluster's work queue once.
        #[arg(long)]
        cluster: bool,
    },
    /// Send mail from one agent to another, to every other agent (`--to ALL`) or to a group
    /// (`--to @name`, from `[groups]` of mailroom.toml); the body is JSON (or text) from a file or `-`.
    Send {
        #[arg(long)]
        from: String,
        /// An agent, `ALL`, or `@group`.
        #[arg(long)]
        to: String,
        #[arg(long)]
        subject: Option<String>,
        file: String,
    },
    /// Show the central boards (filtered), once or redrawn on every change.
    Board {
        #[arg(long)]
        status: Option<String>,
        /// Tasks whose type routes to this pool.
        #[arg(long)]
        pool: Option<String>,
        /// Tasks assigned to (or held by) this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Tasks of this `task_type`.
        #[arg(long = "type")]
        task_type: Option<String>,
        #[arg(long)]
        json: bool,
        /// Redraw on every change until interrupted (with --json: one JSON array per line).
        #[arg(long)]
        watch: bool,
        /// The cluster-wide board of shared tasks, read from the cluster (`[cluster]` in
        /// mailroom.toml) instead of this root's boards.
        #[arg(long, conflicts_with = "watch")]
        cluster: bool,
    },
    /// Is a broker running, and what waits where (exit 10 when no broker runs).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Quarantined input: list, show, requeue.
    Quarantine {
        #[command(subcommand)]
        cmd: QuarantineCmd,
    },
    /// An agent's mail and notices.
    Mail {
        #[command(subcommand)]
        cmd: MailCmd,
    },
    /// Show every journaled event of a task and where its file is now.
    Trace {
        task_id: String,
        #[arg(long)]
        json: bool,
        /// The task's cluster-wide history (every kept revision of its record), read from the
        /// cluster (`[cluster]` in mailroom.toml) instead of this root's journal.
        #[arg(long)]
        cluster: bool,
    },
    /// Print the JSON Schemas of the task and of every message kind.
    Schema,
    /// Migrate a legacy tree (boards of any shape, one-task files, mailbox messages) into the
    /// root. The broker must not be running; input files are never modified.
    Import {
        /// Files or directories (walked recursively; symlinks are never followed).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Show what would happen without changing the root.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Refuse tasks assigned to agents that have no mailbox here, instead of creating it.
        #[arg(long)]
        no_create_agents: bool,
    },
    /// Apply the retention rules to a stopped root: prune kept messages, compress and prune the
    /// journal archive (a running broker does this itself, a little per pass).
    Gc {
        /// Show what would be removed or compressed without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage agents.
    Agent {
        #[command(subcommand)]
        cmd: AgentCmd,
    },
    /// Benchmark the product end to end (docs/BENCHMARKS.md): runs `mailroom-bench` with these
    /// arguments (`mailroom bench --help` lists them), benchmarking this `mailroom`.
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

#[derive(Subcommand)]
pub enum AgentCmd {
    /// Create an agent's mailbox; with `--capability`, declare what it can do (replacing what it
    /// declared before).
    Add {
        name: String,
        /// A capability the agent holds (repeat for more): it may then claim pool tasks whose
        /// `required_capabilities` it covers.
        #[arg(long = "capability")]
        capabilities: Vec<String>,
    },
    /// List the agents: capabilities, claims held, last seen and state.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum QuarantineCmd {
    /// Every entry with its reason, oldest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One entry: its reason and its content (exit 3 when there is no such entry).
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Ask the broker to put an entry back into its inbox, to be handled again.
    Requeue { name: String },
}

#[derive(Subcommand)]
pub enum MailCmd {
    /// Take the agent's mail and notices (each moves to its cur/: read once), oldest first.
    Read {
        #[arg(long)]
        agent: String,
        #[arg(long)]
        json: bool,
    },
}

/// The root's filesystem, contained beneath it: every path is resolved beneath the root and never
/// through a link, so nothing an agent does to the tree leads a command outside it. `create`
/// makes the root directory first (`init`, `run`, `import`); otherwise a root that cannot be
/// opened is not a mailroom root. `MAILROOM_RESOLVE=walk` forces the resolution that kernels
/// without `openat2` get (for tests and comparisons; the default uses `openat2` where it exists).
fn root_fs(root: &Path, create: bool) -> Result<Arc<RootFs>, Failure> {
    if std::fs::metadata(root).is_ok_and(|m| !m.is_dir()) {
        return Err(exit::not_initialised(root));
    }
    if create {
        std::fs::create_dir_all(root)
            .map_err(|e| Failure::new(exit::ERROR, format!("create directory {}: {e}", root.display())))?;
    }
    let resolve = match std::env::var("MAILROOM_RESOLVE").as_deref() {
        Ok("walk") => Resolve::Walk,
        _ => Resolve::Auto,
    };
    match RootFs::open_with(root, resolve) {
        Ok(fs) => Ok(Arc::new(fs)),
        Err(e) if !create && e.is_not_found() => Err(exit::not_initialised(root)),
        Err(e) => Err(Failure::new(exit::ERROR, e)),
    }
}

/// [`root_fs`] on a root that must be initialised (`board`, `trace`): anything else is not a
/// mailroom root.
fn initialised(root: &Path, layout: &Layout) -> Result<Arc<RootFs>, Failure> {
    let fs = root_fs(root, false)?;
    if layout.is_initialised(fs.as_ref()) { Ok(fs) } else { Err(exit::not_initialised(root)) }
}

/// Runs one command.
pub fn dispatch(cli: Cli) -> Result<(), Failure> {
    let root = cli.root;
    let ack = if cli.no_wait {
        agent_sdk::Ack::None
    } else {
        agent_sdk::Ack::Wait(std::time::Duration::from_secs_f64(cli.answer_within.max(0.0)))
    };
    let layout = Layout::new(&root);
    match cli.cmd {
        Cmd::Init => {
            let fs = root_fs(&root, true)?;
            layout.create(fs.as_ref()).map_err(|e| Failure::new(exit::ERROR, e))?;
            println!("{}", layout.comms().display());
            Ok(())
        }
        Cmd::Run { http } => {
            // A root that is not a directory (or whose tree cannot be a mailroom tree) is a
            // wrong root, not a failure of the broker's durability.
            let not_dir = |p: &std::path::Path| std::fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir());
            if not_dir(&root) || not_dir(layout.comms()) {
                return Err(exit::not_initialised(&root));
            }
            let fs = root_fs(&root, true)?;
            let how = if fs.uses_openat2() { "openat2" } else { "walk" };
            tracing::info!(resolution = how, "every path is resolved beneath the root, never through a link");
            serve::run_broker(fs, layout, http)
        }
        Cmd::Submit { file } => producer::submit(&root, ack, &file),
        Cmd::Cancel { task_id, cluster: true } => {
            cluster_board::cancel(initialised(&root, &layout)?.as_ref(), &layout, &task_id)
        }
        Cmd::Cancel { task_id, cluster: false } => producer::cancel(&root, ack, &task_id),
        Cmd::Retry { task_id, cluster: true } => {
            cluster_board::retry(initialised(&root, &layout)?.as_ref(), &layout, &task_id)
        }
        Cmd::Retry { task_id, cluster: false } => producer::retry(&root, ack, &task_id),
        Cmd::Claim { agent, pools, wait } => agent::claim(&root, &agent, &pools, wait),
        Cmd::Heartbeat { agent, claim } => agent::heartbeat(&root, &agent, &claim),
        Cmd::Complete { agent, claim, result } => {
            agent::complete(&root, ack, &agent, &claim, result.as_deref())
        }
        Cmd::Fail { agent, claim, error, no_retry } => {
            agent::fail(&root, ack, &agent, &claim, &error, !no_retry)
        }
        Cmd::Release { agent, claim } => agent::release(&root, ack, &agent, &claim),
        Cmd::Send { from, to, subject, file } => {
            agent::send(&root, ack, &from, &to, subject.as_deref(), &file)
        }
        Cmd::Board { status, pool, agent, task_type, json, watch, cluster } => {
            let args = board::Args { status, pool, agent, task_type, json, watch, cluster };
            board::board(initialised(&root, &layout)?.as_ref(), &layout, args)
        }
        Cmd::Status { json } => status::status(root_fs(&root, false)?.as_ref(), &layout, json),
        Cmd::Quarantine { cmd } => {
            let fs = root_fs(&root, false)?;
            match cmd {
                QuarantineCmd::List { json } => quarantine::list(fs.as_ref(), &layout, json),
                QuarantineCmd::Show { name, json } => quarantine::show(fs.as_ref(), &layout, &name, json),
                QuarantineCmd::Requeue { name } => quarantine::requeue(fs.as_ref(), &layout, ack, &name),
            }
        }
        Cmd::Mail { cmd: MailCmd::Read { agent, json } } => {
            mail::read(root_fs(&root, false)?.as_ref(), &layout, &agent, json)
        }
        Cmd::Trace { task_id, json, cluster: true } => {
            cluster_board::trace(initialised(&root, &layout)?.as_ref(), &layout, &task_id, json)
        }
        Cmd::Trace { task_id, json, cluster: false } => {
            views::trace(initialised(&root, &layout)?.as_ref(), &layout, &task_id, json)
        }
        Cmd::Schema => views::schema(),
        Cmd::Import { paths, dry_run, json, no_create_agents } => {
            import::import(root_fs(&root, !dry_run)?, layout, &paths, dry_run, json, !no_create_agents)
        }
        Cmd::Gc { dry_run, json } => gc::gc(root_fs(&root, false)?.as_ref(), &layout, dry_run, json),
        Cmd::Bench { args } => Err(bench::bench(&args)),
        Cmd::Agent { cmd } => {
            let fs = root_fs(&root, false)?;
            match cmd {
                AgentCmd::Add { name, capabilities } => agent::add(fs, &layout, &name, &capabilities),
                AgentCmd::List { json } => agent::agent_list(fs.as_ref(), &layout, json),
            }
        }
    }
}

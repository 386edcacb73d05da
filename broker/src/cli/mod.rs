//! The command line: one module per group of verbs. `mod.rs` declares the verbs and routes each
//! to its module; `exit.rs` maps errors to documented exit codes; `io.rs` reads input and prints.

mod agent;
mod bench;
pub mod exit;
mod import;
mod io;
mod producer;
mod serve;
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
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Create the runtime tree.
    Init,
    /// Run the broker until SIGINT or SIGTERM.
    Run,
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
    Cancel { task_id: String },
    /// Redrive a FAILED, BLOCKED or CANCELLED task.
    Retry { task_id: String },
    /// Send mail from one agent to another; the body is JSON (or text) from a file or `-`.
    Send {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        subject: Option<String>,
        file: String,
    },
    /// Show the central boards.
    Board {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show every journaled event of a task and where its file is now.
    Trace {
        task_id: String,
        #[arg(long)]
        json: bool,
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
    /// Create an agent's mailbox.
    Add { name: String },
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

/// Runs one command.
pub fn dispatch(cli: Cli) -> Result<(), Failure> {
    let root = cli.root;
    let layout = Layout::new(&root);
    match cli.cmd {
        Cmd::Init => {
            let fs = root_fs(&root, true)?;
            layout.create(fs.as_ref()).map_err(|e| Failure::new(exit::ERROR, e))?;
            println!("{}", layout.comms().display());
            Ok(())
        }
        Cmd::Run => {
            let fs = root_fs(&root, true)?;
            let how = if fs.uses_openat2() { "openat2" } else { "walk" };
            tracing::info!(resolution = how, "every path is resolved beneath the root, never through a link");
            serve::run_broker(fs, layout)
        }
        Cmd::Submit { file } => producer::submit(&root, &file),
        Cmd::Cancel { task_id } => producer::cancel(&root, &task_id),
        Cmd::Retry { task_id } => producer::retry(&root, &task_id),
        Cmd::Claim { agent, pools, wait } => agent::claim(&root, &agent, &pools, wait),
        Cmd::Heartbeat { agent, claim } => agent::heartbeat(&root, &agent, &claim),
        Cmd::Complete { agent, claim, result } => agent::complete(&root, &agent, &claim, result.as_deref()),
        Cmd::Fail { agent, claim, error, no_retry } => agent::fail(&root, &agent, &claim, &error, !no_retry),
        Cmd::Release { agent, claim } => agent::release(&root, &agent, &claim),
        Cmd::Send { from, to, subject, file } => agent::send(&root, &from, &to, subject.as_deref(), &file),
        Cmd::Board { status, json } => views::board(root_fs(&root, false)?.as_ref(), &layout, status, json),
        Cmd::Trace { task_id, json } => {
            views::trace(root_fs(&root, false)?.as_ref(), &layout, &task_id, json)
        }
        Cmd::Schema => views::schema(),
        Cmd::Import { paths, dry_run, json, no_create_agents } => {
            import::import(root_fs(&root, !dry_run)?, layout, &paths, dry_run, json, !no_create_agents)
        }
        Cmd::Bench { args } => Err(bench::bench(&args)),
        Cmd::Agent { cmd: AgentCmd::Add { name } } => {
            agent::add(root_fs(&root, false)?.as_ref(), &layout, &name)
        }
    }
}

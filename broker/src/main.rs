//! `mailroom`: the broker (`mailroom run`) and the command-line tool for agents, scripts and
//! operators. Logs go to stderr; stdout carries data. Exit codes are listed in [`exit`].

use clap::{Parser, Subcommand};
use mailroom::{board, run, trace};
use protocol::Status;
use runtime_layout::{Fs, Layout, RealFs};
use serde_json::Value;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Exit codes (documented in the README).
mod exit {
    pub const OK: u8 = 0;
    /// Unexpected failure (I/O, corrupt journal, ...).
    pub const ERROR: u8 = 1;
    /// Bad command line (clap uses 2 as well).
    pub const USAGE: u8 = 2;
    /// `claim` found nothing to claim (before `--wait` ran out).
    pub const NOTHING: u8 = 3;
    /// Another broker holds the root's lock.
    pub const LOCKED: u8 = 4;
    /// The claim is no longer held by this agent (taken back, finished, or never held).
    pub const CLAIM_LOST: u8 = 5;
    /// Invalid input: a file that is not JSON, a task or name that breaks a rule.
    pub const INVALID: u8 = 6;
    /// The root is not initialised (`mailroom init`).
    pub const NOT_INITIALISED: u8 = 7;
    /// The broker stopped because it could not make its journal or tree durable.
    pub const FATAL_IO: u8 = 8;
    /// `mailroom bench`: the `mailroom-bench` binary is neither beside this one nor on `PATH`.
    pub const NO_BENCH: u8 = 9;
}

#[derive(Parser)]
#[command(name = "mailroom", version, about = "A task broker for multi-agent systems on plain directories")]
struct Cli {
    /// Runtime root (default: $MAILROOM_ROOT, else ./runtime).
    #[arg(long, global = true, env = "MAILROOM_ROOT", default_value = "runtime")]
    root: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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
enum AgentCmd {
    /// Create an agent's mailbox.
    Add { name: String },
}

/// An error with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl std::fmt::Display) -> Self {
        Self { code, message: message.to_string() }
    }
}

impl From<agent_sdk::Error> for Failure {
    fn from(e: agent_sdk::Error) -> Self {
        use agent_sdk::Error as E;
        let code = match &e {
            E::ClaimLost { .. } => exit::CLAIM_LOST,
            E::NotInitialised { .. } => exit::NOT_INITIALISED,
            E::InvalidName(_) | E::InvalidTask { .. } => exit::INVALID,
            _ => exit::ERROR,
        };
        Self::new(code, e)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MAILROOM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match dispatch(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("mailroom: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

fn read_input(file: &str) -> Result<Vec<u8>, Failure> {
    if file == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Failure::new(exit::ERROR, format!("stdin: {e}")))?;
        Ok(buf)
    } else {
        std::fs::read(file).map_err(|e| Failure::new(exit::ERROR, format!("{file}: {e}")))
    }
}

/// JSON if it parses, else the text as a string.
fn json_or_text(bytes: Vec<u8>) -> Value {
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).trim_end().to_string()))
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("a JSON value serialises"));
}

fn dispatch(cli: Cli) -> Result<(), Failure> {
    let root = cli.root;
    let layout = Layout::new(&root);
    let fs: Arc<dyn Fs> = Arc::new(RealFs);
    match cli.cmd {
        Cmd::Init => {
            layout.create(fs.as_ref()).map_err(|e| Failure::new(exit::ERROR, e))?;
            println!("{}", layout.comms().display());
            Ok(())
        }
        Cmd::Run => run_broker(fs, layout),
        Cmd::Submit { file } => {
            let bytes = read_input(&file)?;
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| Failure::new(exit::INVALID, format!("{file}: not JSON: {e}")))?;
            let msg = protocol::Message::from_value(v)
                .map_err(|e| Failure::new(exit::INVALID, format!("{file}: {e}")))?;
            let protocol::Message::Submit { task } = msg else {
                return Err(Failure::new(
                    exit::INVALID,
                    format!("{file}: field `kind`: submit expects a task"),
                ));
            };
            let t = protocol::Task::from_value(task.clone())
                .map_err(|e| Failure::new(exit::INVALID, format!("{file}: {}", e.within("task"))))?;
            let client = agent_sdk::Client::open(&root)?;
            let name = client.submit(&task)?;
            println!("{}", serde_json::json!({"task_id": t.task_id, "message": name}));
            Ok(())
        }
        Cmd::Claim { agent, pools, wait } => {
            let a = agent_sdk::Agent::open(&root, &agent)?;
            let claim = match wait {
                Some(secs) => a.claim_wait(&pools, Duration::from_secs_f64(secs.max(0.0)))?,
                None => a.claim(&pools)?,
            };
            match claim {
                Some(c) => {
                    let mut v = c.task.to_value();
                    if let Value::Object(m) = &mut v {
                        m.insert("claim".into(), Value::String(c.name.clone()));
                    }
                    print_json(&v);
                    Ok(())
                }
                None => Err(Failure::new(exit::NOTHING, "")),
            }
        }
        Cmd::Heartbeat { agent, claim } => Ok(agent_sdk::Agent::open(&root, &agent)?.heartbeat(&claim)?),
        Cmd::Complete { agent, claim, result } => {
            let result = match result {
                Some(f) => json_or_text(read_input(&f)?),
                None => Value::Null,
            };
            agent_sdk::Agent::open(&root, &agent)?.complete(&claim, result)?;
            Ok(())
        }
        Cmd::Fail { agent, claim, error, no_retry } => {
            agent_sdk::Agent::open(&root, &agent)?.fail(&claim, &error, !no_retry)?;
            Ok(())
        }
        Cmd::Release { agent, claim } => {
            agent_sdk::Agent::open(&root, &agent)?.release(&claim)?;
            Ok(())
        }
        Cmd::Cancel { task_id } => {
            agent_sdk::Client::open(&root)?.cancel(&task_id)?;
            Ok(())
        }
        Cmd::Retry { task_id } => {
            agent_sdk::Client::open(&root)?.retry(&task_id)?;
            Ok(())
        }
        Cmd::Send { from, to, subject, file } => {
            protocol::names::validate_agent(&to).map_err(|e| Failure::new(exit::INVALID, e.within("to")))?;
            let body = json_or_text(read_input(&file)?);
            agent_sdk::Agent::open(&root, &from)?.send(&to, subject.as_deref(), body)?;
            Ok(())
        }
        Cmd::Board { status, json } => {
            let status = status
                .map(|s| s.parse::<Status>())
                .transpose()
                .map_err(|e| Failure::new(exit::USAGE, format!("--status: {}", e.rule)))?;
            let rows = board::read(fs.as_ref(), &layout, status).map_err(|e| Failure::new(exit::ERROR, e))?;
            if json {
                let v: Vec<Value> = rows
                    .iter()
                    .map(|(b, t)| {
                        let mut v = t.to_value();
                        if let Value::Object(m) = &mut v {
                            m.insert("board".into(), board::board_name(*b).into());
                        }
                        v
                    })
                    .collect();
                print_json(&Value::Array(v));
            } else {
                print!("{}", board::render(&rows));
            }
            Ok(())
        }
        Cmd::Trace { task_id, json } => match trace::trace(fs.as_ref(), &layout, &task_id) {
            Ok(Some(t)) => {
                if json {
                    print_json(&t.to_json());
                } else {
                    print!("{}", t.render());
                }
                Ok(())
            }
            Ok(None) => Err(Failure::new(exit::NOTHING, format!("no task `{task_id}` in the journal"))),
            Err(e) => Err(Failure::new(exit::ERROR, e)),
        },
        Cmd::Schema => {
            print_json(&protocol::schema::all());
            Ok(())
        }
        Cmd::Import { paths, dry_run, json, no_create_agents } => {
            import(fs, layout, &paths, dry_run, json, !no_create_agents)
        }
        Cmd::Bench { args } => Err(bench(&args)),
        Cmd::Agent { cmd: AgentCmd::Add { name } } => {
            protocol::names::validate_agent(&name).map_err(|e| Failure::new(exit::INVALID, e))?;
            if !layout.is_initialised(fs.as_ref()) {
                return Err(not_initialised(&root));
            }
            layout.mailbox(&name).create(fs.as_ref(), true).map_err(|e| Failure::new(exit::ERROR, e))?;
            println!("{}", layout.mailbox(&name).root.display());
            Ok(())
        }
    }
}

fn import(
    fs: Arc<dyn Fs>,
    layout: Layout,
    paths: &[PathBuf],
    dry_run: bool,
    json: bool,
    create_agents: bool,
) -> Result<(), Failure> {
    use mailroom::import::{ImportOptions, collect_import_files};
    // The import is the broker for its duration: it takes the root's lock, so it never races a
    // running broker (which would own the journal and the boards).
    if !dry_run {
        layout.create(fs.as_ref()).map_err(|e| Failure::new(exit::ERROR, e))?;
    } else if !layout.is_initialised(fs.as_ref()) {
        return Err(not_initialised(layout.root()));
    }
    // A dry run writes nothing (no lock, no journal segment) and may run beside a broker.
    let _lock = if dry_run {
        None
    } else {
        Some(runtime_layout::BrokerLock::acquire(fs.as_ref(), &layout.lock_file()).map_err(|e| {
            Failure::new(exit::LOCKED, format!("{e}; stop the broker first, or copy the files into drop/"))
        })?)
    };
    let cfg =
        mailroom::config::Config::load(fs.as_ref(), &layout).map_err(|e| Failure::new(exit::INVALID, e))?;
    let open =
        if dry_run { mailroom::engine::Engine::open_read_only } else { mailroom::engine::Engine::open };
    let mut engine = open(fs, layout, cfg).map_err(|e| Failure::new(exit::FATAL_IO, e))?;
    if !dry_run {
        engine.reconcile().map_err(|e| Failure::new(exit::FATAL_IO, e))?;
    }
    let files = collect_import_files(paths);
    let report = engine
        .import(files, ImportOptions { dry_run, create_agents })
        .map_err(|e| Failure::new(exit::FATAL_IO, e))?;
    if !dry_run {
        engine.flush().map_err(|e| Failure::new(exit::FATAL_IO, e))?;
    }
    if json {
        print_json(&serde_json::to_value(&report).expect("the import report serialises"));
    } else {
        print!("{}", report.render(dry_run));
    }
    Ok(())
}

/// `mailroom bench ARGS` execs `mailroom-bench ARGS`: the benchmark is a crate of its own
/// (`bench/`), not part of this binary. It is looked for beside this executable, then on `PATH`,
/// and told (through `MAILROOM_BIN`) to start brokers from this very executable. Returns only
/// when the exec failed.
fn bench(args: &[OsString]) -> Failure {
    use std::os::unix::process::CommandExt;
    const BENCH: &str = "mailroom-bench";
    let me = std::env::current_exe().ok();
    let beside = me.as_deref().map(|p| p.with_file_name(BENCH)).filter(|p| p.is_file());
    let on_path = || {
        std::env::var_os("PATH")
            .and_then(|path| std::env::split_paths(&path).map(|d| d.join(BENCH)).find(|p| p.is_file()))
    };
    let Some(exe) = beside.or_else(on_path) else {
        return Failure::new(
            exit::NO_BENCH,
            format!(
                "`{BENCH}` was found neither beside this executable nor on PATH; \
                 build it with `cargo build --release -p mailroom-bench`"
            ),
        );
    };
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(args);
    if let Some(me) = me {
        cmd.env("MAILROOM_BIN", me);
    }
    let e = cmd.exec();
    Failure::new(exit::ERROR, format!("{}: {e}", exe.display()))
}

fn not_initialised(root: &Path) -> Failure {
    Failure::new(
        exit::NOT_INITIALISED,
        format!("{} is not a mailroom root (run `mailroom init`)", root.display()),
    )
}

fn run_broker(fs: Arc<dyn Fs>, layout: Layout) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::ERROR, e))?;
    rt.block_on(async move {
        // Handlers are installed before the broker starts serving, so a SIGTERM that arrives at
        // any point after that is a clean shutdown, never the default (killing) disposition.
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).map_err(run::RunError::Signal)?;
        let mut term = signal(SignalKind::terminate()).map_err(run::RunError::Signal)?;
        let shutdown = async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tracing::info!("signal received: finishing the message in hand");
        };
        run::run(fs, layout, shutdown).await
    })
    .map_err(|e| match e {
        run::RunError::Locked(e) => Failure::new(exit::LOCKED, e),
        run::RunError::Config(e) => Failure::new(exit::INVALID, e),
        run::RunError::Engine(e) => Failure::new(exit::FATAL_IO, format!("broker stopped: {e}")),
        run::RunError::Signal(e) => Failure::new(exit::ERROR, format!("installing signal handlers: {e}")),
    })
}

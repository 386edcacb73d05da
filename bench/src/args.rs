//! The command line of a benchmark run ([`BenchArgs`], flags documented in docs/BENCHMARKS.md) and
//! the effective parameters every workload reads ([`Plan`]): `--smoke` and `--quick` pick smaller
//! defaults, and an explicit flag always wins.

use crate::error::BenchError;
use runtime_layout::Durability;
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct BenchArgs {
    /// The `mailroom` binary to benchmark (default: the one beside this executable).
    #[arg(long, env = "MAILROOM_BIN")]
    pub mailroom: Option<PathBuf>,
    /// Tiny counts, a few seconds, for CI (no thresholds are ever checked).
    #[arg(long)]
    pub smoke: bool,
    /// Smaller counts (2,000 tasks; history up to 100,000).
    #[arg(long)]
    pub quick: bool,
    /// Print the results as JSON on stdout (the human summary goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Only these workloads (comma-separated: w1,w2,w3,w4,w5,w6,w7,w8,w11,peers,w9,w10; w4 and w5 run
    /// together).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// W1 task count.
    #[arg(long)]
    pub tasks: Option<usize>,
    #[arg(long, default_value_t = 2)]
    pub producers: usize,
    #[arg(long, default_value_t = 4)]
    pub agents: usize,
    /// W1 runs; the median run is reported.
    #[arg(long)]
    pub repeat: Option<usize>,
    /// Approximate task body size in bytes (padding in `params`).
    #[arg(long, default_value_t = 1024)]
    pub body_bytes: usize,
    /// Percentage of tasks addressed to an agent's own mailbox (the rest go to the shared pool).
    #[arg(long, default_value_t = 10)]
    pub assigned_pct: usize,
    /// Durability of producers' and agents' messages (always, batch, never; default: the SDK's
    /// default, which writes without fsync and waits for the broker's journaled verdict).
    #[arg(long)]
    pub client_durability: Option<String>,
    /// W2: task count for the legacy board and for mailroom's side of the ratio.
    #[arg(long)]
    pub legacy_tasks: Option<usize>,
    /// W2: the legacy board script (default: ../shared/bench/legacy_board.py of the workspace).
    #[arg(long)]
    pub legacy_script: Option<PathBuf>,
    /// W3: journal fsync every this many tasks (the broker's group commit).
    #[arg(long, default_value_t = 32)]
    pub floor_batch: usize,
    /// W4/W5: history sizes (finished tasks already in the journal).
    #[arg(long, value_delimiter = ',')]
    pub history: Vec<usize>,
    /// W4: tasks per run (default: the W1 count, at most 5,000).
    #[arg(long)]
    pub history_tasks: Option<usize>,
    /// W6: tasks per durability mode.
    #[arg(long)]
    pub durability_tasks: Option<usize>,
    /// W7: samples for the agent blocked in `claim_wait` (inotify).
    #[arg(long)]
    pub wake_samples: Option<usize>,
    /// W7: samples for the agent polling `claim` every second.
    #[arg(long)]
    pub poll_samples: Option<usize>,
    /// W9: how long the soak runs, in seconds (default 600; 60 with --quick, 4 with --smoke).
    #[arg(long)]
    pub soak_secs: Option<u64>,
    /// W9: seconds between two samples (default 60; 10 with --quick, 1 with --smoke).
    #[arg(long)]
    pub soak_interval: Option<u64>,
    /// W9: the broker's `[journal] archive_keep_bytes`, small enough for the archive to reach it
    /// within the soak (default 64 MB).
    #[arg(long)]
    pub soak_archive_bytes: Option<u64>,
    /// W9: the broker's `[broker] finished_keep_count`, small enough for the tombs to reach it
    /// within the soak (default 200,000).
    #[arg(long)]
    pub soak_finished_keep: Option<usize>,
    /// Peers: tasks per round and system (default 2,000).
    #[arg(long)]
    pub peer_tasks: Option<usize>,
    /// Peers: producer processes per system.
    #[arg(long, default_value_t = 4)]
    pub peer_producers: usize,
    /// Peers: agent processes per system.
    #[arg(long, default_value_t = 8)]
    pub peer_agents: usize,
    /// Peers: the systems to compare mailroom with (comma-separated: postgres,redis,nats; default
    /// every one installed).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub peers: Vec<crate::peers::System>,
    /// W8: the two queue depths, shallow then deep (default 1,000 and 100,000).
    #[arg(long, value_delimiter = ',')]
    pub deep: Vec<usize>,
    /// W8: claims timed, one at a time by one agent, at each depth.
    #[arg(long)]
    pub deep_claims: Option<usize>,
    /// W8: tasks drained by the agents (`--agents`) at each depth.
    #[arg(long)]
    pub deep_drain: Option<usize>,
    /// W11: the two inbox backlogs, small then large (default 2,000 and 100,000 messages).
    #[arg(long, value_delimiter = ',')]
    pub backlog: Vec<usize>,
    /// Extra `[broker]` settings for every broker of the run, e.g. `tick_ms = 100` (repeatable).
    #[arg(long = "broker-setting")]
    pub broker_settings: Vec<String>,
    /// Where to put the temporary roots (default: the system temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the temporary roots.
    #[arg(long)]
    pub keep: bool,
}

/// The effective parameters of a run, read by every workload.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `--smoke`: tiny counts (workloads that size themselves read it: W10's fleet).
    pub smoke: bool,
    pub tasks: usize,
    pub producers: usize,
    pub agents: usize,
    pub repeat: usize,
    pub body_bytes: usize,
    pub assigned_pct: usize,
    /// As given (`None`: the SDK's default); passed on to producer and agent processes.
    pub client_durability: Option<String>,
    pub broker_settings: Vec<String>,
    pub legacy_tasks: usize,
    pub legacy_script: Option<PathBuf>,
    pub floor_batch: usize,
    pub history: Vec<usize>,
    pub history_tasks: usize,
    pub durability_tasks: usize,
    pub wake_samples: usize,
    pub poll_samples: usize,
    pub soak_secs: u64,
    pub soak_interval: u64,
    pub soak_archive_bytes: u64,
    pub soak_finished_keep: usize,
    pub peer_tasks: usize,
    pub peer_producers: usize,
    pub peer_agents: usize,
    /// The peers to run (mailroom always runs).
    pub peers: Vec<crate::peers::System>,
    /// W8's shallow and deep queue.
    pub deep: (usize, usize),
    pub deep_claims: usize,
    pub deep_drain: usize,
    /// W11's small and large inbox backlog.
    pub backlog: (usize, usize),
}

impl Plan {
    pub fn new(a: &BenchArgs) -> Result<Self, BenchError> {
        let (tasks, repeat, legacy, history, dur, wake, poll) = if a.smoke {
            (200, 1, 100, vec![0, 2_000], 100, 10, 2)
        } else if a.quick {
            (2_000, 1, 1_000, vec![0, 100_000], 1_000, 50, 5)
        } else {
            (10_000, 3, 2_000, vec![0, 100_000, 1_000_000], 2_000, 200, 15)
        };
        let (soak, interval) = if a.smoke {
            (4, 1)
        } else if a.quick {
            (60, 10)
        } else {
            (600, 60)
        };
        // Peers: tasks per round; W8: depths, claims timed, tasks drained.
        let (peer_tasks, deep, deep_claims, deep_drain) = if a.smoke {
            (100, (100, 2_000), 20, 40)
        } else if a.quick {
            (2_000, (1_000, 20_000), 100, 400)
        } else {
            (2_000, (1_000, 100_000), 200, 400)
        };
        let deep = match a.deep[..] {
            [] => deep,
            [shallow, deep] => (shallow, deep),
            _ => return Err(BenchError::Usage("--deep: two depths, shallow,deep".into())),
        };
        let (deep_claims, deep_drain) =
            (a.deep_claims.unwrap_or(deep_claims), a.deep_drain.unwrap_or(deep_drain));
        if deep_claims + deep_drain > deep.0.min(deep.1) {
            return Err(BenchError::Usage(format!(
                "W8: --deep-claims {deep_claims} + --deep-drain {deep_drain} exceed the shallow queue ({})",
                deep.0.min(deep.1)
            )));
        }
        let backlog = match a.backlog[..] {
            [] if a.smoke => (50, 1_000),
            [] if a.quick => (2_000, 20_000),
            [] => (2_000, 100_000),
            [small, large] if small > 0 && large > 0 => (small, large),
            _ => return Err(BenchError::Usage("--backlog: two message counts, small,large".into())),
        };
        if let Some(c) = &a.client_durability {
            parse_durability(c)?;
        }
        // Refused before any workload runs, not by the first broker's configuration.
        let settings = format!("[broker]\n{}\n", a.broker_settings.join("\n"));
        mailroom::config::Config::parse(&settings)
            .map_err(|e| BenchError::Usage(format!("--broker-setting: {e}")))?;
        let tasks = a.tasks.unwrap_or(tasks);
        Ok(Self {
            smoke: a.smoke,
            tasks,
            producers: a.producers,
            agents: a.agents,
            repeat: a.repeat.unwrap_or(repeat).max(1),
            body_bytes: a.body_bytes,
            assigned_pct: a.assigned_pct,
            client_durability: a.client_durability.clone(),
            broker_settings: a.broker_settings.clone(),
            legacy_tasks: a.legacy_tasks.unwrap_or(legacy),
            legacy_script: a.legacy_script.clone(),
            floor_batch: a.floor_batch,
            history: if a.history.is_empty() { history } else { a.history.clone() },
            history_tasks: a.history_tasks.unwrap_or(tasks.min(5_000)),
            durability_tasks: a.durability_tasks.unwrap_or(dur),
            wake_samples: a.wake_samples.unwrap_or(wake),
            poll_samples: a.poll_samples.unwrap_or(poll),
            soak_secs: a.soak_secs.unwrap_or(soak).max(1),
            soak_interval: a.soak_interval.unwrap_or(interval).max(1),
            soak_archive_bytes: a.soak_archive_bytes.unwrap_or(64_000_000),
            soak_finished_keep: a.soak_finished_keep.unwrap_or(200_000),
            peer_tasks: a.peer_tasks.unwrap_or(peer_tasks),
            peer_producers: a.peer_producers.max(1),
            peer_agents: a.peer_agents.max(1),
            peers: if a.peers.is_empty() { crate::peers::System::PEERS.to_vec() } else { a.peers.clone() },
            deep,
            deep_claims,
            deep_drain,
            backlog,
        })
    }

    /// The clients' durability as the report shows it.
    pub fn client_label(&self) -> String {
        self.client_durability
            .clone()
            .unwrap_or_else(|| "no fsync, waits for the broker's ack (SDK default)".into())
    }

    /// The clients' durability for in-process file operations (W3) if unset: the SDK's default,
    /// `never` (a client waiting for the broker's verdict does not fsync its message; the
    /// broker's journal makes it durable).
    pub fn client_durability(&self) -> Result<Durability, BenchError> {
        Ok(match &self.client_durability {
            Some(c) => parse_durability(c)?,
            None => Durability::Never,
        })
    }
}

pub fn parse_durability(s: &str) -> Result<Durability, BenchError> {
    match s {
        "always" => Ok(Durability::Always),
        "batch" => Ok(Durability::Batch),
        "never" => Ok(Durability::Never),
        _ => Err(BenchError::Usage(format!("durability `{s}`: must be always, batch or never"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Result<Plan, BenchError> {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let cli =
            Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).expect("flags parse");
        Plan::new(&cli.bench)
    }

    #[test]
    fn w8_takes_two_depths_and_no_more_claims_than_the_shallow_queue_holds() {
        let p = plan(&["--smoke"]).unwrap();
        assert_eq!(p.deep, (100, 2_000));
        assert_eq!(
            plan(&["--deep", "50,500", "--deep-claims", "10", "--deep-drain", "20"]).unwrap().deep,
            (50, 500)
        );
        assert!(matches!(plan(&["--deep", "1,2,3"]), Err(BenchError::Usage(_))));
        assert!(matches!(
            plan(&["--deep", "50,500", "--deep-claims", "40", "--deep-drain", "20"]),
            Err(BenchError::Usage(_))
        ));
    }
}

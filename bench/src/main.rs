//! `mailroom-bench`: the benchmark (docs/BENCHMARKS.md), and the producer and agent processes it
//! starts (`mailroom-bench producer ...`, `mailroom-bench agent ...`). `mailroom bench ...` execs
//! this binary with the same arguments. Errors are printed here, at the edge: exit code 1 for a
//! run that could not finish, 2 for a bad command line.

use clap::{Parser, Subcommand};
use mailroom_bench::procs::{AgentArgs, ProducerArgs, agent_main, producer_main};
use mailroom_bench::{BenchArgs, run};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mailroom-bench",
    version,
    about = "Benchmark mailroom end to end with real processes (docs/BENCHMARKS.md)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    #[command(flatten)]
    bench: BenchArgs,
}

/// The processes a run starts (not meant to be run by hand).
#[derive(Subcommand)]
enum Role {
    /// A producer process: submits its share of a run's tasks through the SDK.
    Producer(ProducerArgs),
    /// An agent process: claims and completes tasks through the SDK until told to stop.
    Agent(AgentArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.role {
        None => run(&cli.bench),
        Some(Role::Producer(a)) => producer_main(a),
        Some(Role::Agent(a)) => agent_main(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailroom-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

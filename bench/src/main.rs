//! `mailroom-bench`: the benchmark (docs/BENCHMARKS.md), and the load processes it starts
//! (`mailroom-bench producer|agent|deep-agent ...`, and for the peers comparison
//! `mailroom-bench peer-producer|peer-agent --system S ...`). `mailroom bench ...` execs
//! this binary with the same arguments.
//!
//! Output: the human summary on stdout, or with `--json` the report as JSON on stdout and the
//! summary on stderr; progress on stderr. Exit codes: 0 the run finished; 1 it could not (the
//! message says why and where the logs are kept); 2 a bad command line.

use clap::{Parser, Subcommand};
use mailroom_bench::load::{
    AgentArgs, DeepAgentArgs, ProducerArgs, agent_main, deep_agent_main, producer_main,
};
use mailroom_bench::peers::load::{PeerAgentArgs, PeerProducerArgs, peer_agent_main, peer_producer_main};
use mailroom_bench::{BenchArgs, BenchError, run};
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
    /// W8: claims and completes a fixed number of tasks, timing each claim.
    DeepAgent(DeepAgentArgs),
    /// Peers: a producer submitting to mailroom, PostgreSQL, Redis or NATS JetStream.
    PeerProducer(PeerProducerArgs),
    /// Peers: an agent taking and completing tasks from one of those systems.
    PeerAgent(PeerAgentArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.role {
        None => bench(&cli.bench),
        Some(Role::Producer(a)) => producer_main(a),
        Some(Role::Agent(a)) => agent_main(a),
        Some(Role::DeepAgent(a)) => deep_agent_main(a),
        Some(Role::PeerProducer(a)) => peer_producer_main(a),
        Some(Role::PeerAgent(a)) => peer_agent_main(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailroom-bench: {e}");
            ExitCode::from(if matches!(e, BenchError::Usage(_)) { 2 } else { 1 })
        }
    }
}

fn bench(args: &BenchArgs) -> Result<(), BenchError> {
    let report = run(args)?;
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| BenchError::process("writing the report as JSON", e))?;
        println!("{json}");
        eprint!("{report}");
    } else {
        print!("{report}");
    }
    Ok(())
}

//! `mailroom`: the broker (`mailroom run`) and the command-line tool for agents, scripts and
//! operators. Logs go to stderr; stdout carries data. Exit codes are listed in [`cli::exit`].

mod cli;

use clap::Parser;
use cli::exit;
use std::process::ExitCode;

/// jemalloc: the broker's loop spends about an eighth of its CPU allocating and freeing (records,
/// messages, task files), and jemalloc takes 15% off the broker's CPU per task against the
/// system's allocator, at a few MB of RSS (docs/BENCHMARKS.md, "jemalloc, now that trace reads
/// a line at a time").
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
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
    match cli::dispatch(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("mailroom: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

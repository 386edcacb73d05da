//! `mailroom import`: takes the root's lock (the import is the broker for its duration), runs
//! the engine's import and prints the report.

use super::exit::{self, Failure, not_initialised};
use super::io::{emit, print_json};
use runtime_layout::{Fs, Layout};
use std::path::PathBuf;
use std::sync::Arc;

pub fn import(
    fs: Arc<dyn Fs>,
    layout: Layout,
    paths: &[PathBuf],
    dry_run: bool,
    json: bool,
    create_agents: bool,
) -> Result<(), Failure> {
    use mailroom::import::{ImportOptions, collect_import_files};
    // The import is the broker for its duration: it takes the root's lock, so it never races a
    // running broker (which would own the journal and the boards). A dry run writes nothing (no
    // lock, no journal segment) and may run beside a broker.
    if dry_run && !layout.is_initialised(fs.as_ref()) {
        return Err(not_initialised(layout.root()));
    }
    let _lock = if dry_run {
        None
    } else {
        Some(runtime_layout::BrokerLock::acquire(fs.as_ref(), &layout).map_err(|e| {
            Failure::new(exit::LOCKED, format!("{e}; stop the broker first, or copy the files into drop/"))
        })?)
    };
    let cfg = if dry_run {
        mailroom::config::Config::load(fs.as_ref(), &layout).map_err(|e| Failure::new(exit::INVALID, e))?
    } else {
        // Every directory of the tree a real one (impostors moved aside), as a broker's start does.
        mailroom::repair::prepare(fs.as_ref(), &layout).map_err(super::serve::failure)?
    };
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
        print_json(&serde_json::to_value(&report).expect("the import report serialises"))
    } else {
        emit(&report.render(dry_run))
    }
}

//! `mailroom gc`: the retention rules applied to a stopped root, under the root's lock (a
//! running broker applies them itself, a bounded amount per pass). `--dry-run` changes nothing
//! and may run beside a broker.

use super::exit::{self, Failure, not_initialised};
use super::io::{emit, print_json};
use runtime_layout::{BrokerLock, Fs, Layout};

pub fn gc(fs: &dyn Fs, layout: &Layout, dry_run: bool, json: bool) -> Result<(), Failure> {
    if !layout.is_initialised(fs) {
        return Err(not_initialised(layout.root()));
    }
    let _lock = if dry_run {
        None
    } else {
        Some(BrokerLock::acquire(fs, layout).map_err(|e| {
            Failure::new(exit::LOCKED, format!("{e}; a running broker applies the retention itself"))
        })?)
    };
    let cfg = mailroom::config::Config::load(fs, layout).map_err(|e| Failure::new(exit::INVALID, e))?;
    let report = mailroom::gc::gc(fs, layout, &cfg, runtime_layout::now(), dry_run)
        .map_err(|e| Failure::new(exit::ERROR, e))?;
    if json {
        print_json(&serde_json::to_value(&report).expect("the gc report serialises"))
    } else {
        emit(&report.render())
    }
}

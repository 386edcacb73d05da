//! A benchmark run: it locates the binaries, makes a directory for the run's temporary roots,
//! runs the selected workloads (see [`crate::workloads`]) and assembles their sections into the
//! [`Report`]. The roots are removed after a successful run and kept (with every process's log)
//! after a failed one or with `--keep`.
//!
//! [`Ctx`] is what a workload gets: the `Fs` every write inside a root goes through, the binaries,
//! the [`Plan`], and fresh directories for its runs.

use crate::args::{BenchArgs, Plan};
use crate::error::BenchError;
use crate::pipeline::Pipe;
use crate::procs::Binaries;
use crate::report::{Params, Report, Section};
use crate::{machine, workloads};
use runtime_layout::{Fs, RealFs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a workload works with.
pub struct Ctx {
    fs: Arc<dyn Fs>,
    pub bins: Binaries,
    pub plan: Plan,
    dir: PathBuf,
    n: usize,
}

impl Ctx {
    /// The filesystem every write inside a runtime root goes through.
    pub fn fs(&self) -> &dyn Fs {
        self.fs.as_ref()
    }

    /// Where this run's directories are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh directory for one workload run (outside every root: logs, stop files, a root).
    pub fn fresh(&mut self, label: &str) -> Result<PathBuf, BenchError> {
        self.n += 1;
        let d = self.dir.join(format!("{:02}-{label}", self.n));
        std::fs::create_dir_all(&d).map_err(|e| BenchError::io(&d, e))?;
        Ok(d)
    }

    /// W1's pipeline as the command line configures it; other workloads vary it.
    pub fn base(&self) -> Pipe {
        let p = &self.plan;
        Pipe {
            tasks: p.tasks,
            producers: p.producers,
            agents: p.agents,
            body_bytes: p.body_bytes,
            assigned_pct: p.assigned_pct,
            broker_durability: "batch".into(),
            client_durability: p.client_durability.clone(),
            broker_settings: p.broker_settings.clone(),
            journal_settings: Vec::new(),
            prefix: "B".into(),
            extra_config: String::new(),
            fleet: None,
            fleet_poll_ms: 0,
        }
    }
}

/// Progress, on stderr.
pub fn log(msg: &str) {
    eprintln!("bench: {msg}");
}

/// Runs the benchmark on the real filesystem.
pub fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    run_with(args, Arc::new(RealFs))
}

/// Runs the benchmark with every write inside a root going through `fs`.
pub fn run_with(args: &BenchArgs, fs: Arc<dyn Fs>) -> Result<Report, BenchError> {
    let plan = Plan::new(args)?;
    let selected = workloads::select(&args.only)?;
    let bins = Binaries::locate(args.mailroom.as_deref())?;
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("mailroom-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| BenchError::io(&dir, e))?;
    spread(&dir);
    let mut cx = Ctx { fs, bins, plan, dir: dir.clone(), n: 0 };
    let result = run_all(&mut cx, &selected);
    if args.keep || result.is_err() {
        log(&format!("roots kept in {}", dir.display()));
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Marks the run's directory as the top of a directory hierarchy (`chattr +T`), so that ext4
/// places each workload's directory in a block group of its own choosing rather than beside the
/// last run's. On ext4 without a journal a new file skips every inode freed in its block group
/// in the last 60 to 360 seconds, one lookup each: a run made right after another one, whose
/// roots (tens of thousands of files) were just deleted in the same groups, paid for that
/// deletion in every file it created, a quarter of W1's throughput. Best effort: a filesystem
/// without the flag ignores it, and nothing else depends on it.
fn spread(dir: &Path) {
    use rustix::fs::{IFlags, ioctl_getflags, ioctl_setflags};
    let Ok(d) = std::fs::File::open(dir) else { return };
    if let Ok(flags) = ioctl_getflags(&d) {
        let _ = ioctl_setflags(&d, flags | IFlags::TOPDIR);
    }
}

fn run_all(cx: &mut Ctx, selected: &[&'static dyn workloads::Workload]) -> Result<Report, BenchError> {
    let p = &cx.plan;
    let params = Params {
        tasks: p.tasks,
        producers: p.producers,
        agents: p.agents,
        repeat: p.repeat,
        body_bytes: p.body_bytes,
        assigned_pct: p.assigned_pct,
        broker_durability: "batch".into(),
        client_durability: p.client_label(),
    };
    let machine = machine::describe(cx.dir());
    // Run order: those that must run first, then the rest; the report keeps the registry's order.
    let mut order: Vec<usize> = (0..selected.len()).collect();
    order.sort_by_key(|&i| !selected[i].runs_first());
    let mut sections: Vec<Box<dyn Section>> = Vec::new();
    let mut slots = Vec::new();
    for i in order {
        sections.push(selected[i].run(cx, &sections)?);
        slots.push(i);
    }
    for i in 0..sections.len() {
        let mut me = sections.remove(i);
        me.relate(&sections);
        sections.insert(i, me);
    }
    let mut ordered: Vec<(usize, Box<dyn Section>)> = slots.into_iter().zip(sections).collect();
    ordered.sort_by_key(|(slot, _)| *slot);
    Ok(Report { machine, params, sections: ordered.into_iter().map(|(_, s)| s).collect() })
}

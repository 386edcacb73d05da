//! What resolving every path beneath the root costs: the file operations of one task's trip
//! through mailroom (submit, dispatch, consume, claim, heartbeat, complete, consume, remove; no
//! fsync, so that only the path handling differs), timed on [`RealFs`] (plain paths, the kernel
//! resolves them whole) and on [`RootFs`] with `openat2` and with the fallback walk, side by side,
//! plus single operations on a path four directories deep.
//!
//! ```sh
//! cargo run --release -p mailroom-runtime-layout --example resolve_cost [TASKS]
//! ```

use mailroom_runtime_layout::{Durability, Fs, Layout, NameSource, RealFs, Resolve, RootFs, deliver};

/// One task's file operations, as producer, broker and agent make them.
fn task(
    fs: &dyn Fs,
    l: &Layout,
    names: &NameSource,
    i: usize,
) -> Result<(), mailroom_runtime_layout::FsError> {
    let inbox = l.broker_inbox();
    let pool = l.queue("work");
    let agent = l.mailbox("Agent-1");
    let body = [b'x'; 300];
    // Producer: submit.
    let msg = names.next("msg");
    let p = deliver(fs, &inbox, &msg, &body, Durability::Never)?;
    // Broker: list, read, dispatch, consume.
    fs.list(&inbox.new_dir())?;
    fs.read(&p, 1 << 20)?;
    let name = format!("2-20260101T000000000000-{i:012}-T-{i}.json");
    deliver(fs, &pool, &name, &body, Durability::Never)?;
    fs.rename(&p, &inbox.cur().join(&msg))?;
    // Agent: claim, heartbeat, read, complete.
    let held = agent.cur().join(&name);
    fs.rename_noreplace(&pool.new_dir().join(&name), &held)?;
    fs.touch(&held)?;
    fs.read(&held, 1 << 20)?;
    let done = names.next("msg");
    let q = deliver(fs, &inbox, &done, &body[..100], Durability::Never)?;
    // Broker: consume the completion, check and remove the claim, prune.
    fs.read(&q, 1 << 20)?;
    fs.stat(&held)?;
    fs.remove_file(&held)?;
    fs.rename(&q, &inbox.cur().join(&done))?;
    fs.remove_file(&inbox.cur().join(&msg))?;
    fs.remove_file(&inbox.cur().join(&done))?;
    Ok(())
}

/// Operations per task in [`task`] (each `deliver` is a create and a rename).
const OPS_PER_TASK: usize = 19;

fn setup(dir: &std::path::Path) -> Layout {
    let l = Layout::new(dir.join("runtime"));
    RealFs.create_dir_all(l.root()).unwrap();
    l.create(&RealFs).unwrap();
    l.queue("work").create(&RealFs, false).unwrap();
    l.mailbox("Agent-1").create(&RealFs, true).unwrap();
    l
}

/// CPU time this thread has used (ns), user and kernel: what the broker pays, whatever else
/// the machine is doing (the scheduler's own accounting, `/proc/thread-self/schedstat`).
fn cpu_ns() -> u128 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    s.split_whitespace().next().and_then(|n| n.parse().ok()).expect("on-CPU time")
}

/// CPU µs per task over `n` tasks.
fn time_tasks(fs: &dyn Fs, l: &Layout, names: &NameSource, from: usize, n: usize) -> f64 {
    let start = cpu_ns();
    for i in from..from + n {
        task(fs, l, names, i).unwrap();
    }
    (cpu_ns() - start) as f64 / 1000.0 / n as f64
}

/// CPU ns per call of `op`.
fn time_op(n: usize, mut op: impl FnMut()) -> f64 {
    let start = cpu_ns();
    for _ in 0..n {
        op();
    }
    (cpu_ns() - start) as f64 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let rounds = 7;
    let modes = [
        ("RealFs (plain paths)", None),
        ("RootFs, openat2", Some(Resolve::Auto)),
        ("RootFs, walk", Some(Resolve::Walk)),
    ];
    let dirs: Vec<_> = modes.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let layouts: Vec<Layout> = dirs.iter().map(|d| setup(d.path())).collect();
    let fss: Vec<Box<dyn Fs>> = modes
        .iter()
        .zip(&layouts)
        .map(|((_, resolve), l)| -> Box<dyn Fs> {
            match resolve {
                None => Box::new(RealFs),
                Some(r) => {
                    let fs = RootFs::open_with(l.root(), *r).unwrap();
                    assert_eq!(fs.uses_openat2(), *r == Resolve::Auto, "openat2 unavailable here");
                    Box::new(fs)
                }
            }
        })
        .collect();
    let names = NameSource::new();
    // Rounds interleave the three, so that a busy moment of the machine hits all alike.
    let mut per_task = vec![Vec::new(); modes.len()];
    let mut stat = vec![Vec::new(); modes.len()];
    let mut create = vec![Vec::new(); modes.len()];
    for round in 0..rounds {
        for (m, (fs, l)) in fss.iter().zip(&layouts).enumerate() {
            per_task[m].push(time_tasks(fs.as_ref(), l, &names, round * n, n));
            let deep = l.mailbox("Agent-1").cur().join("x.json");
            let _ = fs.create_new(&deep, b"x", false);
            stat[m].push(time_op(n * 5, || {
                fs.stat(&deep).unwrap();
            }));
            let f = deep.with_file_name("y.json");
            create[m].push(time_op(n, || {
                fs.create_new(&f, b"y", false).unwrap();
                fs.remove_file(&f).unwrap();
            }));
        }
    }
    println!(
        "{n} tasks x {rounds} rounds, {OPS_PER_TASK} file operations per task, no fsync; CPU time, medians\n"
    );
    println!(
        "{:<22} {:>14} {:>16} {:>14} {:>18}",
        "", "CPU µs/task", "vs plain", "stat (ns)", "create+remove (ns)"
    );
    let base = median(per_task[0].clone());
    for (m, (label, _)) in modes.iter().enumerate() {
        let t = median(per_task[m].clone());
        println!(
            "{label:<22} {t:>14.1} {:>+11.1} µs/task {:>14.0} {:>18.0}",
            t - base,
            median(stat[m].clone()),
            median(create[m].clone())
        );
    }
}

//! W9, the soak: one broker under full load for `--soak-secs` (10 minutes by default), P producer
//! processes submitting as fast as the broker takes work (each holds back while more than 2,000
//! messages and queued tasks wait, so the load is the broker's pace, not an ever-growing inbox)
//! and A agents claiming and completing. Every `--soak-interval` it samples throughput, the
//! broker's resident memory (`VmRSS`) and CPU, and the root's files and bytes per area
//! (`mailroom::footprint::measure`). At the end the producers stop, the agents drain, and every
//! submitted task must have been completed once.
//!
//! Figures, read side by side, never checked: how flat the root's files and bytes, the RSS and the
//! throughput are over the last half (the spread, max − min, over the mean), and what a finished
//! task costs in the archive (compressed bytes over the tasks its segments complete). The broker
//! runs the default retention except `archive_keep_bytes` (`--soak-archive-bytes`, 64 MB) and
//! `finished_keep_count` (`--soak-finished-keep`, 200,000), so the archive and the remembered
//! finished tasks reach their limits within the soak.

use super::Workload;
use crate::error::BenchError;
use crate::journal_watch::{JournalTail, archive_cost};
use crate::load::task_id;
use crate::pipeline::{logs_in, path_arg, write_config};
use crate::procs::{cpu_time, mb, rss, start_broker, write_file};
use crate::report::{Section, round};
use crate::run::{Ctx, log};
use mailroom::footprint::{Footprint, measure};
use runtime_layout::Layout;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

pub struct W9;

/// One sample, taken at the end of an interval.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the load started.
    #[serde(serialize_with = "round::r3")]
    pub at_secs: f64,
    /// Tasks completed during the interval, per second.
    #[serde(serialize_with = "round::r0")]
    pub tasks_per_s: f64,
    /// `VmRSS` of the broker now.
    #[serde(serialize_with = "round::r3")]
    pub rss_mb: f64,
    /// The broker's CPU during the interval, in percent of one core.
    #[serde(serialize_with = "round::r0")]
    pub broker_cpu_pct: f64,
    pub footprint: Footprint,
}

#[derive(Debug, Clone, Serialize)]
pub struct W9Report {
    pub secs: u64,
    pub interval_secs: u64,
    /// The retention the broker ran with.
    pub settings: Vec<String>,
    pub samples: Vec<Sample>,
    pub submitted: usize,
    pub completed: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// Spread (max − min) over the mean in the last half of the samples, in percent.
    #[serde(serialize_with = "round::r3_opt")]
    pub flat_files_pct: Option<f64>,
    #[serde(serialize_with = "round::r3_opt")]
    pub flat_bytes_pct: Option<f64>,
    /// Bytes retention keeps (`inbox/cur` and the archive), without the live journal (a sawtooth:
    /// it grows until each compaction) and the snapshot with its tomb files.
    #[serde(serialize_with = "round::r3_opt")]
    pub flat_retained_bytes_pct: Option<f64>,
    #[serde(serialize_with = "round::r3_opt")]
    pub flat_rss_pct: Option<f64>,
    #[serde(serialize_with = "round::r3_opt")]
    pub flat_tasks_per_s_pct: Option<f64>,
    /// Compressed archive bytes per task its segments complete.
    #[serde(serialize_with = "round::r3_opt")]
    pub archive_bytes_per_task: Option<f64>,
}

impl Workload for W9 {
    fn names(&self) -> &'static [&'static str] {
        &["w9"]
    }

    fn run(&self, cx: &mut Ctx, _earlier: &[Box<dyn Section>]) -> Result<Box<dyn Section>, BenchError> {
        let (secs, every) = (cx.plan.soak_secs, cx.plan.soak_interval);
        log(&format!("W9 soak, {secs} s, a sample every {every} s"));
        let d = cx.fresh("w9")?;
        let root = d.join("runtime");
        let mut p = cx.base();
        p.prefix = "S".into();
        p.journal_settings = vec![format!("archive_keep_bytes = {}", cx.plan.soak_archive_bytes)];
        p.broker_settings.push(format!("finished_keep_count = {}", cx.plan.soak_finished_keep));
        write_config(cx.fs(), &root, &p)?;
        let settings = {
            let cfg = mailroom::config::Config::load(cx.fs(), &Layout::new(&root))
                .map_err(|e| BenchError::Usage(e.to_string()))?;
            let (b, j) = (&cfg.broker, &cfg.journal);
            vec![
                format!("inbox_keep_count = {}", b.inbox_keep_count),
                format!("inbox_keep_bytes = {}", b.inbox_keep_bytes),
                format!("inbox_retention_secs = {}", b.inbox_retention_secs),
                format!("compact_after_records = {}", b.compact_after_records),
                format!("compact_after_bytes = {}", b.compact_after_bytes),
                format!("compact_min_bytes = {}", b.compact_min_bytes),
                format!("finished_keep_count = {}", b.finished_keep_count),
                format!("archive_keep = {:?}", j.archive_keep),
                format!("archive_keep_bytes = {}", j.archive_keep_bytes),
            ]
        };
        let (broker, _) = start_broker(cx.fs(), &cx.bins, &root, &d.join("broker.log"))?;
        let layout = Layout::new(&root);
        let mut tail = JournalTail::new(&layout);
        let (stop, until) = (d.join("stop"), d.join("until"));
        let agents: Vec<String> = (1..=p.agents).map(|i| format!("Agent-{i}")).collect();
        for a in &agents {
            layout.mailbox(a).create(cx.fs(), true)?;
        }
        let mut agent_procs = Vec::new();
        for a in &agents {
            let mut args = vec!["--name".into(), a.clone(), "--stop".into(), path_arg(&stop)];
            args.extend(["--out".into(), path_arg(&d.join(format!("{a}.json")))]);
            agent_procs.push(cx.bins.load("agent", &root, &args, &d.join(format!("{a}.log")), a)?);
        }
        let mut producers = Vec::new();
        for i in 0..p.producers {
            let mut args: Vec<String> = Vec::new();
            for (flag, value) in [
                ("--index", i.to_string()),
                ("--of", p.producers.to_string()),
                ("--tasks", "99999999".to_string()),
                ("--body-bytes", p.body_bytes.to_string()),
                ("--assigned-pct", p.assigned_pct.to_string()),
                ("--agents", p.agents.to_string()),
                ("--prefix", p.prefix.clone()),
                ("--until", path_arg(&until)),
                ("--out", path_arg(&d.join(format!("producer-{i}.json")))),
            ] {
                args.extend([flag.to_string(), value]);
            }
            if let Some(c) = &p.client_durability {
                args.extend(["--durability".into(), c.clone()]);
            }
            let log = d.join(format!("producer-{i}.log"));
            producers.push(cx.bins.load("producer", &root, &args, &log, &format!("producer {i}"))?);
        }
        let mut seen = Seen::default();
        let start = Instant::now();
        let mut samples = Vec::new();
        let (mut last_done, mut last_cpu, mut last_at) = (0, cpu_time(broker.pid()).unwrap_or_default(), 0.0);
        for k in 1..=secs.div_ceil(every) {
            let due = Duration::from_secs((k * every).min(secs));
            while start.elapsed() < due {
                std::thread::sleep(Duration::from_millis(20));
                tail.poll_ids(|id| seen.see(id));
                for pr in &mut producers {
                    pr.check().map_err(|e| logs_in(e, &d))?;
                }
            }
            let at = start.elapsed().as_secs_f64();
            let cpu = cpu_time(broker.pid()).unwrap_or_default();
            let footprint = measure(cx.fs(), &layout)?;
            let s = Sample {
                at_secs: at,
                tasks_per_s: (tail.completes - last_done) as f64 / (at - last_at).max(1e-9),
                rss_mb: mb(rss(broker.pid()).unwrap_or(0)),
                broker_cpu_pct: cpu.saturating_sub(last_cpu).as_secs_f64() * 100.0 / (at - last_at).max(1e-9),
                footprint,
            };
            log(&format!("W9 {}", sample_line(&s)));
            samples.push(s);
            (last_done, last_cpu, last_at) = (tail.completes, cpu, at);
        }
        // Stop the load, then let the agents finish everything that was submitted.
        write_file(&until, b"")?;
        for pr in producers {
            pr.wait(Duration::from_secs(120)).map_err(|e| logs_in(e, &d))?;
        }
        let submitted = submitted_ids(&d, p.producers, &p.prefix)?;
        let mut last = (tail.completes, Instant::now());
        while submitted.iter().any(|id| !seen.done.contains(id)) {
            std::thread::sleep(Duration::from_millis(50));
            tail.poll_ids(|id| seen.see(id));
            if tail.completes != last.0 {
                last = (tail.completes, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(60) {
                break;
            }
        }
        write_file(&stop, b"")?;
        for a in agent_procs {
            a.wait(Duration::from_secs(60)).map_err(|e| logs_in(e, &d))?;
        }
        broker.terminate().map_err(|e| logs_in(e, &d))?;
        let (bytes, tasks) = archive_cost(cx.fs(), &root)?;
        let half = &samples[samples.len() / 2..];
        let spread = |f: &dyn Fn(&Sample) -> f64| spread(&half.iter().map(f).collect::<Vec<_>>());
        Ok(Box::new(W9Report {
            secs,
            interval_secs: every,
            settings,
            submitted: submitted.len(),
            completed: submitted.iter().filter(|id| seen.done.contains(*id)).count(),
            lost: submitted.iter().filter(|id| !seen.done.contains(*id)).count(),
            duplicated: seen.duplicated,
            flat_files_pct: spread(&|s| s.footprint.total().files as f64),
            flat_bytes_pct: spread(&|s| s.footprint.total().bytes as f64),
            flat_retained_bytes_pct: spread(&|s| {
                (s.footprint.inbox_kept.bytes + s.footprint.archive.bytes) as f64
            }),
            flat_rss_pct: spread(&|s| s.rss_mb),
            flat_tasks_per_s_pct: spread(&|s| s.tasks_per_s),
            archive_bytes_per_task: (tasks > 0).then(|| bytes as f64 / tasks as f64),
            samples,
        }))
    }
}

/// Task ids the journal shows completed, and how many completions were of a task seen before.
#[derive(Default)]
struct Seen {
    done: HashSet<String>,
    duplicated: usize,
}

impl Seen {
    fn see(&mut self, id: &str) {
        if !self.done.insert(id.to_string()) {
            self.duplicated += 1;
        }
    }
}

/// The ids the producers say they submitted (each its share: index, index+of, ...).
fn submitted_ids(d: &std::path::Path, producers: usize, prefix: &str) -> Result<Vec<String>, BenchError> {
    let mut out = Vec::new();
    for i in 0..producers {
        let path = d.join(format!("producer-{i}.json"));
        let v: Value = std::fs::read(&path).map_err(|e| BenchError::io(&path, e)).and_then(|b| {
            serde_json::from_slice(&b).map_err(|e| BenchError::process("producer report", e))
        })?;
        let n = v["submitted"].as_u64().unwrap_or(0) as usize;
        out.extend((0..n).map(|k| task_id(prefix, i + k * producers)));
    }
    Ok(out)
}

/// (max − min) / mean, in percent; `None` with fewer than two values.
fn spread(v: &[f64]) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(l, h), x| (l.min(*x), h.max(*x)));
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (mean > 0.0).then(|| (hi - lo) / mean * 100.0)
}

fn sample_line(s: &Sample) -> String {
    let f = &s.footprint;
    let a = |x: mailroom::footprint::Area| format!("{:>5} {:>6.1}", x.files, mb(x.bytes));
    format!(
        "{:>4.0} s {:>5.0}/s rss {:>5.1} MB cpu {:>3.0}% | kept {} | live {} | snap {} | archive {} | quar {} | tasks {} | root {}",
        s.at_secs,
        s.tasks_per_s,
        s.rss_mb,
        s.broker_cpu_pct,
        a(f.inbox_kept),
        a(f.journal_live),
        a(f.snapshot),
        a(f.archive),
        a(f.quarantine),
        a(f.tasks),
        a(f.total())
    )
}

impl Section for W9Report {
    fn key(&self) -> &'static str {
        "w9_soak"
    }

    fn headline(&self) -> Option<String> {
        let pct = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.0}%"));
        Some(format!(
            "W9 {} s: root flat {}/{} (files/bytes), RSS {}, tasks/s {}, lost {}, archive {} B/task",
            self.secs,
            pct(self.flat_files_pct),
            pct(self.flat_bytes_pct),
            pct(self.flat_rss_pct),
            pct(self.flat_tasks_per_s_pct),
            self.lost,
            self.archive_bytes_per_task.map_or("-".into(), |b| format!("{b:.0}"))
        ))
    }
}

impl fmt::Display for W9Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "W9 soak         {} s, a sample every {} s; {} submitted, {} completed, lost {}, duplicated {}",
            self.secs, self.interval_secs, self.submitted, self.completed, self.lost, self.duplicated
        )?;
        writeln!(f, "                retention: {}", self.settings.join(", "))?;
        writeln!(
            f,
            "                (files MB) per area: kept = inbox/cur, live = journal replay reads, archive = compacted"
        )?;
        for s in &self.samples {
            writeln!(f, "                {}", sample_line(s))?;
        }
        let pct = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.1}%"));
        writeln!(
            f,
            "                last half spread: root files {}, root bytes {} (kept + archive {}), RSS {}, tasks/s {}; archive {} bytes per finished task",
            pct(self.flat_files_pct),
            pct(self.flat_bytes_pct),
            pct(self.flat_retained_bytes_pct),
            pct(self.flat_rss_pct),
            pct(self.flat_tasks_per_s_pct),
            self.archive_bytes_per_task.map_or("-".into(), |b| format!("{b:.0}"))
        )
    }
}

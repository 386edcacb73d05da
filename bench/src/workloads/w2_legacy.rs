//! W2, the legacy board: `legacy_board.py` (four JSON boards, a lock per board, read-modify-write
//! of whole boards) with the same task and process counts, then again with `--unlocked-rmw`, beside
//! mailroom at the same count (W1 itself when the counts match). Skipped, and said so, when the
//! script or `python3` is missing.

use super::Workload;
use super::w1_pipeline::W1Report;
use crate::error::BenchError;
use crate::pipeline::{Pipe, PipeReport, run_fresh};
use crate::procs::runs;
use crate::report::{Section, find, round};
use crate::run::{Ctx, log};
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

pub struct W2;

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum W2Report {
    Skipped {
        skipped: String,
        /// What to do about it, in the summary.
        #[serde(skip)]
        hint: &'static str,
    },
    Ran(Box<LegacyRun>),
}

#[derive(Debug, Clone, Serialize)]
pub struct LegacyRun {
    pub tasks: usize,
    pub script: String,
    pub legacy_tasks_per_s: f64,
    /// The script's own summary line.
    pub legacy_line: String,
    pub legacy_lost: usize,
    pub legacy_duplicated: usize,
    pub unlocked_tasks_per_s: f64,
    pub unlocked_line: String,
    pub unlocked_lost: usize,
    pub unlocked_duplicated: usize,
    pub mailroom: PipeReport,
    /// mailroom's tasks/s over the locked legacy board's.
    #[serde(serialize_with = "round::r3")]
    pub ratio: f64,
}

impl Workload for W2 {
    fn names(&self) -> &'static [&'static str] {
        &["w2"]
    }

    fn run(&self, cx: &mut Ctx, earlier: &[Box<dyn Section>]) -> Result<Box<dyn Section>, BenchError> {
        let Some(script) = legacy_script(cx.plan.legacy_script.as_deref()) else {
            return Ok(Box::new(W2Report::Skipped {
                skipped: "legacy_board.py not found".into(),
                hint: " (--legacy-script PATH)",
            }));
        };
        if !runs("python3") {
            return Ok(Box::new(W2Report::Skipped { skipped: "python3 not found".into(), hint: "" }));
        }
        let n = cx.plan.legacy_tasks;
        let base = cx.base();
        log(&format!("W2 legacy board, {n} tasks"));
        let l = legacy(cx, &script, n, &base, false)?;
        log("W2 legacy board --unlocked-rmw");
        let u = legacy(cx, &script, n, &base, true)?;
        let mailroom = match find::<W1Report>(earlier) {
            Some(w1) if w1.run.tasks == n => w1.run.clone(),
            _ => {
                log(&format!("W2 mailroom at {n} tasks"));
                run_fresh(cx, "w2-mailroom", &Pipe { tasks: n, ..base })?
            }
        };
        Ok(Box::new(W2Report::Ran(Box::new(LegacyRun {
            tasks: n,
            script: script.display().to_string(),
            legacy_tasks_per_s: l.tasks_per_s,
            legacy_line: l.line,
            legacy_lost: l.lost,
            legacy_duplicated: l.duplicated,
            unlocked_tasks_per_s: u.tasks_per_s,
            unlocked_line: u.line,
            unlocked_lost: u.lost,
            unlocked_duplicated: u.duplicated,
            ratio: mailroom.tasks_per_s / l.tasks_per_s.max(1e-9),
            mailroom,
        }))))
    }
}

/// The legacy board's summary line, parsed.
struct Legacy {
    line: String,
    tasks_per_s: f64,
    lost: usize,
    duplicated: usize,
}

/// `--legacy-script`, else `../shared/bench/legacy_board.py` from the current directory or any
/// ancestor, or from the workspace this crate was built in.
fn legacy_script(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let rel = Path::new("../shared/bench/legacy_board.py");
    let mut candidates = vec![rel.to_path_buf()];
    if let Ok(cwd) = std::env::current_dir() {
        for anc in cwd.ancestors() {
            candidates.push(anc.join(rel));
        }
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel));
    candidates.into_iter().find(|p| p.is_file())
}

fn legacy(cx: &mut Ctx, script: &Path, tasks: usize, p: &Pipe, unlocked: bool) -> Result<Legacy, BenchError> {
    let d = cx.fresh(if unlocked { "legacy-unlocked" } else { "legacy" })?;
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script)
        .arg("--dir")
        .arg(d.join("boards"))
        .args(["--tasks", &tasks.to_string(), "--producers", &p.producers.to_string()])
        .args(["--agents", &p.agents.to_string(), "--timeout", "600"]);
    if unlocked {
        cmd.arg("--unlocked-rmw");
    }
    let what = format!("python3 {}", script.display());
    let out = cmd.output().map_err(|e| BenchError::process(&what, e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with("legacy:")).ok_or_else(|| {
        BenchError::process(&what, format!("printed no summary: {}", String::from_utf8_lossy(&out.stderr)))
    })?;
    let num_before = |key: &str| -> f64 {
        line.split(key)
            .next()
            .and_then(|s| s.split_whitespace().last())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0)
    };
    let num_after = |key: &str| -> usize {
        line.split(key)
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    Ok(Legacy {
        line: line.to_string(),
        tasks_per_s: num_before(" tasks/s"),
        lost: num_after("lost="),
        duplicated: num_after("duplicated="),
    })
}

impl Section for W2Report {
    fn key(&self) -> &'static str {
        "w2_legacy"
    }

    fn headline(&self) -> Option<String> {
        Some(match self {
            Self::Skipped { .. } => "W2 skipped".into(),
            Self::Ran(r) => format!(
                "W2 {:.0}x legacy, lost {}/{} unlocked vs {}",
                r.ratio,
                r.unlocked_lost,
                r.tasks,
                r.mailroom.lost + r.mailroom.duplicated
            ),
        })
    }
}

impl fmt::Display for W2Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Skipped { skipped, hint } => writeln!(f, "W2 legacy       skipped: {skipped}{hint}"),
            Self::Ran(r) => writeln!(
                f,
                "W2 legacy       {:>8.1} tasks/s locked (lost {}, dup {}), {:.1} tasks/s --unlocked-rmw (lost {}, dup {}); mailroom {:.0} tasks/s (lost {}, dup {}) = {:.0}x, {} tasks",
                r.legacy_tasks_per_s,
                r.legacy_lost,
                r.legacy_duplicated,
                r.unlocked_tasks_per_s,
                r.unlocked_lost,
                r.unlocked_duplicated,
                r.mailroom.tasks_per_s,
                r.mailroom.lost,
                r.mailroom.duplicated,
                r.ratio,
                r.tasks
            ),
        }
    }
}

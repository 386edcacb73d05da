//! The report of a run: typed, and written two ways from the same values, so the JSON and the
//! human summary can never disagree. Each workload returns a [`Section`] (a `Serialize` struct
//! that also renders its summary lines); [`Report`] serialises as one JSON object (`machine`,
//! `params`, one key per section, `summary`) and displays as the summary, ending with the line of
//! key figures that starts `bench:`.

use serde::{Serialize, Serializer, ser::SerializeMap};
use serde_json::Value;
use std::any::Any;
use std::fmt;

/// One workload's results.
pub trait Section: AsJson + fmt::Display + Any {
    /// Its key in the JSON report (`w1_pipeline`, ...).
    fn key(&self) -> &'static str;
    /// Its part of the closing `bench:` line, if it has one.
    fn headline(&self) -> Option<String>;
    /// Fills figures that compare it with other workloads, once every workload has run.
    fn relate(&mut self, _others: &[Box<dyn Section>]) {}
}

/// The section of type `T` among `sections`, if that workload ran.
pub fn find<T: Section>(sections: &[Box<dyn Section>]) -> Option<&T> {
    sections.iter().find_map(|s| (s.as_ref() as &dyn Any).downcast_ref::<T>())
}

/// A value as JSON, through its `Serialize` (implemented for every `Serialize` type).
pub trait AsJson {
    fn as_json(&self) -> Result<Value, serde_json::Error>;
}

impl<T: Serialize> AsJson for T {
    fn as_json(&self) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

/// Where the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub kernel: String,
    pub mem_gib: f64,
    /// The filesystem type of `dir`.
    pub fs: String,
    /// Where the temporary roots were.
    pub dir: String,
}

/// The parameters every pipeline run shares.
#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub tasks: usize,
    pub producers: usize,
    pub agents: usize,
    pub repeat: usize,
    pub body_bytes: usize,
    pub assigned_pct: usize,
    pub broker_durability: String,
    pub client_durability: String,
}

/// A whole run.
pub struct Report {
    pub machine: Machine,
    pub params: Params,
    /// In the order of the summary.
    pub sections: Vec<Box<dyn Section>>,
}

impl Report {
    /// The key figures of every section, as the `bench:` line shows them (without `bench: `).
    pub fn summary(&self) -> String {
        self.sections.iter().filter_map(|s| s.headline()).collect::<Vec<_>>().join(" | ")
    }
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.sections.len() + 3))?;
        m.serialize_entry("machine", &self.machine)?;
        m.serialize_entry("params", &self.params)?;
        for section in &self.sections {
            m.serialize_entry(section.key(), &section.as_json().map_err(serde::ser::Error::custom)?)?;
        }
        m.serialize_entry("summary", &self.summary())?;
        m.end()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (m, p) = (&self.machine, &self.params);
        writeln!(
            f,
            "mailroom bench: {} cores ({}), kernel {}, {} at {}",
            m.nproc, m.cpu, m.kernel, m.fs, m.dir
        )?;
        writeln!(
            f,
            "  {} tasks of ~{} B, {} producers, {} agents, broker durability {}, client durability {}",
            p.tasks, p.body_bytes, p.producers, p.agents, p.broker_durability, p.client_durability
        )?;
        for section in &self.sections {
            write!(f, "{section}")?;
        }
        writeln!(f, "bench: {}", self.summary())
    }
}

/// p50 and p99 of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Lat {
    pub n: usize,
    #[serde(rename = "p50_ms", serialize_with = "round::r3")]
    pub p50: f64,
    #[serde(rename = "p99_ms", serialize_with = "round::r3")]
    pub p99: f64,
    #[serde(rename = "max_ms", serialize_with = "round::r3")]
    pub max: f64,
}

impl Lat {
    pub fn of(mut v: Vec<f64>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Self { n: v.len(), p50: at(0.5), p99: at(0.99), max: v[v.len() - 1] }
    }
}

impl fmt::Display for Lat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p50 {:.2} ms, p99 {:.2} ms", self.p50, self.p99)
    }
}

/// `1000000` as `1M`, `100000` as `100k`.
pub fn short(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n.is_multiple_of(1_000_000) => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n.is_multiple_of(1_000) => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// How figures are rounded in the JSON (the summary rounds as it prints).
pub mod round {
    use serde::Serializer;

    fn to3(x: f64) -> f64 {
        (x * 1000.0).round() / 1000.0
    }

    /// Three decimals.
    pub fn r3<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(to3(*x))
    }

    /// Three decimals, or `null`.
    pub fn r3_opt<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match x {
            Some(x) => s.serialize_f64(to3(*x)),
            None => s.serialize_none(),
        }
    }

    /// A whole number.
    pub fn r0<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(x.round())
    }

    /// Whole numbers.
    pub fn r0_all<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.round()))
    }
}

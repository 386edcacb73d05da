//! The `[cluster]` section of `mailroom.toml`: this broker is one node of a cluster whose shared
//! pools travel through NATS JetStream (docs/CLUSTER.md). Without the section nothing about the
//! broker changes. Everything is checked when the file is read; an error names the key.
//!
//! ```toml
//! [cluster]
//! nats = "nats://127.0.0.1:4222"   # or a list of the servers of one JetStream cluster
//! node = "a"                        # unique per broker
//! shared_pools = ["leads"]          # or ["*"]
//! ack_wait_secs = 300               # redelivery deadline of an unfinished task (default: the lease)
//! replicas = 3                      # copies JetStream keeps of the stream and bucket it creates
//! ```

use protocol::names::{validate_agent, validate_pool};
use serde::Deserialize;

/// The default name of the JetStream stream that holds the shared pools' tasks.
pub const DEFAULT_STREAM: &str = "MAILROOM_TASKS";
/// The default name of the key-value bucket that holds the cluster-wide task records.
pub const DEFAULT_BUCKET: &str = "mailroom_tasks";

/// The most copies JetStream keeps of a stream.
pub const MAX_REPLICAS: usize = 5;

/// One or several server URLs.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
enum Servers {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    nats: Servers,
    node: String,
    #[serde(default)]
    shared_pools: Vec<String>,
    #[serde(default)]
    ack_wait_secs: Option<u64>,
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    max_pull: Option<usize>,
    #[serde(default)]
    replicas: Option<usize>,
}

/// The parsed `[cluster]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The NATS servers (of one JetStream cluster).
    pub nats: Vec<String>,
    /// This node's name, unique in the cluster (agent-name rules).
    pub node: String,
    /// The pools whose tasks travel through the cluster; `*` shares every pool.
    pub shared_pools: Vec<String>,
    /// How long the cluster waits for a sign of life (an in-progress ack) of a node holding a
    /// task before it offers the task to another node. `None`: the broker's lease.
    pub ack_wait_secs: Option<u64>,
    /// The JetStream stream (work queue) and key-value bucket names.
    pub stream: String,
    pub bucket: String,
    /// Most tasks one node holds from one pool but has not yet seen finish (default 64): the
    /// cap on its ready window.
    pub max_pull: usize,
    /// How many servers of the JetStream cluster keep a copy of the stream and the bucket this
    /// node creates (default 1). A stream or bucket that exists already is used as it is.
    pub replicas: usize,
}

impl ClusterSettings {
    /// Whether tasks routed to `pool` travel through the cluster.
    pub fn shares(&self, pool: &str) -> bool {
        self.shared_pools.iter().any(|p| p == "*" || p == pool)
    }

    /// The redelivery deadline in seconds, given the broker's lease.
    pub fn ack_wait(&self, lease_secs: u64) -> u64 {
        self.ack_wait_secs.unwrap_or(lease_secs).max(1)
    }
}

pub(super) fn parse(raw: RawCluster) -> Result<ClusterSettings, String> {
    let nats = match raw.nats {
        Servers::One(s) => vec![s],
        Servers::Many(v) => v,
    };
    if nats.is_empty() || nats.iter().any(|s| s.trim().is_empty()) {
        return Err("cluster.nats: must name at least one server, none empty".into());
    }
    validate_agent(&raw.node).map_err(|e| format!("cluster.node: {}", e.rule))?;
    for p in &raw.shared_pools {
        if p != "*" {
            validate_pool(p).map_err(|e| format!("cluster.shared_pools: {}", e.rule))?;
        }
    }
    if raw.ack_wait_secs == Some(0) {
        return Err("cluster.ack_wait_secs: must be at least 1".into());
    }
    let name_ok = |s: &str| {
        !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let stream = raw.stream.unwrap_or_else(|| DEFAULT_STREAM.into());
    let bucket = raw.bucket.unwrap_or_else(|| DEFAULT_BUCKET.into());
    if !name_ok(&stream) || !name_ok(&bucket) {
        return Err("cluster.stream, cluster.bucket: 1-64 of `A-Z a-z 0-9 _ -`".into());
    }
    let max_pull = raw.max_pull.unwrap_or(64);
    if max_pull == 0 {
        return Err("cluster.max_pull: must be at least 1".into());
    }
    let replicas = raw.replicas.unwrap_or(1);
    if !(1..=MAX_REPLICAS).contains(&replicas) {
        return Err(format!(
            "cluster.replicas: must be 1 to {MAX_REPLICAS} (JetStream keeps at most {MAX_REPLICAS} copies), not {replicas}"
        ));
    }
    Ok(ClusterSettings {
        nats,
        node: raw.node,
        shared_pools: raw.shared_pools,
        ack_wait_secs: raw.ack_wait_secs,
        stream,
        bucket,
        max_pull,
        replicas,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn parses_the_cluster_section() {
        let c = Config::parse(
            "[cluster]\nnats = \"nats://127.0.0.1:4222\"\nnode = \"a\"\nshared_pools = [\"leads\"]\nack_wait_secs = 30\n",
        )
        .unwrap();
        let k = c.cluster.unwrap();
        assert_eq!(k.nats, ["nats://127.0.0.1:4222"]);
        assert!(k.shares("leads") && !k.shares("build"));
        assert_eq!(k.ack_wait(300), 30);
        let c = Config::parse("[cluster]\nnats = [\"nats://h1:4222\", \"nats://h2:4222\"]\nnode = \"b\"\nshared_pools = [\"*\"]\n")
            .unwrap();
        let k = c.cluster.unwrap();
        assert_eq!(k.nats.len(), 2);
        assert!(k.shares("anything"));
        assert_eq!(k.ack_wait(300), 300);
        assert_eq!(k.replicas, 1, "one copy unless asked");
        let c =
            Config::parse("[cluster]\nnats = [\"a\", \"b\", \"c\"]\nnode = \"c\"\nreplicas = 3\n").unwrap();
        assert_eq!(c.cluster.unwrap().replicas, 3);
        assert!(Config::parse("").unwrap().cluster.is_none());
    }

    #[test]
    fn cluster_errors_name_the_key() {
        let e = |t: &str| Config::parse(t).unwrap_err();
        assert!(e("[cluster]\nnats = \"x\"\nnode = \"../a\"\n").contains("cluster.node"));
        assert!(e("[cluster]\nnats = []\nnode = \"a\"\n").contains("cluster.nats"));
        assert!(
            e("[cluster]\nnats = \"x\"\nnode = \"a\"\nshared_pools = [\"a b\"]\n")
                .contains("cluster.shared_pools")
        );
        assert!(
            e("[cluster]\nnats = \"x\"\nnode = \"a\"\nack_wait_secs = 0\n").contains("cluster.ack_wait_secs")
        );
        assert!(e("[cluster]\nnats = \"x\"\nnode = \"a\"\nnodes = 1\n").contains("nodes"));
        for bad in ["0", "6"] {
            let err = e(&format!("[cluster]\nnats = \"x\"\nnode = \"a\"\nreplicas = {bad}\n"));
            assert!(err.contains("cluster.replicas: must be 1 to 5"), "{err}");
        }
        assert!(e("[cluster]\nnats = \"x\"\nnode = \"a\"\nreplicas = -1\n").contains("replicas"));
    }
}

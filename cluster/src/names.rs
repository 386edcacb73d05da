//! Names the cluster uses, derived from the configuration and from pool names and task ids.
//!
//! NATS subject tokens and consumer names may not contain `.`; pool names may, but never `%`, so
//! `.` → `%` is one-to-one. Key-value keys allow only `A-Z a-z 0-9 - _ / = .`; task ids allow
//! almost anything, so an id made only of `A-Z a-z 0-9 - _` is its own key and any other is `=`
//! followed by its bytes in hex (`=` never starts a plain key, so no two ids share a key).

use mailroom::config::ClusterSettings;

/// A pool name as one subject token or consumer-name part.
pub fn token(pool: &str) -> String {
    pool.replace('.', "%")
}

/// The pool a token names.
pub fn pool_of_token(token: &str) -> String {
    token.replace('%', ".")
}

/// The subject the tasks of `pool` are published on.
pub fn subject(cfg: &ClusterSettings, pool: &str) -> String {
    format!("{}.{}", cfg.stream, token(pool))
}

/// Every subject of the stream.
pub fn subjects(cfg: &ClusterSettings) -> String {
    format!("{}.>", cfg.stream)
}

/// The durable consumer every node pulls `pool`'s tasks through (one per pool, shared).
pub fn consumer(pool: &str) -> String {
    format!("pool_{}", token(pool))
}

/// The key of a task's cluster-wide record.
pub fn key(task_id: &str) -> String {
    if !task_id.is_empty() && task_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        task_id.to_string()
    } else {
        let mut k = String::with_capacity(1 + 2 * task_id.len());
        k.push('=');
        for b in task_id.bytes() {
            k.push_str(&format!("{b:02x}"));
        }
        k
    }
}

/// The id that makes a publication idempotent: JetStream drops a second message with the same id
/// within the stream's duplicate window. One per forward of a task (`generation`), so a
/// republication after a crash is dropped but a later redrive of the same task is not.
pub fn message_id(origin: &str, task_id: &str, generation: &str) -> String {
    format!("{origin}/{}/{generation}", key(task_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_and_distinct() {
        assert_eq!(key("T-1_a"), "T-1_a");
        assert_eq!(key("a.b"), "=612e62");
        assert_ne!(key("=61"), key("a"));
        assert_eq!(key("é"), "=c3a9");
        assert_eq!(pool_of_token(&token("a.b")), "a.b");
        assert!(!consumer("x.y").contains('.'));
    }
}

//! The small JSON files that say who may claim what: an agent's `agent.json` (its capabilities,
//! written by the agent or an operator) and `capabilities/<tag>.json` (the set of requirements a
//! dispatch name's tag stands for, written once by the broker). Both are replaced atomically, so
//! a reader sees the old content or the new, never half a file.

use crate::fs::{Fs, FsError};
use crate::layout::Layout;
use crate::ops::{Durability, NameSource, write_atomic};
use protocol::capability::{AgentProfile, CapabilitySet};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Largest profile or capability set read, in bytes.
const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// A profile or capability set that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

fn read_json<T: DeserializeOwned>(fs: &dyn Fs, path: &Path) -> Result<Option<T>, ProfileError> {
    let bytes = match fs.read(path, MAX_PROFILE_BYTES) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| ProfileError::Invalid {
        path: path.to_path_buf(),
        reason: format!("not a valid file: {e}"),
    })
}

/// An agent's profile; `None` when it declared nothing (no `agent.json`).
pub fn read_agent_profile(
    fs: &dyn Fs,
    layout: &Layout,
    agent: &str,
) -> Result<Option<AgentProfile>, ProfileError> {
    read_json(fs, &layout.agent_profile(agent))
}

/// Replaces an agent's profile. The agent's mailbox must exist.
pub fn write_agent_profile(
    fs: &dyn Fs,
    layout: &Layout,
    agent: &str,
    profile: &AgentProfile,
    names: &NameSource,
    durability: Durability,
) -> Result<(), FsError> {
    let bytes = serde_json::to_vec_pretty(profile).expect("a profile is strings: it always serialises");
    write_atomic(fs, &layout.agent_profile(agent), &bytes, names, durability)
}

/// The set a tag stands for; `None` when the broker has not written it.
pub fn read_capability_set(
    fs: &dyn Fs,
    layout: &Layout,
    tag: &str,
) -> Result<Option<CapabilitySet>, ProfileError> {
    read_json(fs, &layout.capability_set(tag))
}

/// Writes the set under its tag unless it is there already (a tag's set never changes).
pub fn write_capability_set(
    fs: &dyn Fs,
    layout: &Layout,
    set: &CapabilitySet,
    names: &NameSource,
    durability: Durability,
) -> Result<(), FsError> {
    let path = layout.capability_set(&set.tag);
    if fs.stat(&path)?.is_some() {
        return Ok(());
    }
    fs.create_dir_all(&layout.capabilities_dir())?;
    let bytes = serde_json::to_vec_pretty(set).expect("a capability set is strings: it always serialises");
    write_atomic(fs, &path, &bytes, names, durability)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::RealFs;

    #[test]
    fn profiles_and_sets_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let l = Layout::new(d.path());
        l.create(&RealFs).unwrap();
        l.mailbox("A").create(&RealFs, true).unwrap();
        let names = NameSource::new();
        assert_eq!(read_agent_profile(&RealFs, &l, "A").unwrap(), None);
        let p = AgentProfile { capabilities: vec!["python".into()] };
        write_agent_profile(&RealFs, &l, "A", &p, &names, Durability::Batch).unwrap();
        assert_eq!(read_agent_profile(&RealFs, &l, "A").unwrap(), Some(p));
        let set = CapabilitySet::of(&["Web".to_string()]).unwrap();
        std::fs::remove_dir(l.capabilities_dir()).unwrap();
        write_capability_set(&RealFs, &l, &set, &names, Durability::Batch).unwrap();
        assert_eq!(read_capability_set(&RealFs, &l, &set.tag).unwrap(), Some(set.clone()));
        std::fs::write(l.agent_profile("A"), b"{\"capabilities\": 3}").unwrap();
        assert!(matches!(read_agent_profile(&RealFs, &l, "A"), Err(ProfileError::Invalid { .. })));
    }
}

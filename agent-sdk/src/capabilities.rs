//! What an agent may claim: the capabilities it declares (`mailboxes/<agent>/agent.json`) and the
//! check of a gated task's name against them. A pool task that requires capabilities carries the
//! tag of the set in its name (`…-T-1.caps-<tag>.json`); the set is in `capabilities/<tag>.json`,
//! written by the broker once and never changed, so it is read once per tag and remembered.
//! Untagged names cost nothing; a scan that meets a tagged one reads the agent's `agent.json` once.

use crate::{Agent, Error};
use protocol::capability::{self, AgentProfile, validate_capability};
use runtime_layout::{read_agent_profile, read_capability_set, write_agent_profile};

impl Agent {
    /// The capabilities this agent declares (its `agent.json`; none when it has declared nothing).
    pub fn capabilities(&self) -> Result<Vec<String>, Error> {
        let p = read_agent_profile(self.client.fs.as_ref(), &self.client.layout, &self.name)?;
        Ok(p.unwrap_or_default().capabilities)
    }

    /// Declares the capabilities this agent holds, replacing what it declared before: from then
    /// on it claims, from shared pools, the tasks that require some of them (and the broker lets
    /// it). Written atomically into `mailboxes/<agent>/agent.json`.
    pub fn set_capabilities<S: AsRef<str>>(&self, capabilities: &[S]) -> Result<(), Error> {
        let mut list: Vec<String> = Vec::with_capacity(capabilities.len());
        for c in capabilities {
            let c = c.as_ref().trim();
            validate_capability(c).map_err(|e| Error::InvalidName(e.within("capabilities")))?;
            if !list.iter().any(|l| capability::key(l) == capability::key(c)) {
                list.push(c.to_string());
            }
        }
        let profile = AgentProfile { capabilities: list };
        let (fs, layout) = (self.client.fs.as_ref(), &self.client.layout);
        let durability = self.client.durability();
        write_agent_profile(fs, layout, &self.name, &profile, &self.client.names, durability)?;
        Ok(())
    }

    /// May this agent claim a file whose name carries the capability tag `tag`? Reads the tag's set
    /// once (then remembers it), and `held`, the agent's own capabilities, once per scan.
    pub(crate) fn may_claim(&self, tag: &str, held: &mut Option<Vec<String>>) -> Result<bool, Error> {
        let known = {
            let cache = self.sets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            cache.get(tag).cloned()
        };
        let set = match known {
            Some(s) => s,
            None => match read_capability_set(self.client.fs.as_ref(), &self.client.layout, tag)? {
                // Not written yet (the broker writes it before the file: a copy in flight): skip.
                None => return Ok(false),
                Some(s) => {
                    let mut cache = self.sets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    cache.insert(tag.to_string(), s.capabilities.clone());
                    s.capabilities
                }
            },
        };
        if held.is_none() {
            *held = Some(self.capabilities()?);
        }
        Ok(capability::missing(&set, held.as_deref().unwrap_or_default()).is_empty())
    }
}

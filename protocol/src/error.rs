//! Validation errors that name the field and the rule that was broken.

use std::fmt;

/// A value that does not fit the protocol. `field` is a dotted path into the JSON object
/// (`task.priority`, `claim`), `rule` says what was expected, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub field: String,
    pub rule: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self { field: field.into(), rule: rule.into() }
    }

    /// The same error, with `prefix.` put in front of the field path.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field =
            if self.field.is_empty() { prefix.to_string() } else { format!("{prefix}.{}", self.field) };
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.rule)
        } else {
            write!(f, "field `{}`: {}", self.field, self.rule)
        }
    }
}

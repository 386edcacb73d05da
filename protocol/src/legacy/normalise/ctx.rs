//! The work in progress of one normalisation: the fields left to read, the values set aside
//! under `legacy`, and the changes recorded so far.

use crate::legacy::{Change, ChangeKind};
use serde_json::{Map, Value};

pub(super) struct Ctx {
    pub(super) m: Map<String, Value>,
    pub(super) legacy: Map<String, Value>,
    pub(super) changes: Vec<Change>,
}

impl Ctx {
    pub(super) fn change(
        &mut self,
        field: &str,
        kind: ChangeKind,
        from: Option<Value>,
        to: Option<Value>,
        warning: bool,
    ) {
        self.changes.push(Change::new(field, kind, from, to, warning));
    }

    /// Moves the value of `field` under `legacy.<field>`.
    pub(super) fn move_to_legacy(&mut self, field: &str, kind: ChangeKind, warning: bool) {
        if let Some(v) = self.m.remove(field) {
            self.keep_legacy(field, v.clone());
            self.change(field, kind, Some(v), None, warning);
        }
    }

    /// Keeps `v` under `legacy.<field>`; a second value for the same field (a legacy spelling
    /// renamed after the first was set aside) goes to `legacy.<field>#2`, and so on.
    pub(super) fn keep_legacy(&mut self, field: &str, v: Value) {
        let mut key = field.to_string();
        let mut n = 1;
        while self.legacy.contains_key(&key) {
            n += 1;
            key = format!("{field}#{n}");
        }
        self.legacy.insert(key, v);
    }
}

//! `mailroom`: the broker and command-line tool (the CLI lands with the agent SDK).
fn main() {}

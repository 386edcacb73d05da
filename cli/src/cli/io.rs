//! Reading command input (a file or `-` for stdin) and printing data on stdout. A reader that
//! stops reading (`mailroom schema | head -1`) is not an error: the command ends quietly with
//! exit 0, as a pipeline expects.

use super::exit::{self, Failure};
use serde_json::Value;
use std::io::{Read, Write};

pub fn read_input(file: &str) -> Result<Vec<u8>, Failure> {
    if file == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Failure::new(exit::ERROR, format!("stdin: {e}")))?;
        Ok(buf)
    } else {
        std::fs::read(file).map_err(|e| Failure::new(exit::ERROR, format!("{file}: {e}")))
    }
}

/// JSON if it parses, else the text as a string.
pub fn json_or_text(bytes: Vec<u8>) -> Value {
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).trim_end().to_string()))
}

/// Writes `text` to stdout.
pub fn emit(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // The reader went away: stop, successfully and silently.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::new(exit::OK, "")),
        Err(e) => Err(Failure::new(exit::ERROR, format!("stdout: {e}"))),
    }
}

/// Writes `v` as pretty JSON and a newline to stdout.
pub fn print_json(v: &Value) -> Result<(), Failure> {
    emit(&format!("{}\n", serde_json::to_string_pretty(v).expect("a JSON value serialises")))
}

/// A view as JSON (the views are plain data: this fails only on a bug, which it reports).
pub fn to_json(v: &impl serde::Serialize) -> Result<Value, Failure> {
    serde_json::to_value(v).map_err(|e| Failure::new(exit::ERROR, e))
}

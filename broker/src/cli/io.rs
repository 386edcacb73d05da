//! Reading command input (a file or `-` for stdin) and printing data on stdout.

use super::exit::{self, Failure};
use serde_json::Value;
use std::io::Read;

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

pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("a JSON value serialises"));
}

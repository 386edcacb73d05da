//! Collecting an import's input: every regular file under the given paths, in a stable order,
//! never following a symbolic link, at most [`MAX_DEPTH`] directories deep. Anything that is not
//! a regular file, cannot be read, is too large or too deep is reported as such, never silently
//! skipped.

use std::path::{Path, PathBuf};
use walkdir::WalkDir;

/// Largest file `mailroom import` reads.
pub const MAX_IMPORT_BYTES: u64 = 64 << 20;
/// Deepest directory `mailroom import` descends into, below each path it is given.
pub const MAX_DEPTH: usize = 64;

/// One input file of an import: how to show it, and its bytes (or why they could not be read).
pub struct ImportFile {
    pub display: String,
    pub bytes: Result<Vec<u8>, String>,
}

/// Every regular file under `paths`, each path's files sorted by name.
pub fn collect_import_files(paths: &[PathBuf]) -> Vec<ImportFile> {
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out);
    }
    out
}

fn walk(root: &Path, out: &mut Vec<ImportFile>) {
    let walker = WalkDir::new(root)
        .follow_links(false)
        .follow_root_links(false)
        .max_depth(MAX_DEPTH)
        .sort_by_file_name();
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e.path().unwrap_or(root);
                let why = e.io_error().map_or_else(|| e.to_string(), ToString::to_string);
                let verb =
                    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) { "list" } else { "read" };
                out.push(ImportFile {
                    display: path.display().to_string(),
                    bytes: Err(format!("cannot {verb}: {why}")),
                });
                continue;
            }
        };
        let display = entry.path().display().to_string();
        let kind = entry.file_type();
        if kind.is_dir() {
            if entry.depth() == MAX_DEPTH {
                let why = format!("not read: a directory more than {MAX_DEPTH} levels deep");
                out.push(ImportFile { display, bytes: Err(why) });
            }
            continue;
        }
        if !kind.is_file() {
            let why = "not a regular file (symlinks are never followed)".to_string();
            out.push(ImportFile { display, bytes: Err(why) });
            continue;
        }
        out.push(ImportFile { display, bytes: read(entry.path()) });
    }
}

fn read(p: &Path) -> Result<Vec<u8>, String> {
    let len = std::fs::symlink_metadata(p).map_err(|e| format!("cannot read: {e}"))?.len();
    if len > MAX_IMPORT_BYTES {
        return Err(format!("too large: {len} bytes, over the {MAX_IMPORT_BYTES}-byte limit"));
    }
    std::fs::read(p).map_err(|e| format!("cannot read: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_in_name_order_reporting_links_and_never_following_them() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("b/c")).unwrap();
        std::fs::write(src.join("b/c/z.json"), b"{}").unwrap();
        std::fs::write(src.join("a.json"), b"[]").unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.json"), b"{}").unwrap();
        std::os::unix::fs::symlink(&outside, src.join("link")).unwrap();
        let files = collect_import_files(&[src.clone(), src.join("link")]);
        let shown: Vec<(&str, bool)> = files
            .iter()
            .map(|f| (f.display.strip_prefix(src.to_str().unwrap()).unwrap(), f.bytes.is_ok()))
            .collect();
        assert_eq!(shown, [("/a.json", true), ("/b/c/z.json", true), ("/link", false), ("/link", false)]);
        assert!(files[2].bytes.as_ref().unwrap_err().contains("symlinks are never followed"));
    }
}

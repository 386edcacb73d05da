//! What the run happened on, for the report's first line: cores, CPU model, kernel and memory
//! (from `/proc`), and the filesystem the temporary roots are on (`/proc/self/mounts`).

use crate::report::Machine;
use std::path::Path;

/// The machine, with the roots under `dir`.
pub fn describe(dir: &Path) -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem_gib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| (k / 1024.0 / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0);
    Machine {
        nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        cpu,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        mem_gib,
        fs: fs_type(dir),
        dir: dir.display().to_string(),
    }
}

/// The filesystem type of `dir`, from `/proc/self/mounts` (longest matching mount point). An ext4
/// without a journal says so: its inode allocator skips recently freed inodes, a cost every file
/// creation pays there and nowhere else (docs/BENCHMARKS.md, "ext4 without a journal").
fn fs_type(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let found = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && dir.starts_with(f[1])).then(|| (f[1].len(), f[2].to_string(), f[0].to_string()))
        })
        .max();
    let Some((_, kind, source)) = found else { return "unknown".into() };
    if kind == "ext4" && !journaled(&source, Path::new("/proc/fs/jbd2")) {
        return "ext4 (no journal)".into();
    }
    kind
}

/// Whether the device `source` (`/dev/vda`) has a journal: the kernel lists each journal it runs
/// in `jbd2` as `<device>-<journal inode>` (`vda-8`).
fn journaled(source: &str, jbd2: &Path) -> bool {
    let Some(dev) = Path::new(source).file_name().and_then(|n| n.to_str()) else { return true };
    match std::fs::read_dir(jbd2) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_str().and_then(|n| n.rsplit_once('-')).is_some_and(|(d, _)| d == dev)),
        // No jbd2 directory at all: no journal is running anywhere.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        // Unreadable: say nothing rather than guess.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::journaled;

    #[test]
    fn a_device_is_journaled_when_jbd2_lists_it() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sda1-8")).unwrap();
        std::fs::create_dir(d.path().join("dm-0-8")).unwrap();
        assert!(journaled("/dev/sda1", d.path()));
        assert!(journaled("/dev/dm-0", d.path()));
        assert!(!journaled("/dev/vda", d.path()));
        assert!(!journaled("/dev/sda", d.path()), "a partition's journal is not the disk's");
        assert!(!journaled("/dev/vda", &d.path().join("absent")));
    }
}

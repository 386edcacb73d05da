//! The rules of `SimFs`: what a power loss keeps, how crashes stop every operation, how faults
//! are counted, and how locks are held and released.

use super::*;

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

#[test]
fn power_loss_keeps_only_what_was_synced() {
    let fs = SimFs::new();
    fs.create_dir_all(&p("/r/a")).unwrap();
    fs.create_dir_all(&p("/r/b")).unwrap();
    fs.create_new(&p("/r/a/synced"), b"one", true).unwrap();
    fs.create_new(&p("/r/a/unsynced"), b"two", false).unwrap();
    fs.sync_dir(&p("/r/a")).unwrap();
    fs.create_new(&p("/r/a/late"), b"three", true).unwrap();
    fs.restart(Crash::PowerLoss);
    assert_eq!(fs.read(&p("/r/a/synced"), 10).unwrap(), b"one");
    assert_eq!(fs.read(&p("/r/a/unsynced"), 10).unwrap(), b"", "entry durable, content not");
    assert!(fs.stat(&p("/r/a/late")).unwrap().is_none(), "entry never synced");
}

#[test]
fn a_rename_between_directories_needs_both_synced() {
    let fs = SimFs::new();
    fs.create_dir_all(&p("/q/new")).unwrap();
    fs.create_dir_all(&p("/m/cur")).unwrap();
    fs.create_new(&p("/q/new/t"), b"t", true).unwrap();
    fs.sync_dir(&p("/q/new")).unwrap();
    fs.rename_noreplace(&p("/q/new/t"), &p("/m/cur/t")).unwrap();
    fs.sync_dir(&p("/m/cur")).unwrap();
    fs.restart(Crash::Process);
    assert!(fs.stat(&p("/q/new/t")).unwrap().is_none(), "a process crash keeps the rename");
    fs.restart(Crash::PowerLoss);
    assert!(fs.stat(&p("/q/new/t")).unwrap().is_some() && fs.stat(&p("/m/cur/t")).unwrap().is_some());
    fs.create_new(&p("/q/new/u"), b"u", true).unwrap();
    fs.sync_dir(&p("/q/new")).unwrap();
    fs.rename(&p("/q/new/u"), &p("/m/cur/u")).unwrap();
    fs.sync_dir(&p("/q/new")).unwrap();
    fs.restart(Crash::PowerLoss);
    assert!(!fs.files().keys().any(|k| k.ends_with("u")), "source synced, destination not: lost");
}

#[test]
fn an_overwrite_is_durable_once_synced_and_refused_on_a_file_with_two_names() {
    let fs = SimFs::new();
    fs.create_dir_all(&p("/s")).unwrap();
    fs.create_new(&p("/s/a"), b"old", true).unwrap();
    fs.create_new(&p("/s/b"), b"old", true).unwrap();
    fs.sync_dir(&p("/s")).unwrap();
    fs.overwrite(&p("/s/a"), b"new, unsynced", false).unwrap();
    fs.overwrite(&p("/s/b"), b"new", true).unwrap();
    assert_eq!(fs.read(&p("/s/a"), 100).unwrap(), b"new, unsynced");
    fs.restart(Crash::PowerLoss);
    assert_eq!(fs.read(&p("/s/a"), 100).unwrap(), b"old", "what the inode held before");
    assert_eq!(fs.read(&p("/s/b"), 100).unwrap(), b"new");
    assert!(fs.overwrite(&p("/s/none"), b"x", false).unwrap_err().is_not_found());
    // A rename whose destination alone was synced leaves the file under both names.
    fs.create_dir_all(&p("/t")).unwrap();
    fs.rename_noreplace(&p("/s/b"), &p("/t/b")).unwrap();
    fs.sync_dir(&p("/t")).unwrap();
    fs.restart(Crash::PowerLoss);
    let e = fs.overwrite(&p("/t/b"), b"x", true).unwrap_err();
    assert!(matches!(e, FsError::NotReusable { .. }), "{e}");
    assert_eq!(fs.read(&p("/s/b"), 100).unwrap(), b"new");
}

#[test]
fn appends_are_volatile_until_sync_and_crashes_stop_everything() {
    let fs = SimFs::new();
    fs.create_dir_all(&p("/j")).unwrap();
    let mut f = fs.create_append(&p("/j/log")).unwrap();
    fs.sync_dir(&p("/j")).unwrap();
    f.append(b"a\n").unwrap();
    f.sync().unwrap();
    f.append(b"b\n").unwrap();
    fs.crash_after(1);
    fs.touch(&p("/j/log")).unwrap();
    assert!(f.sync().is_err() && fs.crashed());
    assert!(fs.list(&p("/j")).is_err(), "a crashed process reads nothing either");
    fs.restart(Crash::PowerLoss);
    assert_eq!(fs.read(&p("/j/log"), 100).unwrap(), b"a\n");
    assert!(f.append(b"c").is_err(), "handles do not survive a restart");
}

#[test]
fn faults_hit_the_nth_matching_operation() {
    let fs = SimFs::new();
    fs.create_dir_all(&p("/d")).unwrap();
    fs.inject(Fault::eio(FaultOn::Sync, 2).on_path("/d/j"));
    fs.create_new(&p("/d/j1"), b"", true).unwrap();
    fs.sync_dir(&p("/d")).unwrap();
    let e = fs.create_new(&p("/d/j2"), b"", true).unwrap_err();
    assert!(
        matches!(&e, FsError::Io { source, .. } if source.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()))
    );
    fs.create_new(&p("/d/j3"), b"", true).unwrap();
    fs.inject(Fault::enospc(FaultOn::Write, 1));
    assert!(fs.create_new(&p("/d/x"), b"x", false).unwrap_err().is_no_space());
    assert!(fs.create_new(&p("/d/y"), b"y", false).unwrap_err().is_no_space(), "sticky");
    fs.clear_faults();
    fs.create_new(&p("/d/y"), b"y", false).unwrap();
    // A bad block under one file: its second read fails, the file is still there, nothing
    // mutating is counted (reads are never crash points), and a write fault ignores reads.
    fs.inject(Fault::eio(FaultOn::Read, 2).on_path("/d/y"));
    fs.inject(Fault::eio(FaultOn::Any, 1).on_path("/d/y"));
    let ops = fs.ops();
    assert_eq!(fs.read(&p("/d/y"), 10).unwrap(), b"y");
    let e = fs.read_at(&p("/d/y"), 0, 1).unwrap_err();
    assert!(e.is_the_file_s(), "{e}");
    assert_eq!(fs.read(&p("/d/y"), 10).unwrap(), b"y", "not sticky");
    assert_eq!(fs.stat(&p("/d/y")).unwrap().map(|m| m.len), Some(1));
    assert_eq!(fs.ops(), ops, "reads are not operations a crash can fall between");
    // An inode that cannot be read: opening it fails, as an open.
    fs.inject(Fault::eio(FaultOn::Open, 1).on_path("/d/y"));
    let e = fs.read(&p("/d/y"), 10).unwrap_err();
    assert!(e.is_open_failure() && !e.is_the_file_s(), "{e}");
    assert!(fs.read(&p("/d/none"), 10).unwrap_err().is_not_found(), "no fault for a missing file");
    assert_eq!(fs.ops(), ops);
}

#[test]
fn scrambled_crashes_are_reproducible_and_tear_only_appends() {
    let build = || {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).unwrap();
        let mut f = fs.create_append(&p("/d/log")).unwrap();
        f.append(b"0123456789").unwrap();
        for i in 0..8 {
            fs.create_new(&p(&format!("/d/f{i}")), b"x", i % 2 == 0).unwrap();
        }
        fs
    };
    let (a, b) = (build(), build());
    a.restart(Crash::Scrambled { seed: 7 });
    b.restart(Crash::Scrambled { seed: 7 });
    assert_eq!(a.files(), b.files());
    for (_, data) in a.files() {
        assert!(b"0123456789".starts_with(&data) || data == b"x" || data.is_empty());
    }
}

/// Appends into a reserve overwrite its zeros: a power loss keeps what was synced, and a
/// scrambled one keeps each page old or new, so unsynced bytes may survive past a page that did
/// not; a trim cuts the reserve off.
#[test]
fn appends_into_a_reserve_overwrite_its_zeros_and_may_tear_by_page() {
    const PAGE: usize = 4096;
    let build = || {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).unwrap();
        let mut f = fs.create_append(&p("/d/log")).unwrap();
        fs.sync_dir(&p("/d")).unwrap();
        f.reserve(4 * PAGE as u64).unwrap();
        f.append(b"abcd").unwrap();
        f.sync().unwrap();
        f.append(&vec![b'x'; 3 * PAGE]).unwrap();
        (fs, f)
    };
    let (fs, mut f) = build();
    assert_eq!(fs.read(&p("/d/log"), 1 << 20).unwrap().len(), 4 * PAGE);
    f.trim().unwrap();
    assert_eq!(fs.read(&p("/d/log"), 1 << 20).unwrap().len(), 4 + 3 * PAGE);
    let (fs, _f) = build();
    fs.restart(Crash::PowerLoss);
    let data = fs.read(&p("/d/log"), 1 << 20).unwrap();
    assert!(data.starts_with(b"abcd") && data[4..].iter().all(|&b| b == 0) && data.len() == 4 * PAGE);
    let old = [b"abcd".to_vec(), vec![0; 4 * PAGE - 4]].concat();
    let new = [b"abcd".to_vec(), vec![b'x'; 3 * PAGE], vec![0; PAGE - 4]].concat();
    let mut holes = 0;
    for seed in 0..64 {
        let (fs, _f) = build();
        fs.restart(Crash::Scrambled { seed });
        let data = fs.read(&p("/d/log"), 1 << 20).unwrap();
        assert_eq!(data.len(), 4 * PAGE, "seed {seed}: the reserve's size was durable");
        let mut kept = Vec::new();
        for (i, pg) in data.chunks(PAGE).enumerate() {
            let (o, n) = (&old[i * PAGE..(i + 1) * PAGE], &new[i * PAGE..(i + 1) * PAGE]);
            assert!(pg == o || pg == n, "seed {seed}: page {i} neither old nor new");
            kept.push(pg == n && o != n);
        }
        holes += usize::from((0..4).any(|i| !kept[i] && kept[i + 1..].iter().any(|&k| k)));
    }
    assert!(holes > 0, "a later page kept while an earlier one was lost, in some seed");
}

#[test]
fn a_lock_refuses_a_second_until_dropped_and_dies_with_the_process() {
    let fs = SimFs::new();
    let root = p("/r");
    fs.create_dir_all(&root).unwrap();
    let first = fs.lock_dir(&root).unwrap().expect("free");
    assert!(fs.lock_dir(&root).unwrap().is_none(), "a second lock is refused");
    drop(first);
    let held = fs.lock_dir(&root).unwrap().expect("released on drop");
    // A restart is the holder's death: its lock goes, and its late drop releases nothing.
    fs.restart(Crash::Process);
    let _next = fs.lock_dir(&root).unwrap().expect("released by the restart");
    drop(held);
    assert!(fs.lock_dir(&root).unwrap().is_none(), "a stale guard freed a live lock");
    fs.restart(Crash::PowerLoss);
    assert!(fs.lock_dir(&root).unwrap().is_some(), "a power loss releases locks too");
}

#[test]
fn a_lock_is_a_counted_operation_on_a_directory_that_a_crash_refuses() {
    let fs = SimFs::new();
    fs.create_dir_all(&p("/r")).unwrap();
    fs.create_new(&p("/r/f"), b"keep", true).unwrap();
    let before = fs.ops();
    assert!(fs.lock_dir(&p("/r")).unwrap().is_some());
    assert_eq!(fs.ops(), before + 1);
    assert!(fs.lock_dir(&p("/r/f")).is_err(), "a file is not a directory to lock");
    assert!(fs.lock_dir(&p("/none")).is_err());
    assert_eq!(fs.read(&p("/r/f"), 10).unwrap(), b"keep");
    fs.crash_after(0);
    assert!(fs.lock_dir(&p("/")).is_err(), "a dead process takes no lock");
}

#[test]
fn appends_are_exclusive_and_stop_when_the_file_is_replaced() {
    let fs = SimFs::new();
    fs.create_dir_all(&p("/j")).unwrap();
    fs.create_new(&p("/j/planted"), b"keep", true).unwrap();
    assert!(fs.create_append(&p("/j/planted")).err().expect("refused").is_already_exists());
    let mut f = fs.create_append(&p("/j/seg")).unwrap();
    f.append(b"1").unwrap();
    fs.rename(&p("/j/seg"), &p("/j/moved")).unwrap();
    fs.create_new(&p("/j/seg"), b"other", true).unwrap();
    assert!(matches!(f.append(b"2"), Err(FsError::Replaced { .. })));
    assert_eq!(fs.read(&p("/j/moved"), 10).unwrap(), b"1");
    assert_eq!(fs.read(&p("/j/planted"), 10).unwrap(), b"keep");
}

#[test]
fn pieces_read_back_a_set_mtime_lasts_with_an_fsync_and_space_is_what_the_test_says() {
    let fs = SimFs::new();
    fs.create_dir_all(&p("/r")).unwrap();
    fs.create_new(&p("/r/f"), b"0123456789", true).unwrap();
    fs.sync_dir(&p("/r")).unwrap();
    assert_eq!(fs.read_at(&p("/r/f"), 2, 3).unwrap(), b"234");
    assert_eq!(fs.read_at(&p("/r/f"), 9, 3).unwrap(), b"9");
    assert_eq!(fs.read_at(&p("/r/f"), 30, 3).unwrap(), b"");
    let t = Timestamp::from_micros(42);
    fs.set_mtime(&p("/r/f"), t).unwrap();
    assert_eq!(fs.stat(&p("/r/f")).unwrap().unwrap().mtime, t);
    fs.restart(Crash::PowerLoss);
    assert_ne!(fs.stat(&p("/r/f")).unwrap().unwrap().mtime, t, "an mtime nobody fsynced is lost");
    let mut a = fs.create_append(&p("/r/g")).unwrap();
    fs.sync_dir(&p("/r")).unwrap();
    fs.set_mtime(&p("/r/g"), t).unwrap();
    a.sync().unwrap();
    fs.restart(Crash::PowerLoss);
    assert_eq!(fs.stat(&p("/r/g")).unwrap().unwrap().mtime, t, "the file's fsync keeps it");
    assert_eq!(fs.space(&p("/r")).unwrap(), None);
    let s = Space { free_bytes: 1, total_bytes: 2, free_inodes: 3, total_inodes: 4 };
    fs.set_space(Some(s));
    assert_eq!(fs.space(&p("/r")).unwrap(), Some(s));
}

//! The contract of [`Fs`] on the real filesystem, checked on [`RealFs`] and on [`RootFs`] with
//! both resolutions (`openat2` and the forced walk): symlinks, FIFOs and oversized files are never
//! read, nothing is clobbered, every creation is exclusive (a planted hard link or symlink at the
//! name is never opened), an appender stops when its file is replaced, and the directory lock.

use super::*;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, symlink};
use std::path::PathBuf;

/// Each implementation, on a fresh directory of its own (the root, for RootFs).
fn each(test: impl Fn(&dyn Fs, &Path)) {
    let d = tempfile::tempdir().unwrap();
    test(&RealFs, d.path());
    for resolve in [Resolve::Auto, Resolve::Walk] {
        let d = tempfile::tempdir().unwrap();
        let fs = RootFs::open_with(d.path(), resolve).unwrap();
        assert_eq!(fs.uses_openat2(), resolve == Resolve::Auto && openat2_here(), "{fs:?}");
        test(&fs, d.path());
    }
}

/// Does this kernel have openat2 (5.6 and later, unless a seccomp policy refuses it)?
fn openat2_here() -> bool {
    use rustix::fs::{Mode, OFlags, ResolveFlags, openat2};
    openat2(rustix::fs::CWD, ".", OFlags::PATH, Mode::empty(), ResolveFlags::BENEATH).is_ok()
}

/// Content, size, mtime, mode and link count of a file outside the tree, to prove it untouched.
fn fingerprint(p: &Path) -> (Vec<u8>, u64, i64, i64, u32, u64) {
    let md = std::fs::symlink_metadata(p).unwrap();
    (std::fs::read(p).unwrap(), md.len(), md.mtime(), md.mtime_nsec(), md.mode(), md.nlink())
}

fn mkfifo(p: &Path) {
    rustix::fs::mknodat(rustix::fs::CWD, p, rustix::fs::FileType::Fifo, 0o600.into(), 0).unwrap();
}

#[test]
fn read_refuses_symlinks_fifos_sockets_and_oversized_files() {
    each(|fs, d| {
        let f = d.join("f");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(fs.read(&f, 10).unwrap(), b"0123456789");
        assert!(matches!(fs.read(&f, 9), Err(FsError::TooLarge { size: 10, limit: 9, .. })));
        let l = d.join("l");
        symlink("/etc/passwd", &l).unwrap();
        assert!(matches!(fs.read(&l, 1 << 20), Err(FsError::NotRegular { kind: FileKind::Symlink, .. })));
        std::fs::create_dir(d.join("sub")).unwrap();
        assert!(matches!(
            fs.read(&d.join("sub"), 1 << 20),
            Err(FsError::NotRegular { kind: FileKind::Dir, .. })
        ));
        mkfifo(&d.join("p"));
        assert!(matches!(
            fs.read(&d.join("p"), 1 << 20),
            Err(FsError::NotRegular { kind: FileKind::Fifo, .. })
        ));
        // A socket cannot be opened at all (ENXIO): refused by its kind all the same, as every
        // caller expects of what is not a regular file, never reported as a failing disk.
        let _listener = std::os::unix::net::UnixListener::bind(d.join("s")).unwrap();
        assert!(matches!(
            fs.read(&d.join("s"), 1 << 20),
            Err(FsError::NotRegular { kind: FileKind::Socket, .. })
        ));
        assert!(matches!(
            fs.read_at(&d.join("s"), 0, 10),
            Err(FsError::NotRegular { kind: FileKind::Socket, .. })
        ));
        assert!(matches!(
            fs.overwrite(&d.join("s"), b"x", false),
            Err(FsError::NotRegular { kind: FileKind::Socket, .. })
        ));
        std::fs::remove_file(d.join("s")).unwrap();
        // A directory opened to be rewritten (EISDIR): refused by its kind too.
        assert!(matches!(
            fs.overwrite(&d.join("sub"), b"x", false),
            Err(FsError::NotRegular { kind: FileKind::Dir, .. })
        ));
        assert_eq!(fs.stat(&l).unwrap().unwrap().kind, FileKind::Symlink);
        assert_eq!(fs.stat(&d.join("none")).unwrap(), None);
        assert_eq!(fs.stat(&d.join("none/deeper")).unwrap(), None);
        let mut names: Vec<_> = fs.list(d).unwrap().into_iter().map(|e| (e.name, e.kind)).collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let want =
            [("f", FileKind::File), ("l", FileKind::Symlink), ("p", FileKind::Fifo), ("sub", FileKind::Dir)];
        assert_eq!(names, want.map(|(n, k)| (n.into(), k)));
    });
}

#[test]
fn renames_and_removals_never_clobber_unasked() {
    each(|fs, d| {
        let (a, b) = (d.join("a"), d.join("b"));
        fs.create_new(&a, b"a", true).unwrap();
        fs.create_new(&b, b"b", false).unwrap();
        assert!(fs.create_new(&b, b"again", false).unwrap_err().is_already_exists());
        assert!(fs.rename_noreplace(&a, &b).unwrap_err().is_already_exists());
        assert_eq!(std::fs::read(&b).unwrap(), b"b");
        fs.remove_file(&b).unwrap();
        fs.rename_noreplace(&a, &b).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"a");
        assert!(fs.rename_noreplace(&a, &b).unwrap_err().is_not_found());
        fs.create_new(&a, b"new a", false).unwrap();
        fs.rename(&a, &b).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"new a");
        fs.create_dir_all(&d.join("x/y/z")).unwrap();
        fs.create_dir_all(&d.join("x/y/z")).unwrap();
        fs.rename(&b, &d.join("x/y/z/b")).unwrap();
        fs.sync_dir(&d.join("x/y/z")).unwrap();
        fs.sync_dir(d).unwrap();
        assert_eq!(fs.list(&d.join("x/y/z")).unwrap().len(), 1);
        assert!(fs.remove_file(&d.join("x/y/z/none")).unwrap_err().is_not_found());
    });
}

#[test]
fn touch_moves_mtime_forward_and_append_accumulates() {
    each(|fs, d| {
        let f = d.join("f");
        fs.create_new(&f, b"", false).unwrap();
        let old = std::fs::File::options().write(true).open(&f).unwrap();
        old.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000)).unwrap();
        let before = fs.stat(&f).unwrap().unwrap().mtime;
        fs.touch(&f).unwrap();
        assert!(fs.stat(&f).unwrap().unwrap().mtime > before);
        // Both in one: the time moves, the bytes are the file's; a symlink is neither read
        // nor touched (its target keeps its time).
        std::fs::write(&f, b"claimed").unwrap();
        old.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000)).unwrap();
        assert_eq!(fs.touch_read(&f, 100).unwrap(), b"claimed");
        assert!(fs.stat(&f).unwrap().unwrap().mtime > before);
        old.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000)).unwrap();
        symlink(&f, d.join("link")).unwrap();
        assert!(fs.touch_read(&d.join("link"), 100).is_err());
        assert_eq!(fs.stat(&f).unwrap().unwrap().mtime, before, "the link's target untouched");
        assert!(matches!(fs.touch_read(&f, 3), Err(FsError::TooLarge { .. })));
        // Anything at the name is there (a link as itself, never followed); nothing, or no
        // directory on the way, is not.
        assert!(fs.exists(&f).unwrap());
        assert!(fs.exists(&d.join("link")).unwrap());
        assert!(!fs.exists(&d.join("none")).unwrap());
        assert!(!fs.exists(&d.join("no/such/dir")).unwrap());
        mkfifo(&d.join("fifo"));
        assert!(fs.exists(&d.join("fifo")).unwrap(), "a FIFO is there, and is not opened");
        let mut j = fs.create_append(&d.join("j")).unwrap();
        j.append(b"one\n").unwrap();
        j.append(b"two\n").unwrap();
        j.sync().unwrap();
        assert_eq!(std::fs::read(d.join("j")).unwrap(), b"one\ntwo\n");
    });
}

/// Appends go into the reserve of zeros written ahead, leaving the file's size alone, past it
/// when it is used up, and a trim cuts what is left of it off.
#[test]
fn appends_fill_a_reserve_of_zeros_without_growing_the_file_and_a_trim_cuts_it() {
    each(|fs, d| {
        let path = d.join("j");
        let len = || std::fs::metadata(&path).unwrap().len();
        let mut j = fs.create_append(&path).unwrap();
        j.append(b"head\n").unwrap();
        j.reserve(4096).unwrap();
        assert_eq!(len(), 5 + 4096);
        for _ in 0..100 {
            j.append(b"0123456789\n").unwrap();
        }
        j.sync().unwrap();
        assert_eq!(len(), 5 + 4096, "appends within the reserve keep the size");
        j.reserve(10).unwrap();
        assert_eq!(len(), 5 + 4096, "a reserve that is there already is not written again");
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"head\n0123456789\n") && bytes[5 + 1100..].iter().all(|&b| b == 0));
        for _ in 0..400 {
            j.append(b"0123456789\n").unwrap();
        }
        assert_eq!(len(), 5 + 5500, "past the reserve, appends grow the file");
        j.reserve(100).unwrap();
        j.trim().unwrap();
        assert_eq!(len(), 5 + 5500);
        j.append(b"tail\n").unwrap();
        assert!(std::fs::read(&path).unwrap().ends_with(b"9\ntail\n"));
    });
}

#[test]
fn read_at_reads_a_piece_set_mtime_sets_the_time_and_space_is_known() {
    each(|fs, d| {
        let f = d.join("f");
        fs.create_new(&f, b"0123456789", false).unwrap();
        assert_eq!(fs.read_at(&f, 3, 4).unwrap(), b"3456");
        assert_eq!(fs.read_at(&f, 8, 100).unwrap(), b"89");
        assert_eq!(fs.read_at(&f, 20, 4).unwrap(), b"");
        let l = d.join("l");
        symlink(&f, &l).unwrap();
        assert!(matches!(fs.read_at(&l, 0, 4), Err(FsError::NotRegular { kind: FileKind::Symlink, .. })));
        let t = Timestamp::from_micros(1_700_000_000_123_456);
        fs.set_mtime(&f, t).unwrap();
        assert_eq!(fs.stat(&f).unwrap().unwrap().mtime, t);
        let before = std::fs::symlink_metadata(&f).unwrap().mtime();
        fs.set_mtime(&l, Timestamp::from_micros(42)).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().mtime(), before, "a symlink's target is left alone");
        let s = fs.space(d).unwrap().expect("statvfs works on a real directory");
        assert!(s.total_bytes > 0 && s.free_bytes <= s.total_bytes, "{s:?}");
        assert!(s.free_inodes <= s.total_inodes || s.total_inodes == 0, "{s:?}");
    });
}

/// A bait file outside the tree, and a hard link to it and symlinks (live and dangling) to it
/// planted at the names the code under test is about to create.
struct Planted {
    _outside: tempfile::TempDir,
    bait: PathBuf,
    before: (Vec<u8>, u64, i64, i64, u32, u64),
}

fn plant(d: &Path) -> Planted {
    let outside = tempfile::tempdir().unwrap();
    let bait = outside.path().join("bait");
    std::fs::write(&bait, b"precious").unwrap();
    std::fs::hard_link(&bait, d.join("hard")).unwrap();
    symlink(&bait, d.join("soft")).unwrap();
    symlink(outside.path().join("created?"), d.join("dangling")).unwrap();
    let before = fingerprint(&bait);
    Planted { _outside: outside, bait, before }
}

#[test]
fn creation_is_exclusive_against_planted_hard_links_and_symlinks() {
    each(|fs, d| {
        let p = plant(d);
        for name in ["hard", "soft", "dangling"] {
            let e = fs.create_new(&d.join(name), b"overwrite", true).unwrap_err();
            assert!(e.is_already_exists(), "create_new {name}: {e}");
            let e = fs.create_append(&d.join(name)).err().expect("refused");
            assert!(e.is_already_exists(), "create_append {name}: {e}");
        }
        assert_eq!(fingerprint(&p.bait), p.before, "the bait is untouched");
        assert!(!p.bait.with_file_name("created?").exists(), "a dangling link's target is not created");
    });
}

#[test]
fn overwrite_rewrites_a_file_of_its_own_and_nothing_linked_elsewhere() {
    each(|fs, d| {
        let p = plant(d);
        for name in ["hard", "soft", "dangling"] {
            let e = fs.overwrite(&d.join(name), b"overwrite", true).unwrap_err();
            let want = if name == "hard" {
                matches!(e, FsError::NotReusable { .. })
            } else {
                matches!(e, FsError::NotRegular { kind: FileKind::Symlink, .. })
            };
            assert!(want, "overwrite {name}: {e}");
        }
        assert_eq!(fingerprint(&p.bait), p.before, "the bait is untouched");
        assert!(!p.bait.with_file_name("created?").exists(), "a dangling link's target is not created");
        // A FIFO without a reader is refused without blocking (ENXIO from a non-blocking open;
        // with a reader, the open file is seen not to be a regular file); a missing file is not
        // created.
        mkfifo(&d.join("fifo"));
        let e = fs.overwrite(&d.join("fifo"), b"x", false).unwrap_err();
        assert!(matches!(e, FsError::NotRegular { kind: FileKind::Fifo, .. }), "{e}");
        let _reader = std::fs::File::options()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(d.join("fifo"))
            .unwrap();
        let e = fs.overwrite(&d.join("fifo"), b"x", false).unwrap_err();
        assert!(matches!(e, FsError::NotRegular { kind: FileKind::Fifo, .. }), "{e}");
        assert!(fs.overwrite(&d.join("missing"), b"x", false).unwrap_err().is_not_found());
        assert!(!d.join("missing").exists());
        // A file of its own: the new bytes from the start, cut to their length, same inode.
        fs.create_new(&d.join("own"), b"a longer first content", false).unwrap();
        let ino = std::fs::metadata(d.join("own")).unwrap().ino();
        fs.overwrite(&d.join("own"), b"short", true).unwrap();
        assert_eq!(std::fs::read(d.join("own")).unwrap(), b"short");
        fs.overwrite(&d.join("own"), b"now longer than before", false).unwrap();
        assert_eq!(std::fs::read(d.join("own")).unwrap(), b"now longer than before");
        fs.overwrite(&d.join("own"), b"the very same length!!", false).unwrap();
        assert_eq!(std::fs::read(d.join("own")).unwrap(), b"the very same length!!");
        fs.overwrite(&d.join("own"), b"now longer than before", false).unwrap();
        assert_eq!(std::fs::metadata(d.join("own")).unwrap().ino(), ino);
        // One its holder made writable by everyone (or executable) is not written again.
        use std::os::unix::fs::PermissionsExt;
        for mode in [0o666, 0o744] {
            std::fs::set_permissions(d.join("own"), std::fs::Permissions::from_mode(mode)).unwrap();
            let e = fs.overwrite(&d.join("own"), b"x", false).unwrap_err();
            assert!(matches!(e, FsError::NotReusable { .. }), "{mode:o}: {e}");
        }
        assert_eq!(std::fs::read(d.join("own")).unwrap(), b"now longer than before");
    });
}

#[test]
fn private_files_are_for_their_owner_only() {
    each(|fs, d| {
        let p = d.join("secret");
        fs.create_private(&p, b"t", true).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert!(fs.create_private(&p, b"again", false).unwrap_err().is_already_exists());
        let planted = plant(d);
        let e = fs.create_private(&d.join("hard"), b"overwrite", true).unwrap_err();
        assert!(e.is_already_exists(), "{e}");
        assert_eq!(fingerprint(&planted.bait), planted.before, "the bait is untouched");
    });
}

#[test]
fn an_appender_stops_once_its_file_is_replaced_or_moved() {
    each(|fs, d| {
        let seg = d.join("segment");
        let mut j = fs.create_append(&seg).unwrap();
        j.append(b"1\n").unwrap();
        // Moved away, and another file put at the name: neither receives a byte more.
        std::fs::rename(&seg, d.join("moved")).unwrap();
        assert!(matches!(j.append(b"2\n"), Err(FsError::Replaced { .. })));
        std::fs::write(&seg, b"impostor").unwrap();
        assert!(matches!(j.append(b"2\n"), Err(FsError::Replaced { .. })));
        assert_eq!(std::fs::read(d.join("moved")).unwrap(), b"1\n");
        assert_eq!(std::fs::read(&seg).unwrap(), b"impostor");
        // Put back, it is the same file again.
        std::fs::rename(d.join("moved"), &seg).unwrap();
        j.append(b"3\n").unwrap();
        assert_eq!(std::fs::read(&seg).unwrap(), b"1\n3\n");
    });
}

#[test]
fn a_directory_lock_refuses_a_second_holder_until_dropped() {
    each(|fs, d| {
        std::fs::write(d.join("note"), b"keep").unwrap();
        let first = fs.lock_dir(d).unwrap().expect("free");
        assert!(fs.lock_dir(d).unwrap().is_none(), "a second lock is refused");
        // Through another path to the same directory, and with the note file gone: still refused.
        std::fs::remove_file(d.join("note")).unwrap();
        assert!(RealFs.lock_dir(d).unwrap().is_none());
        drop(first);
        let again = fs.lock_dir(d).unwrap();
        assert!(again.is_some(), "dropping the guard released the lock");
        // A file or a link is not a directory to lock.
        std::fs::write(d.join("f"), b"").unwrap();
        assert!(fs.lock_dir(&d.join("f")).is_err());
        std::fs::create_dir(d.join("sub")).unwrap();
        assert!(fs.lock_dir(&d.join("sub")).unwrap().is_some());
    });
}

#[test]
fn rootfs_refuses_paths_outside_its_root() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(d.path().join("outside"), b"x").unwrap();
    let fs = RootFs::open(&root).unwrap();
    for p in [
        d.path().join("outside"),
        root.join("../outside"),
        root.join("a/../../outside"),
        PathBuf::from("/etc/passwd"),
    ] {
        assert!(matches!(fs.read(&p, 100), Err(FsError::Outside { .. })), "{}", p.display());
        assert!(matches!(fs.stat(&p), Err(FsError::Outside { .. })), "{}", p.display());
        assert!(matches!(fs.remove_file(&p), Err(FsError::Outside { .. })), "{}", p.display());
    }
    assert_eq!(std::fs::read(d.path().join("outside")).unwrap(), b"x");
    assert_eq!(fs.stat(&root).unwrap().unwrap().kind, FileKind::Dir, "the root itself");
}

/// Every operation of a RootFs through a directory replaced by a symlink (to a directory outside,
/// holding bait) or by a file: refused naming that component, nothing outside read or changed.
#[test]
fn rootfs_never_goes_through_a_link_or_a_file_where_a_directory_belongs() {
    for resolve in [Resolve::Auto, Resolve::Walk] {
        let d = tempfile::tempdir().unwrap();
        let (root, outside) = (d.path().join("root"), d.path().join("outside"));
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        std::fs::write(outside.join("bait"), b"precious").unwrap();
        std::fs::write(outside.join("sub/bait"), b"precious").unwrap();
        std::fs::create_dir_all(root.join("real/deeper")).unwrap();
        symlink(&outside, root.join("link")).unwrap();
        symlink(&outside, root.join("real/deeper/link")).unwrap();
        symlink("../../outside", root.join("relative")).unwrap();
        // A link that stays inside the root is not followed either (`drop/` made a link to
        // `broker/journal/` would feed the journal to the inbox).
        symlink("real/deeper", root.join("inner")).unwrap();
        std::fs::write(root.join("file"), b"").unwrap();
        let fs = RootFs::open_with(&root, resolve).unwrap();
        let before = |p: &str| fingerprint(&outside.join(p));
        let bait = (before("bait"), before("sub/bait"));
        for (dir, kind) in [
            ("link", FileKind::Symlink),
            ("relative", FileKind::Symlink),
            ("real/deeper/link", FileKind::Symlink),
            ("inner", FileKind::Symlink),
            ("file", FileKind::File),
        ] {
            let base = root.join(dir);
            let culprit = |r: Result<(), FsError>, what: &str| match r {
                Err(FsError::NotBeneath { at, kind: k, .. }) => {
                    assert_eq!(
                        (at.as_path(), k),
                        (base.as_path(), Some(kind)),
                        "{resolve:?} {what} via {dir}"
                    )
                }
                other => panic!("{resolve:?} {what} via {dir}: expected NotBeneath, got {other:?}"),
            };
            culprit(fs.create_new(&base.join("new"), b"x", true), "create_new");
            culprit(fs.create_new(&base.join("sub/new"), b"x", true), "create_new deeper");
            culprit(fs.create_append(&base.join("seg")).map(drop), "create_append");
            culprit(fs.read(&base.join("bait"), 100).map(drop), "read");
            culprit(fs.stat(&base.join("bait")).map(drop), "stat");
            culprit(fs.touch(&base.join("bait")), "touch");
            culprit(fs.touch_read(&base.join("bait"), 100).map(drop), "touch_read");
            culprit(fs.exists(&base.join("bait")).map(drop), "exists");
            culprit(fs.remove_file(&base.join("bait")), "remove_file");
            culprit(fs.remove_file(&base.join("sub/bait")), "remove_file deeper");
            culprit(fs.rename(&base.join("bait"), &root.join("taken")), "rename from");
            culprit(fs.rename_noreplace(&base.join("bait"), &root.join("taken")), "rename_noreplace from");
            std::fs::write(root.join("mine"), b"mine").unwrap();
            culprit(fs.rename(&root.join("mine"), &base.join("mine")), "rename to");
            culprit(fs.rename_noreplace(&root.join("mine"), &base.join("mine")), "rename_noreplace to");
            culprit(fs.list(&base).map(drop), "list");
            culprit(fs.list(&base.join("sub")).map(drop), "list deeper");
            culprit(fs.sync_dir(&base), "sync_dir");
            culprit(fs.create_dir_all(&base), "create_dir_all");
            culprit(fs.create_dir_all(&base.join("made")), "create_dir_all deeper");
            culprit(fs.lock_dir(&base).map(drop), "lock_dir");
        }
        assert_eq!((before("bait"), before("sub/bait")), bait, "{resolve:?}: the bait changed");
        let mut outside_names: Vec<_> =
            std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
        outside_names.sort();
        assert_eq!(outside_names, ["bait", "sub"], "{resolve:?}: something was created outside");
        // The links themselves are entries of a real directory: renamed or removed as links.
        fs.rename_noreplace(&root.join("link"), &root.join("link.displaced")).unwrap();
        fs.remove_file(&root.join("link.displaced")).unwrap();
        assert!(outside.join("bait").exists());
    }
}

/// A directory descriptor is never kept from one operation to the next: a directory moved out of
/// the root (and a link left in its place) is out of reach at once.
#[test]
fn rootfs_resolves_afresh_for_every_operation() {
    for resolve in [Resolve::Auto, Resolve::Walk] {
        let d = tempfile::tempdir().unwrap();
        let (root, outside) = (d.path().join("root"), d.path().join("outside"));
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let fs = RootFs::open_with(&root, resolve).unwrap();
        fs.create_new(&root.join("a/one"), b"1", false).unwrap();
        std::fs::rename(root.join("a"), outside.join("a")).unwrap();
        symlink(outside.join("a"), root.join("a")).unwrap();
        assert!(matches!(fs.create_new(&root.join("a/two"), b"2", false), Err(FsError::NotBeneath { .. })));
        assert!(matches!(fs.remove_file(&root.join("a/one")), Err(FsError::NotBeneath { .. })));
        assert_eq!(std::fs::read_dir(outside.join("a")).unwrap().count(), 1, "{resolve:?}");
    }
}

/// Paths spelled with doubled or trailing slashes (the root given with one too) resolve to the
/// same entries; `.` and `..` anywhere are refused.
#[test]
fn rootfs_reads_paths_however_they_are_spelled() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("root/a/b")).unwrap();
    std::fs::write(d.path().join("root/a/b/f"), b"x").unwrap();
    for resolve in [Resolve::Auto, Resolve::Walk] {
        let fs = RootFs::open_with(d.path().join("root/"), resolve).unwrap();
        let root = d.path().join("root");
        for p in ["a/b/f", "a//b/f", "a/b//f"] {
            assert_eq!(fs.read(&root.join(p), 10).unwrap(), b"x", "{p}");
        }
        assert_eq!(fs.stat(&root.join("a/b/")).unwrap().unwrap().kind, FileKind::Dir);
        assert_eq!(fs.list(&root.join("a//b/")).unwrap().len(), 1);
        for p in ["a/./b/f", "a/../a/b/f", "./a/b/f"] {
            assert!(matches!(fs.read(&root.join(p), 10), Err(FsError::Outside { .. })), "{p}");
        }
    }
}

#[test]
fn a_root_counts_what_it_did_and_a_plain_fs_counts_nothing() {
    assert_eq!(RealFs.counts(), None);
    for resolve in [Resolve::Auto, Resolve::Walk] {
        let d = tempfile::tempdir().unwrap();
        let fs = RootFs::open_with(d.path(), resolve).unwrap();
        let clone = fs.clone();
        let start = fs.counts().unwrap();
        assert_eq!(start, FsCounts::default());
        let sub = d.path().join("a/b");
        fs.create_dir_all(&sub).unwrap();
        fs.create_new(&sub.join("x"), b"12345", true).unwrap();
        fs.create_new(&sub.join("y"), b"678", false).unwrap();
        assert!(fs.create_new(&sub.join("y"), b"again", false).is_err(), "a failure is not counted");
        fs.rename(&sub.join("x"), &sub.join("z")).unwrap();
        fs.rename_noreplace(&sub.join("z"), &sub.join("w")).unwrap();
        fs.remove_file(&sub.join("y")).unwrap();
        fs.sync_dir(&sub).unwrap();
        assert_eq!(fs.read(&sub.join("w"), 100).unwrap(), b"12345");
        fs.overwrite(&sub.join("w"), b"abc", false).unwrap();
        assert_eq!(fs.list(&sub).unwrap().len(), 1);
        assert!(fs.stat(&sub.join("w")).unwrap().is_some());
        assert!(fs.exists(&sub.join("w")).unwrap());
        fs.touch(&sub.join("w")).unwrap();
        assert_eq!(fs.touch_read(&sub.join("w"), 100).unwrap(), b"abc");
        let mut j = fs.create_append(&sub.join("journal")).unwrap();
        j.append(b"0123456789").unwrap();
        j.append(b"ab").unwrap();
        j.sync().unwrap();
        // Clones share the counters.
        let c = clone.counts().unwrap();
        let want = FsCounts {
            creates: 3,
            rewrites: 1,
            created_bytes: 11,
            renames: 2,
            unlinks: 1,
            file_fsyncs: 2,
            dir_fsyncs: 3,
            appends: 2,
            appended_bytes: 12,
            reads: 2,
            read_bytes: 8,
            lists: 1,
            stats: 2,
            mkdirs: 2,
            touches: 2,
        };
        assert_eq!(c, want, "{resolve:?}");
        assert_eq!(c.since(&start), want);
        assert_eq!(c.plus(&c).since(&c), want);
    }
}

//! What wakes a [`DirWatch`] and what does not, on the real filesystem.

use super::*;
use crate::RootFs;
use std::fs;
use std::time::Duration;

const NOTHING: Duration = Duration::from_millis(50);
const SOON: Duration = Duration::from_secs(5);

fn root() -> (tempfile::TempDir, RootFs) {
    let d = tempfile::tempdir().unwrap();
    let rfs = RootFs::open(d.path()).unwrap();
    (d, rfs)
}

#[test]
fn a_file_renamed_in_wakes_and_one_drain_reads_it_all() {
    let (d, rfs) = root();
    let (tmp, new) = (d.path().join("tmp"), d.path().join("new"));
    fs::create_dir_all(&tmp).unwrap();
    fs::create_dir_all(&new).unwrap();
    let w = DirWatch::new().unwrap();
    assert!(w.add(&new, Interest::Arrivals, 0).unwrap());
    assert!(!w.wait(&rfs, NOTHING).unwrap(), "nothing happened yet");
    for i in 0..3 {
        fs::write(tmp.join(format!("m{i}")), b"{}").unwrap();
        fs::rename(tmp.join(format!("m{i}")), new.join(format!("m{i}"))).unwrap();
    }
    assert!(w.wait(&rfs, SOON).unwrap());
    assert!(!w.drain(&rfs).unwrap().any(), "the wait read every pending event");
}

#[test]
fn heartbeats_listings_reads_and_departures_do_not_wake() {
    let (d, rfs) = root();
    let new = d.path().join("new");
    fs::create_dir_all(&new).unwrap();
    fs::write(new.join("m"), b"{}").unwrap();
    let w = DirWatch::new().unwrap();
    assert!(w.add(&new, Interest::Arrivals, 0).unwrap());
    // A heartbeat: the mtime set through a handle opened for writing (closed unwritten).
    let f = fs::OpenOptions::new().write(true).open(new.join("m")).unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    drop(f);
    fs::read(new.join("m")).unwrap();
    fs::read_dir(&new).unwrap().for_each(drop);
    fs::rename(new.join("m"), d.path().join("gone")).unwrap();
    assert!(!w.wait(&rfs, NOTHING).unwrap(), "none of those is an arrival");
}

#[test]
fn writes_interest_wakes_on_a_file_written_in_place_and_arrivals_do_not() {
    let (d, rfs) = root();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    fs::write(a.join("f"), b"x").unwrap();
    fs::write(b.join("f"), b"x").unwrap();
    let (wa, wb) = (DirWatch::new().unwrap(), DirWatch::new().unwrap());
    assert!(wa.add(&a, Interest::Arrivals, 0).unwrap());
    assert!(wb.add(&b, Interest::Writes, 0).unwrap());
    fs::write(a.join("f"), b"rewritten").unwrap();
    fs::write(b.join("f"), b"rewritten").unwrap();
    assert!(!wa.wait(&rfs, NOTHING).unwrap(), "a rewrite is not an arrival");
    assert!(wb.wait(&rfs, SOON).unwrap(), "a rewrite closes a file written in place");
}

#[test]
fn a_tree_watches_directories_made_later_but_not_skipped_ones_nor_links() {
    let (d, rfs) = root();
    let top = d.path().join("mailboxes");
    fs::create_dir_all(top.join("A/cur")).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), top.join("L")).unwrap();
    let w = DirWatch::new().unwrap();
    assert!(w.add_tree(&rfs, &top, Interest::Arrivals, 1, |p| p.ends_with("tmp")).unwrap());
    assert!(w.watches(&top.join("A/cur")), "a directory there at the start");
    assert!(!w.watches(&top.join("L")), "a link is never watched");

    fs::create_dir_all(top.join("B/cur")).unwrap();
    fs::create_dir_all(top.join("B/tmp")).unwrap();
    assert!(w.wait(&rfs, SOON).unwrap(), "a new agent's directory wakes");
    // Its creation was read before its subdirectories may have existed: those found by listing
    // it, or by their own creation events, are watched either way.
    while w.wait(&rfs, NOTHING).unwrap() {}
    assert!(w.watches(&top.join("B/cur")));
    assert!(!w.watches(&top.join("B/tmp")), "skipped by name");

    fs::write(top.join("B/tmp/x"), b"{}").unwrap();
    assert!(!w.wait(&rfs, NOTHING).unwrap(), "tmp/ is not watched");
    fs::rename(top.join("B/tmp/x"), top.join("B/cur/x")).unwrap();
    assert!(w.wait(&rfs, SOON).unwrap(), "an arrival in the new cur/ wakes");
    fs::write(outside.path().join("y"), b"{}").unwrap();
    assert!(!w.wait(&rfs, NOTHING).unwrap(), "nothing behind a link is watched");
}

#[test]
fn a_missing_directory_is_not_watched_and_is_no_error() {
    let (d, rfs) = root();
    let w = DirWatch::new().unwrap();
    assert!(!w.add(&d.path().join("nope"), Interest::Arrivals, 0).unwrap());
    assert!(!w.add_tree(&rfs, &d.path().join("nope"), Interest::Arrivals, 0, |_| false).unwrap());
    fs::write(d.path().join("file"), b"").unwrap();
    assert!(!w.add(&d.path().join("file"), Interest::Arrivals, 0).unwrap(), "not a directory");
}

#[test]
fn each_event_is_reported_under_its_directory_s_tag() {
    let (d, rfs) = root();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(b.join("sub")).unwrap();
    let w = DirWatch::new().unwrap();
    assert!(w.add(&a, Interest::Arrivals, 3).unwrap());
    assert!(w.add_tree(&rfs, &b, Interest::Arrivals, 5, |_| false).unwrap());
    fs::write(b.join("sub/f"), b"").unwrap();
    fs::write(b.join("sub/g"), b"").unwrap();
    std::thread::sleep(NOTHING);
    let got = w.drain(&rfs).unwrap();
    assert!(got.has(5) && !got.has(3), "{got:?}");
    // Pinned to the directory below the tree's top where it happened, named once.
    let dirs: Vec<&Path> = got.dirs_of(5).expect("nothing was lost").collect();
    assert_eq!(dirs, [b.join("sub")], "{got:?}");
    assert_eq!(got.dirs_of(3).expect("nothing was lost").count(), 0);
    fs::write(a.join("f"), b"").unwrap();
    std::thread::sleep(NOTHING);
    let got = w.drain(&rfs).unwrap();
    assert!(got.has(3) && !got.has(5), "{got:?}");
    assert_eq!(got.dirs, [(3, a.clone())]);
}

#[test]
fn a_watched_directory_moved_away_is_no_longer_watched_and_its_area_is_reported_until_watched_again() {
    let (d, rfs) = root();
    let drop = d.path().join("drop");
    fs::create_dir_all(&drop).unwrap();
    let w = DirWatch::new().unwrap();
    assert!(w.add(&drop, Interest::Writes, 2).unwrap());
    fs::rename(&drop, d.path().join("drop.old")).unwrap();
    fs::create_dir_all(&drop).unwrap();
    std::thread::sleep(NOTHING);
    let got = w.drain(&rfs).unwrap();
    assert!(got.has(2), "{got:?}");
    assert!(!w.watches(&drop), "the path is not what the old watch covers");
    fs::write(d.path().join("drop.old/f"), b"").unwrap();
    std::thread::sleep(NOTHING);
    let got = w.drain(&rfs).unwrap();
    assert_eq!(got.events, 0, "the moved directory no longer wakes");
    assert!(got.has(2), "but its area is reported until watched again: {got:?}");
    assert!(got.dirs_of(2).is_none(), "as a whole, no directory of it being named: {got:?}");
    w.forget_missed();
    assert!(w.add(&drop, Interest::Writes, 2).unwrap());
    let got = w.drain(&rfs).unwrap();
    assert!(!got.has(2) && got.dirs_of(2).is_some(), "{got:?}");
    fs::write(drop.join("g"), b"").unwrap();
    assert!(w.wait(&rfs, SOON).unwrap(), "the directory made again wakes");
}

#[test]
fn a_naming_watch_names_the_files_that_arrived_and_flags_anything_else() {
    let (d, rfs) = root();
    let (tmp, new) = (d.path().join("tmp"), d.path().join("new"));
    fs::create_dir_all(&tmp).unwrap();
    fs::create_dir_all(&new).unwrap();
    let w = DirWatch::new().unwrap().naming();
    assert!(w.add(&new, Interest::Arrivals, 0).unwrap());
    for n in ["b", "a"] {
        fs::write(tmp.join(n), b"{}").unwrap();
        fs::rename(tmp.join(n), new.join(n)).unwrap();
    }
    let got = w.wait_drained(&rfs, SOON).unwrap();
    let got = if got.events < 2 { w.wait_drained(&rfs, SOON).unwrap() } else { got };
    assert_eq!(got.files, vec![(new.clone(), "b".to_string()), (new.clone(), "a".to_string())]);
    assert!(got.only_files());
    // A directory made there is not a file: the watcher must look for itself.
    fs::create_dir(new.join("sub")).unwrap();
    let got = w.wait_drained(&rfs, SOON).unwrap();
    assert!(got.any() && got.files.is_empty() && !got.only_files(), "{got:?}");
    // A watch without naming reads the same events and names nothing.
    let plain = DirWatch::new().unwrap();
    assert!(plain.add(&new, Interest::Arrivals, 0).unwrap());
    fs::write(new.join("c"), b"{}").unwrap();
    let got = plain.wait_drained(&rfs, SOON).unwrap();
    assert!(got.any() && got.files.is_empty() && !got.only_files());
}

#[test]
fn a_directory_watched_plainly_and_as_a_tree_stays_a_tree() {
    let (d, rfs) = root();
    let top = d.path().join("queues");
    fs::create_dir_all(top.join("p/new")).unwrap();
    let skip: Skip = |_| false;
    // Plain first (waiting for a pool not made yet), then as a tree: the tree takes over.
    let w = DirWatch::new().unwrap();
    assert!(w.add(&top, Interest::Arrivals, 0).unwrap());
    assert!(w.watches(&top) && !w.watches_tree(&top));
    assert!(w.add_tree(&rfs, &top, Interest::Arrivals, 0, skip).unwrap());
    assert!(w.watches_tree(&top) && w.watches(&top.join("p/new")));
    // A tree first, then plainly: still a tree, so a directory made later is watched.
    let w = DirWatch::new().unwrap();
    assert!(w.add_tree(&rfs, &top, Interest::Arrivals, 0, skip).unwrap());
    assert!(w.add(&top, Interest::Arrivals, 0).unwrap());
    assert!(w.watches_tree(&top));
    fs::create_dir(top.join("q")).unwrap();
    assert!(w.wait(&rfs, SOON).unwrap());
    assert!(w.watches(&top.join("q")), "a directory made in the tree is watched");
}

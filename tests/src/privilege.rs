//! Running a program under test without root's privileges. CI runs the tests as root, and root
//! reads every file whatever its mode, so a test about a file a user cannot read would observe
//! nothing. Such a test runs the program as `nobody` instead (when it is root), after giving it
//! the trees it works on.

use std::io;
use std::os::unix::fs::{PermissionsExt, lchown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The uid and gid of `nobody`, which the program runs as when the tests run as root.
pub const NOBODY: u32 = 65534;

/// Does this process run as root (so that permission bits do not bind it)?
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Gives `path` and everything under it to `uid`:`gid`, never following a symlink.
pub fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    lchown(path, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for e in std::fs::read_dir(path)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Can a user who neither owns `program` nor is in its group run it: is it readable and
/// executable by others, and every directory above it searchable?
fn others_can_run(program: &Path) -> bool {
    let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode()).unwrap_or(0);
    mode(program) & 0o005 == 0o005 && program.ancestors().skip(1).all(|d| mode(d) & 0o001 != 0)
}

/// A command that runs `program` without root's privileges, in `scratch`. When this process is
/// root, the command runs as `nobody`, `scratch` and every tree of `trees` are given to `nobody`,
/// and `program` is first copied into `scratch` if `nobody` could not run it where it is (a
/// checkout under `/root`, say). Otherwise it runs as this user: permission bits bind it already.
pub fn unprivileged_command(program: &Path, scratch: &Path, trees: &[&Path]) -> io::Result<Command> {
    if !is_root() {
        let mut c = Command::new(program);
        c.current_dir(scratch);
        return Ok(c);
    }
    let mut program: PathBuf = program.to_path_buf();
    if !others_can_run(&program) {
        let copy = scratch.join(program.file_name().unwrap_or("program".as_ref()));
        std::fs::copy(&program, &copy)?;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))?;
        program = copy;
    }
    for t in std::iter::once(&scratch).chain(trees) {
        chown_tree(t, NOBODY, NOBODY)?;
    }
    let mut c = Command::new(&program);
    c.current_dir(scratch).uid(NOBODY).gid(NOBODY);
    Ok(c)
}

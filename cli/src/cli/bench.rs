//! `mailroom bench`: hands over to the benchmark's own binary.

use super::exit::{self, Failure};
use std::ffi::OsString;

/// `mailroom bench ARGS` execs `mailroom-bench ARGS`: the benchmark is a crate of its own
/// (`bench/`), not part of this binary. It is looked for beside this executable, then on `PATH`,
/// and told (through `MAILROOM_BIN`) to start brokers from this very executable. Returns only
/// when the exec failed.
pub fn bench(args: &[OsString]) -> Failure {
    use std::os::unix::process::CommandExt;
    const BENCH: &str = "mailroom-bench";
    let me = std::env::current_exe().ok();
    let beside = me.as_deref().map(|p| p.with_file_name(BENCH)).filter(|p| p.is_file());
    let on_path = || {
        std::env::var_os("PATH")
            .and_then(|path| std::env::split_paths(&path).map(|d| d.join(BENCH)).find(|p| p.is_file()))
    };
    let Some(exe) = beside.or_else(on_path) else {
        return Failure::new(
            exit::NO_BENCH,
            format!(
                "`{BENCH}` was found neither beside this executable nor on PATH; \
                 build it with `cargo build --release -p mailroom-bench`"
            ),
        );
    };
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(args);
    if let Some(me) = me {
        cmd.env("MAILROOM_BIN", me);
    }
    let e = cmd.exec();
    Failure::new(exit::ERROR, format!("{}: {e}", exe.display()))
}

//! The `keyfab` binary: parse the command line, run it (see the
//! `keyfab_cli` library), turn an error into a message and an exit code.

use clap::Parser;
use keyfab_cli::{cli, EXIT_FAILURE};
use std::process::ExitCode;

/// Merging thousands of infos is allocation-heavy; mimalloc is markedly
/// faster at it than the system allocator. Built without asking for
/// transparent huge pages (`no_thp`): a build process zeroed whole 2 MB
/// pages for the little it touched (~30 ms of a cold build's CPU).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // `keyfab list-keyboards | head` must end quietly, like any Unix tool,
    // rather than panic on the closed pipe.
    // SAFETY: called first, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::Cli::parse_from(cli::qmk_style_args(std::env::args_os()));
    match keyfab_cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            // A failed compile's message is the compiler's, in colour when
            // QMK's COLOR asked for it: kept for a terminal only.
            anstream::eprintln!("keyfab: error: {err:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

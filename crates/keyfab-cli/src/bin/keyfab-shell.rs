//! `keyfab-shell -c COMMAND`: the `SHELL` keyfab gives make while it plans a
//! target. It answers QMK's trivial `$(shell …)` pipelines itself and hands
//! everything else to `/bin/sh` (see the `keyfab-shell` crate). Kept apart
//! from `keyfab` so that it starts as fast as a shell does.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitCode};

use keyfab_shell::Run;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let run = match args.as_slice() {
        [flag, command] if flag == "-c" => command.to_str().map_or(Run::Shell, keyfab_shell::plan),
        _ => Run::Shell,
    };
    match run {
        Run::Print(text) => {
            use std::io::Write as _;
            // Like echo, a closed stdout is no failure worth a message.
            let _ = std::io::stdout().write_all(text.as_bytes());
            return ExitCode::SUCCESS;
        }
        Run::MakeDirs(dirs) => {
            if dirs.iter().all(|d| std::fs::create_dir_all(d).is_ok()) {
                return ExitCode::SUCCESS;
            }
        }
        Run::Exec { argv, quiet } => {
            let mut command = Command::new(&argv[0]);
            command.args(&argv[1..]);
            if quiet {
                command.stderr(std::process::Stdio::null());
            }
            // Returns only when the program could not be executed: the
            // shell then says why, as it would have.
            let _ = command.exec();
        }
        Run::Shell => {}
    }
    let err = Command::new("/bin/sh").arg0("sh").args(&args).exec();
    eprintln!("keyfab-shell: cannot run /bin/sh: {err}");
    ExitCode::from(127)
}

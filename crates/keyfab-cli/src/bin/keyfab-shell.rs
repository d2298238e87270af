//! `keyfab-shell -c COMMAND`: the `SHELL` keyfab gives make while it plans a
//! target. It answers QMK's trivial `$(shell …)` pipelines itself and hands
//! everything else to `/bin/sh` (see the `keyfab-shell` crate). Kept apart
//! from `keyfab` so that it starts as fast as a shell does.

use std::io::Write as _;
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
        Run::Print(text, status) => {
            // Like echo, a closed stdout is no failure worth a message.
            let _ = std::io::stdout().write_all(text.as_bytes());
            return ExitCode::from(status);
        }
        Run::MakeDirs(dirs) => {
            if dirs.iter().all(|d| std::fs::create_dir_all(d).is_ok()) {
                return ExitCode::SUCCESS;
            }
        }
        Run::Exec { argv, quiet } => {
            if let Some(reply) = ask_host(&argv) {
                let _ = std::io::stdout().write_all(&reply.stdout);
                if !quiet {
                    let _ = std::io::stderr().write_all(&reply.stderr);
                }
                return ExitCode::from(reply.status.clamp(0, 255) as u8);
            }
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

/// The reply of the keyfab that runs make, when `argv` is a call of its
/// program and it ran it; `None` otherwise (the call is then started).
fn ask_host(argv: &[String]) -> Option<keyfab_shell::host::Reply> {
    use keyfab_shell::host;
    let program = std::env::var_os(host::PROGRAM_VAR)?;
    if argv.first().map(std::ffi::OsStr::new) != Some(program.as_os_str()) {
        return None;
    }
    let socket = std::env::var_os(host::SOCKET_VAR)?;
    host::ask(std::path::Path::new(&socket), argv)
        .ok()
        .flatten()
}

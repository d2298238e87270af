//! `keyfab-shell`, the SHELL make plans with, against the real `/bin/sh`:
//! whatever it answers itself, executes or hands on, what comes out
//! (stdout, stderr, status) is what the shell's own run gives.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;

const SHELL: &str = env!("CARGO_BIN_EXE_keyfab-shell");

/// QMK's own `$(shell …)` commands (as make expands them), and commands a
/// shell reads its own way.
const COMMANDS: &[&str] = &[
    "echo eeprom | tr '[:lower:]' '[:upper:]'",
    "echo SPACE_CADET | tr '[:upper:]' '[:lower:]'",
    "echo atmega32u4 | sed -e 's@+@Plus@g' -e 's@[^a-zA-Z0-9]@_@g' | tr '[:lower:]' '[:upper:]'",
    "echo handwired/c++/rev1 x | sed -e 's@+@Plus@g' -e 's@[^a-zA-Z0-9]@_@g' | tr '[:lower:]' '[:upper:]'",
    "echo  | sed -e 's@+@Plus@g' -e 's@[^a-zA-Z0-9]@_@g' | tr '[:lower:]' '[:upper:]'",
    "echo a   'b  c' \"d  e\"",
    "uname -s",
    "expr 28672 - 23500",
    "expr 23500 \\* 100 / 28672",
    "expr 0 \\* 100 / 28672",
    "expr 2 + 3 \\* 4 - 10 / 3 % 2",
    "expr -7 / 2 + -7 % 3",
    "expr 1 / 0",
    "expr 9223372036854775807 + 1",
    "echo a\\ \\ b | tr '[:lower:]' '[:upper:]'",
    "which no_such_program_kf 2>/dev/null",
    "no_such_program_kf --x",
    "echo $HOME | tr '[:lower:]' '[:upper:]'",
    "echo -n x | tr '[:lower:]' '[:upper:]'",
    "echo \"1 2 3\" | awk '{ printf \"%2s\", $3; }' 2>/dev/null",
    "n=`expr 32768 - 4096` && echo $(($n)) || echo 0",
    "printf '%s' 'a  b'",
    "exit 3",
    "false",
    "mkdir -p",
];

/// `program -c command` in `dir`; named `sh`, as make names the shell once
/// QMK's makefiles set `SHELL = sh` (the shell's messages start with it).
fn run(program: &str, dir: &Path, command: &str) -> (String, String, Option<i32>) {
    let out = Command::new(program)
        .arg0("sh")
        .args(["-c", command])
        .current_dir(dir)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[test]
fn every_command_gives_what_sh_gives() {
    let dir = tempfile::tempdir().unwrap();
    for command in COMMANDS {
        assert_eq!(
            run(SHELL, dir.path(), command),
            run("/bin/sh", dir.path(), command),
            "{command}"
        );
    }
}

#[test]
fn qmk_case_pipelines_start_no_process() {
    // With no PATH a shell cannot find tr or sed; keyfab-shell needs neither.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(SHELL)
        .args([
            "-c",
            "echo c++ planck/rev5 | sed -e 's@+@Plus@g' -e 's@[^a-zA-Z0-9]@_@g' | tr '[:lower:]' '[:upper:]'",
        ])
        .env("PATH", dir.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "CPLUSPLUS_PLANCK_REV5\n"
    );
    assert!(out.status.success());
    let out = Command::new(SHELL)
        .args(["-c", "mkdir -p a/b c 2>/dev/null"])
        .current_dir(dir.path())
        .env("PATH", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success() && out.stdout.is_empty());
    assert!(dir.path().join("a/b").is_dir() && dir.path().join("c").is_dir());
}

#[test]
fn a_folder_that_cannot_be_made_fails_as_mkdir_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "").unwrap();
    let command = "mkdir -p file/sub";
    let (_, ours_err, ours_status) = run(SHELL, dir.path(), command);
    let (_, sh_err, sh_status) = run("/bin/sh", dir.path(), command);
    assert_eq!(
        (ours_err.as_str(), ours_status),
        (sh_err.as_str(), sh_status)
    );
    assert_ne!(sh_status, Some(0));
}

#[test]
fn make_expands_qmk_idioms_the_same_with_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Makefile"),
        r#"F := BOOTMAGIC SPACE_CADET
LOWER := $(foreach f,$(F),$(shell echo $(f) | tr '[:upper:]' '[:lower:]'))
MCU_DEF := $(shell echo at90usb1286 | sed -e 's@+@Plus@g' -e 's@[^a-zA-Z0-9]@_@g' | tr '[:lower:]' '[:upper:]')
# QMK's common_rules.mk: from here on make runs every $(shell) through sh.
SHELL = sh
OS := $(shell uname -s)
$(shell mkdir -p .build/obj_x 2>/dev/null)
UPPER := $(shell echo lufa | tr '[:lower:]' '[:upper:]')
AWK := $(shell echo "1 2 3" | awk '{ printf "%2s", $$3; }' 2>/dev/null)
all: ; @echo "$(LOWER)|$(MCU_DEF)|$(OS)|$(UPPER)|$(AWK)|$(wildcard .build/obj_x)"
"#,
    )
    .unwrap();
    let make = |extra: &[String]| {
        let _ = std::fs::remove_dir_all(dir.path().join(".build"));
        let out = Command::new("make")
            .args(["-s", "-f", "Makefile"])
            .args(extra)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let plain = make(&[]);
    assert!(
        plain.starts_with("bootmagic space_cadet|AT90USB1286|")
            && plain.ends_with("|LUFA| 3|.build/obj_x\n"),
        "{plain}"
    );
    assert_eq!(make(&[format!("SHELL={SHELL}")]), plain);
}

/// A plain call of the host's program goes to the host's socket; when the
/// host does not know it, or no host listens, the program itself runs.
#[test]
fn calls_of_the_hosts_program_go_to_the_host() {
    use keyfab_shell::host::{self, Reply};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (stream, _) = listener.accept().unwrap();
            host::serve(stream, |argv| {
                (argv[1] == "known").then(|| Reply {
                    status: 7,
                    stdout: b"from the host\n".to_vec(),
                    stderr: b"a warning\n".to_vec(),
                })
            })
            .unwrap();
        }
    });
    let shell = |command: &str, socket: &Path| {
        let out = Command::new(SHELL)
            .args(["-c", command])
            .env(host::PROGRAM_VAR, "/bin/echo")
            .env(host::SOCKET_VAR, socket)
            .output()
            .unwrap();
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
            out.status.code(),
        )
    };
    assert_eq!(
        shell("/bin/echo known", &socket),
        ("from the host\n".into(), "a warning\n".into(), Some(7))
    );
    assert_eq!(
        shell("/bin/echo unknown", &socket),
        ("unknown\n".into(), String::new(), Some(0))
    );
    server.join().unwrap();
    assert_eq!(
        shell("/bin/echo known", &dir.path().join("nobody")),
        ("known\n".into(), String::new(), Some(0))
    );
}

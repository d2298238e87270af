//! What make runs as its `SHELL` while keyfab plans a target.
//!
//! QMK's makefiles call `$(shell …)` ~40 times per parse, and after
//! `common_rules.mk` sets `SHELL = sh` every call goes through a shell (make
//! 4.3 only skips the shell for `/bin/sh`). Most are trivial:
//! `echo WORDS | tr '[:lower:]' '[:upper:]'`, the `sed … | tr …` that makes
//! `-DQMK_MCU_…` names, `mkdir -p DIR 2>/dev/null`, or one plain command.
//! Each such pipeline costs a shell and one or two processes more (~2.6 ms
//! against ~1.2 ms for one small process). [`plan`] recognises exactly
//! these shapes, for words whose meaning no shell or locale can change, and
//! says what to do instead; everything else is [`Run::Shell`]: the real
//! `/bin/sh`, unchanged. A plain command for keyfab itself can be answered
//! by the keyfab that runs make ([`host`]).

pub mod host;

/// What to do for a `-c` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    /// Print this on stdout and exit with this status: what the pipeline
    /// prints, and its last command's status.
    Print(String, u8),
    /// `mkdir -p` these folders, printing nothing; if one cannot be made,
    /// run the shell instead (so its error message and status are mkdir's).
    MakeDirs(Vec<String>),
    /// Execute `argv[0]` (found on `PATH`) with these arguments, as a shell
    /// does for one simple command, with stderr to `/dev/null` when
    /// `quiet`; if it cannot be executed, run the shell instead.
    Exec { argv: Vec<String>, quiet: bool },
    /// Run `/bin/sh` with the arguments as given.
    Shell,
}

/// What to do for `sh -c command`.
pub fn plan(command: &str) -> Run {
    let Some(tokens) = lex(command) else {
        return Run::Shell;
    };
    let commands: Vec<&[Token]> = tokens.split(|t| *t == Token::Pipe).collect();
    if commands.iter().any(|c| c.is_empty()) {
        return Run::Shell;
    }
    if let Some(text) = echo_pipeline(&commands) {
        return Run::Print(text, 0);
    }
    let [command] = commands.as_slice() else {
        return Run::Shell;
    };
    let (words, null_stderr) = match command {
        [words @ .., Token::NullStderr] => (words, true),
        words => (*words, false),
    };
    let Some(words) = words_of(words) else {
        return Run::Shell;
    };
    if let Some(run) = expr(&words).filter(|_| !null_stderr) {
        return run;
    }
    match words.as_slice() {
        [mkdir, p, dirs @ ..]
            if mkdir == "mkdir"
                && p == "-p"
                && !dirs.is_empty()
                && dirs.iter().all(|d| !d.is_empty() && !d.starts_with('-')) =>
        {
            Run::MakeDirs(dirs.to_vec())
        }
        [program, ..] if executable(program) => Run::Exec {
            argv: words,
            quiet: null_stderr,
        },
        _ => Run::Shell,
    }
}

/// `expr` of integers and `+ - * / %` (QMK's size arithmetic), as GNU
/// expr computes it: `* / %` before `+ -`, left to right, truncating;
/// status 1 when the result is 0. `None` for anything else, a division by
/// zero or an overflow (expr itself then says what it makes of it).
fn expr(words: &[String]) -> Option<Run> {
    let (name, args) = words.split_first()?;
    if name != "expr" || args.len() < 3 || args.len() % 2 == 0 {
        return None;
    }
    let int = |w: &str| {
        let digits = w.strip_prefix('-').unwrap_or(w);
        let plain = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        plain.then(|| w.parse::<i64>().ok()).flatten()
    };
    // Sums of products: `sum` holds the finished terms, `term` the open one.
    let mut sum: i64 = 0;
    let mut sign: i64 = 1;
    let mut term = int(&args[0])?;
    for pair in args[1..].chunks(2) {
        let value = int(&pair[1])?;
        match pair[0].as_str() {
            "*" => term = term.checked_mul(value)?,
            "/" => term = term.checked_div(value)?,
            "%" => term = term.checked_rem(value)?,
            op @ ("+" | "-") => {
                sum = sum.checked_add(term.checked_mul(sign)?)?;
                sign = if op == "+" { 1 } else { -1 };
                term = value;
            }
            _ => return None,
        }
    }
    let result = sum.checked_add(term.checked_mul(sign)?)?;
    Some(Run::Print(format!("{result}\n"), u8::from(result == 0)))
}

/// One token of a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A word after quote removal.
    Word(String),
    Pipe,
    /// `||`.
    Or,
    /// `>` at the start of a word: stdout into the next word's file.
    Into,
    /// `2>/dev/null` as a word of its own.
    NullStderr,
}

/// QMK's stamp recipes (`common_rules.mk`): a file rewritten only when
/// what it should hold changed, so that make's timestamps show new flags,
/// a new list of objects or a new compiler, and only those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stamp {
    /// `echo 'WORDS' | cmp -s - FILE || echo 'WORDS' > FILE`: FILE holds
    /// `text` (echo's line, newline included).
    Text { file: String, text: String },
    /// `CC --version | cmp -s - FILE || CC --version > FILE`: FILE holds
    /// what `program --version` prints on stdout.
    VersionOf { file: String, program: String },
}

/// The stamp `line` (a recipe line make printed) makes, when it is one of
/// QMK's two shapes and its text means the same to every shell: echo
/// options and backslash escapes (`\n`, `\c`, …) are read differently
/// by dash and bash, so a text with them is `None` (as is anything else).
pub fn stamp(line: &str) -> Option<Stamp> {
    use Token::{Into, Or, Pipe, Word};
    let tokens = lex(line)?;
    let [Word(a), Word(a_arg), Pipe, Word(cmp), Word(s), Word(dash), Word(file), Or, Word(b), Word(b_arg), Into, Word(into)] =
        tokens.as_slice()
    else {
        return None;
    };
    if cmp != "cmp" || s != "-s" || dash != "-" || file != into || a != b || a_arg != b_arg {
        return None;
    }
    let file = file.clone();
    match (a.as_str(), a_arg.as_str()) {
        ("echo", text) => {
            let option = text.len() > 1
                && text.starts_with('-')
                && text[1..].bytes().all(|b| b"neE".contains(&b));
            let escapes = text.split('\\').skip(1).any(|after| {
                after.is_empty() || after.starts_with(|c: char| c.is_ascii_alphanumeric())
            });
            (!option && !escapes).then(|| Stamp::Text {
                file,
                text: format!("{text}\n"),
            })
        }
        (program, "--version") if executable(program) => Some(Stamp::VersionOf {
            file,
            program: program.to_string(),
        }),
        _ => None,
    }
}

/// Characters that mean nothing to a shell outside quotes (no globbing,
/// expansion, tilde, comment, brace or operator), so a word made of them is
/// itself; `=` only matters in a command's first word, see [`executable`].
/// Nor to make, in a word of its command line.
pub fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-+./,:=@%".contains(c)
}

/// Splits a command into words, pipes, `||` and `>`, or `None` when it has
/// anything whose meaning needs a shell: other operators, expansions,
/// unquoted globs, newlines, unterminated quotes.
fn lex(command: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut rest = command;
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        let Some(c) = rest.chars().next() else {
            return Some(tokens);
        };
        if c == '|' {
            if rest[1..].starts_with('|') {
                tokens.push(Token::Or);
                rest = &rest[2..];
            } else {
                tokens.push(Token::Pipe);
                rest = &rest[1..];
            }
            continue;
        }
        if c == '>' {
            // `>>`, `>&`, `>|` and the like are left to a shell.
            if !rest[1..].starts_with([' ', '\t']) || tokens.last() == Some(&Token::Into) {
                return None;
            }
            tokens.push(Token::Into);
            rest = &rest[1..];
            continue;
        }
        if let Some(after) = rest.strip_prefix("2>/dev/null") {
            if after.is_empty() || after.starts_with([' ', '\t', '|']) {
                tokens.push(Token::NullStderr);
                rest = after;
                continue;
            }
        }
        let mut word = String::new();
        while let Some(c) = rest.chars().next() {
            match c {
                ' ' | '\t' | '|' => break,
                '\'' => {
                    let end = rest[1..].find('\'')?;
                    word.push_str(&rest[1..1 + end]);
                    rest = &rest[end + 2..];
                }
                '"' => {
                    let end = rest[1..].find('"')?;
                    let inner = &rest[1..1 + end];
                    // Inside double quotes these still expand or escape.
                    if inner.contains(['$', '`', '\\', '!']) {
                        return None;
                    }
                    word.push_str(inner);
                    rest = &rest[end + 2..];
                }
                '\\' => {
                    // Outside quotes a backslash quotes the next character.
                    let next = rest[1..].chars().next().filter(|n| *n != '\n')?;
                    word.push(next);
                    rest = &rest[1 + next.len_utf8()..];
                }
                c if plain(c) => {
                    word.push(c);
                    rest = &rest[1..];
                }
                _ => return None,
            }
        }
        tokens.push(Token::Word(word));
    }
}

/// A command's words; `None` when it has a token other than words.
fn words_of(command: &[Token]) -> Option<Vec<String>> {
    command
        .iter()
        .map(|t| match t {
            Token::Word(w) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

/// Whether a shell would execute `program` from `PATH` (or as a path):
/// not an assignment, keyword or builtin, whose meaning is the shell's own.
fn executable(program: &str) -> bool {
    const SHELL_OWN: &[&str] = &[
        "!", ".", ":", "[", "alias", "bg", "break", "case", "cd", "command", "continue", "do",
        "done", "echo", "elif", "else", "esac", "eval", "exec", "exit", "export", "false", "fc",
        "fg", "fi", "for", "function", "getopts", "hash", "if", "in", "jobs", "kill", "let",
        "local", "printf", "pwd", "read", "readonly", "return", "select", "set", "shift", "source",
        "test", "then", "time", "times", "trap", "true", "type", "typeset", "ulimit", "umask",
        "unalias", "unset", "until", "wait", "while",
    ];
    !program.is_empty() && !program.contains('=') && !SHELL_OWN.contains(&program)
}

/// What `echo WORDS | FILTER | …` prints, when every filter is one this
/// module knows exactly; `None` otherwise.
fn echo_pipeline(commands: &[&[Token]]) -> Option<String> {
    let (first, filters) = commands.split_first()?;
    let echo = words_of(first)?;
    let (name, args) = echo.split_first()?;
    // Echo options and backslash escapes differ between shells; non-ASCII
    // text would make tr and sed depend on the locale.
    if name != "echo"
        || args.first().is_some_and(|a| a.starts_with('-'))
        || args.iter().any(|a| a.contains('\\') || !a.is_ascii())
    {
        return None;
    }
    let mut line = args.join(" ");
    for filter in filters {
        line = apply(&words_of(filter)?, &line)?;
    }
    Some(line + "\n")
}

/// One filter of an echo pipeline applied to its (single, ASCII) line.
fn apply(filter: &[String], line: &str) -> Option<String> {
    let filter: Vec<&str> = filter.iter().map(String::as_str).collect();
    match filter.as_slice() {
        ["tr", "[:lower:]", "[:upper:]"] => Some(line.to_ascii_uppercase()),
        ["tr", "[:upper:]", "[:lower:]"] => Some(line.to_ascii_lowercase()),
        ["sed", scripts @ ..] if !scripts.is_empty() && scripts.len() % 2 == 0 => {
            let mut line = line.to_string();
            for pair in scripts.chunks(2) {
                if pair[0] != "-e" {
                    return None;
                }
                line = substitute(pair[1], &line)?;
            }
            Some(line)
        }
        _ => None,
    }
}

/// A sed script `s@FROM@TO@g` where FROM is a literal (no BRE operator) or
/// the class `[^a-zA-Z0-9]`, and TO has no `&` or escape; applied to `line`.
fn substitute(script: &str, line: &str) -> Option<String> {
    let body = script.strip_prefix("s@")?.strip_suffix("@g")?;
    let (from, to) = body.split_once('@')?;
    if to.contains(['@', '&', '\\']) || from.is_empty() {
        return None;
    }
    if from == "[^a-zA-Z0-9]" {
        return Some(
            line.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect(),
        );
    }
    if from.contains(['.', '[', ']', '*', '^', '$', '\\', '@']) {
        return None;
    }
    Some(line.replace(from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn print(s: &str) -> Run {
        Run::Print(s.to_string(), 0)
    }

    #[test]
    fn qmk_case_pipelines_are_answered() {
        assert_eq!(
            plan("echo eeprom | tr '[:lower:]' '[:upper:]'"),
            print("EEPROM\n")
        );
        assert_eq!(
            plan("echo SPACE_CADET | tr '[:upper:]' '[:lower:]'"),
            print("space_cadet\n")
        );
        assert_eq!(
            plan("echo atmega32u4 | sed -e 's@+@Plus@g' -e 's@[^a-zA-Z0-9]@_@g' | tr '[:lower:]' '[:upper:]'"),
            print("ATMEGA32U4\n")
        );
        assert_eq!(
            plan("echo planck/rev5 c++ | sed -e 's@+@Plus@g' -e 's@[^a-zA-Z0-9]@_@g' | tr '[:lower:]' '[:upper:]'"),
            print("PLANCK_REV5_CPLUSPLUS\n")
        );
        // An empty variable: echo prints an empty line.
        assert_eq!(
            plan(
                "echo  | sed -e 's@+@Plus@g' -e 's@[^a-zA-Z0-9]@_@g' | tr '[:lower:]' '[:upper:]'"
            ),
            print("\n")
        );
        assert_eq!(plan("echo a   'b  c'"), print("a b  c\n"));
    }

    #[test]
    fn anything_a_shell_could_read_differently_goes_to_the_shell() {
        for cmd in [
            "echo $HOME | tr '[:lower:]' '[:upper:]'",
            "echo a* | tr '[:lower:]' '[:upper:]'",
            "echo ~ | tr '[:lower:]' '[:upper:]'",
            "echo -n x | tr '[:lower:]' '[:upper:]'",
            "echo 'a\\nb' | tr '[:lower:]' '[:upper:]'",
            "echo \"$x\" | tr '[:lower:]' '[:upper:]'",
            "echo é | tr '[:lower:]' '[:upper:]'",
            "echo x | tr a-z A-Z",
            "echo x | tr [:lower:] [:upper:]",
            "echo x | sed 's@x@y@g'",
            "echo x | sed -e 's@x.@y@g'",
            "echo x | sed -e 's@x@&&@g'",
            "echo x || true",
            "echo x; echo y",
            "echo x > f",
            "echo x\necho y",
            "echo 'x",
            "echo x |",
            "| tr a b",
            "a=b cmd",
            "cd /tmp",
            "printf '%s' x",
            "true",
            "n=`expr 1 + 2` && echo $$(($$n))",
            "",
        ] {
            assert_eq!(plan(cmd), Run::Shell, "{cmd}");
        }
    }

    #[test]
    fn folders_and_plain_commands() {
        assert_eq!(
            plan("mkdir -p .build/obj_planck_rev5_default 2>/dev/null"),
            Run::MakeDirs(vec![".build/obj_planck_rev5_default".into()])
        );
        assert_eq!(
            plan("mkdir -p a b"),
            Run::MakeDirs(vec!["a".into(), "b".into()])
        );
        let exec = |argv: &[&str], quiet| Run::Exec {
            argv: argv.iter().map(|w| w.to_string()).collect(),
            quiet,
        };
        assert_eq!(plan("uname -s"), exec(&["uname", "-s"], false));
        assert_eq!(
            plan("which teensy_loader_cli 2>/dev/null"),
            exec(&["which", "teensy_loader_cli"], true)
        );
        assert_eq!(
            plan("/x/keyfab --cache /c probe-cc-option --log /t/f 'avr-gcc' '-mrelax' '' ''"),
            exec(
                &[
                    "/x/keyfab",
                    "--cache",
                    "/c",
                    "probe-cc-option",
                    "--log",
                    "/t/f",
                    "avr-gcc",
                    "-mrelax",
                    "",
                    ""
                ],
                false
            )
        );
        assert_eq!(plan("expr 28672 - 23500"), Run::Print("5172\n".into(), 0));
        assert_eq!(
            plan("expr 23500 \\* 100 / 28672"),
            Run::Print("81\n".into(), 0)
        );
        assert_eq!(plan("expr 0 - 28672"), Run::Print("-28672\n".into(), 0));
        assert_eq!(
            plan("expr 2 + 3 \\* 4 - 10 / 3 % 2"),
            Run::Print("13\n".into(), 0)
        );
        assert_eq!(plan("expr 0 \\* 100 / 28672"), Run::Print("0\n".into(), 1));
        for odd in [
            "expr 1 / 0",
            "expr 1 +",
            "expr a + 1",
            "expr 9223372036854775807 + 1",
            "expr 1 + 1 2>/dev/null",
        ] {
            assert!(!matches!(plan(odd), Run::Print(..)), "{odd}");
        }
        // Not `mkdir -p FOLDERS`: mkdir itself says what it makes of it.
        assert_eq!(plan("mkdir -p"), exec(&["mkdir", "-p"], false));
        assert_eq!(
            plan("mkdir -p -m 700 x"),
            exec(&["mkdir", "-p", "-m", "700", "x"], false)
        );
    }

    /// The lines QMK's `common_rules.mk` prints for its stamp files, as
    /// make prints them (flags with `\"`, a shell-quoted `-D__DATE__`, the
    /// recipe's doubled space before the second `avr-gcc`).
    #[test]
    fn qmk_stamp_recipes() {
        let flags = r#"-Os -D__DATE__='"Nov 14 2023"' -DQMK_KEYBOARD=\"planck/rev5\" "#;
        let line = format!(
            "echo '{flags}' | cmp -s - .build/o/cflags.txt || echo '{flags}' > .build/o/cflags.txt"
        );
        assert_eq!(
            stamp(&line),
            Some(Stamp::Text {
                file: ".build/o/cflags.txt".into(),
                // The shell's quote removal, as for the compile's argv.
                text: "-Os -D__DATE__=Nov 14 2023 -DQMK_KEYBOARD=\\\"planck/rev5\\\" \n".into(),
            })
        );
        assert_eq!(
            stamp("avr-gcc --version | cmp -s - .build/o/compiler.txt ||  avr-gcc --version > .build/o/compiler.txt"),
            Some(Stamp::VersionOf {
                file: ".build/o/compiler.txt".into(),
                program: "avr-gcc".into(),
            })
        );
        // Still a line for the shell when make runs it.
        assert_eq!(plan(&line), Run::Shell);
    }

    #[test]
    fn stamps_a_shell_could_read_otherwise_are_not_recognised() {
        for line in [
            // Escapes dash's echo reads and bash's does not.
            r"echo 'a\nb' | cmp -s - f || echo 'a\nb' > f",
            r"echo 'a\\b' | cmp -s - f || echo 'a\\b' > f",
            r"echo 'a\' | cmp -s - f || echo 'a\' > f",
            // An echo option.
            "echo -n | cmp -s - f || echo -n > f",
            // Not the same text, or not the same file.
            "echo a | cmp -s - f || echo b > f",
            "echo a | cmp -s - f || echo a > g",
            // Appending, or no space after `>`.
            "echo a | cmp -s - f || echo a >> f",
            "echo a | cmp -s - f || echo a >f",
            // An expansion, another program, another shape.
            "echo $X | cmp -s - f || echo $X > f",
            "gcc --help | cmp -s - f || gcc --help > f",
            "test -f f || touch f",
            "echo a | cmp -s - f && echo a > f",
        ] {
            assert_eq!(stamp(line), None, "{line}");
        }
    }
}

//! The plan of one target: what QMK's make would run, as typed steps.
//!
//! QMK's recipes print a status line (`printf "Compiling: quantum/led.c"`)
//! and run the real command through `BUILD_CMD`, which make's dry run
//! prints as `LOG=$(<command> 2>&1) ; if [ $? -gt 0 ]; …`. We take the
//! command out of each `LOG=$(…)`, split it like a shell would, and type it
//! by the status line before it.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// One thing the build does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// A generator call through `$(QMK_BIN)`, writing `output`.
    Generate { argv: Vec<String>, output: String },
    /// A C/C++ compile or an assembly; `depfile` is where make keeps the
    /// dependency file (the compiler writes `depfile_tmp`, then it is moved).
    Compile {
        source: String,
        object: String,
        argv: Vec<String>,
        depfile_tmp: Option<String>,
        depfile: Option<String>,
    },
    /// `ar rcs OUT.a IN.o…`: a static library of objects.
    Archive { argv: Vec<String>, output: String },
    /// The link of the ELF; `env` are `VAR=value` prefixes of the command.
    Link {
        argv: Vec<String>,
        env: Vec<(String, String)>,
        output: String,
    },
    /// objcopy and friends: ELF → `.hex`/`.bin`/…; `then` are commands
    /// run after it on what it wrote, in order (the `.uf2` recipe's
    /// `uf2conv.py TMP --output X.uf2`, `dfu-suffix … -a X.bin` in place);
    /// `output` is the file the whole chain produces.
    Convert {
        argv: Vec<String>,
        input: String,
        output: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        then: Vec<Vec<String>>,
    },
    /// Copy of the firmware to the tree root (QMK's `cpfirmware`).
    Copy { from: String, to: String },
    /// A file make rewrites only when what it holds changed (QMK's
    /// `cflags.txt`, `compiler.txt`, `obj.txt`, …), before the steps that
    /// depend on it: a plain make in the same `.build` later finds every
    /// object newer than it, as after a build of its own.
    Stamp { file: String, holds: Stamped },
}

/// What a [`Step::Stamp`] file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stamped {
    /// These bytes.
    Text(String),
    /// What the program prints on stdout for `--version`.
    VersionOf(String),
}

/// A command and the commands chained after it, as one command line
/// (`a … && b … && c …`).
pub fn command_chain(argv: &[String], then: &[Vec<String>]) -> Vec<String> {
    let mut chain = argv.to_vec();
    for cmd in then {
        chain.push("&&".into());
        chain.extend(cmd.iter().cloned());
    }
    chain
}

impl Plan {
    /// The programs that compile and link (argv[0] of those steps),
    /// sorted, each once: what QMK's `cc-option` probes ran while make
    /// planned, so the plan holds only while they are the same programs.
    pub fn compilers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Compile { argv, .. } | Step::Link { argv, .. } => argv.first().cloned(),
                _ => None,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl Step {
    /// The command line a step's provenance records as `argv:<output>`
    /// (none for a copy or a stamp).
    pub fn command_line(&self) -> Option<Vec<String>> {
        match self {
            Step::Generate { argv, .. }
            | Step::Compile { argv, .. }
            | Step::Archive { argv, .. }
            | Step::Link { argv, .. } => Some(argv.clone()),
            Step::Convert { argv, then, .. } => Some(command_chain(argv, then)),
            Step::Copy { .. } | Step::Stamp { .. } => None,
        }
    }

    /// The step's own command words (a conversion's chained commands
    /// aside); none for a copy or a stamp.
    fn argv_mut(&mut self) -> Option<&mut Vec<String>> {
        match self {
            Step::Generate { argv, .. }
            | Step::Compile { argv, .. }
            | Step::Archive { argv, .. }
            | Step::Link { argv, .. }
            | Step::Convert { argv, .. } => Some(argv),
            Step::Copy { .. } | Step::Stamp { .. } => None,
        }
    }

    /// The file this step produces.
    pub fn output(&self) -> &str {
        match self {
            Step::Generate { output, .. }
            | Step::Archive { output, .. }
            | Step::Link { output, .. }
            | Step::Convert { output, .. } => output,
            Step::Compile { object, .. } => object,
            Step::Copy { to, .. } => to,
            Step::Stamp { file, .. } => file,
        }
    }
}

/// The steps of one target, in make's order, plus facts read from recipes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// The firmware size limit from QMK's size check, when the plan has one.
    pub max_size: Option<u64>,
    /// The free space under which that check warns (AVR's `SIZE_MARGIN`).
    #[serde(default)]
    pub size_margin: Option<u64>,
    /// Generator calls make ran while reading the makefiles (`$(shell
    /// $(QMK_BIN) …)`, e.g. `version.h`); a plan from the cache runs them
    /// again before compiling, since make does not.
    #[serde(default)]
    pub parse_time: Vec<Vec<String>>,
}

/// A plan as the cache keeps it: each distinct command word once, and each
/// step's words as indices into them. A plan's compiles repeat the same
/// ~100 flags: QMK's planck/rev5 plan was 216 KB of JSON, 1.5 ms to parse,
/// most of a cached plan's time.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredPlan {
    words: Vec<String>,
    /// For each step with command words, in order.
    argvs: Vec<Vec<u32>>,
    /// The plan with those steps' words taken out.
    plan: Plan,
}

impl StoredPlan {
    pub fn of(plan: &Plan) -> StoredPlan {
        let mut plan = plan.clone();
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut words = Vec::new();
        let mut argvs = Vec::new();
        for step in &mut plan.steps {
            if let Some(argv) = step.argv_mut() {
                let ids = std::mem::take(argv)
                    .into_iter()
                    .map(|w| {
                        *index.entry(w).or_insert_with_key(|w| {
                            words.push(w.clone());
                            (words.len() - 1) as u32
                        })
                    })
                    .collect();
                argvs.push(ids);
            }
        }
        StoredPlan { words, argvs, plan }
    }

    /// The plan back; `None` when the indices do not fit (a damaged entry,
    /// which the caller treats as no plan).
    pub fn into_plan(self) -> Option<Plan> {
        let StoredPlan {
            words,
            argvs,
            mut plan,
        } = self;
        let mut argvs = argvs.into_iter();
        for step in &mut plan.steps {
            if let Some(argv) = step.argv_mut() {
                *argv = argvs
                    .next()?
                    .into_iter()
                    .map(|i| words.get(i as usize).cloned())
                    .collect::<Option<_>>()?;
            }
        }
        argvs.next().is_none().then_some(plan)
    }
}

impl Plan {
    pub fn compiles(&self) -> impl Iterator<Item = &Step> {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Compile { .. }))
    }
}

/// A recipe we could not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("make dry run, line {line}: cannot split the command: {text}")]
    Unsplittable { line: usize, text: String },
    #[error("make dry run, line {line}: {what}: {text}")]
    Unexpected {
        line: usize,
        what: String,
        text: String,
    },
    #[error("make dry run printed no compile steps")]
    Empty,
    #[error("make dry run: {file} is copied to {copy}, but no step the dry run printed makes it (a recipe keyfab does not read)")]
    Unmade { file: String, copy: String },
    #[error("make dry run: {link} links {object}, but no step the dry run printed makes it: is its source missing (a submodule not checked out: `git submodule update --init --recursive`)?")]
    Unlinked { object: String, link: String },
}

/// Parses the output of `make -n` of a QMK target into a plan.
pub fn parse_dry_run(output: &str) -> Result<Plan, PlanError> {
    let mut parser = DryRunParser::default();
    for line in output.lines() {
        parser.line(line)?;
    }
    parser.finish()
}

/// [`parse_dry_run`] a line at a time, so steps can be acted on while make
/// still prints (see `Executor::with_early`).
#[derive(Debug, Default)]
pub struct DryRunParser {
    plan: Plan,
    lineno: usize,
    status: Option<(String, String)>,
    /// Inside `if [ ! -z "ARGS" ]; then \` … `fi`: whether the shell would
    /// run the commands (ARGS not empty).
    shell_if: Option<bool>,
}

impl DryRunParser {
    /// The steps parsed so far, in make's order.
    pub fn steps(&self) -> &[Step] {
        &self.plan.steps
    }

    /// Reads the next line of make's output.
    pub fn line(&mut self, line: &str) -> Result<(), PlanError> {
        self.lineno += 1;
        let lineno = self.lineno;
        let plan = &mut self.plan;
        if let Some(run) = self.shell_if {
            if line.trim() == "fi" {
                self.shell_if = None;
            } else if run {
                in_place_command(plan, line).map_err(|what| PlanError::Unexpected {
                    line: lineno,
                    what,
                    text: line.to_string(),
                })?;
            }
            return Ok(());
        }
        if let Some(run) = if_not_empty(line) {
            self.shell_if = Some(run);
            return Ok(());
        }
        if let Some(s) = status_line(line) {
            self.status = Some(s);
            return Ok(());
        }
        if let Some(cmd) = build_cmd(line) {
            let Some(words) = shlex::split(cmd) else {
                return Err(PlanError::Unsplittable {
                    line: lineno,
                    text: cmd.to_string(),
                });
            };
            let (verb, subject) = self.status.take().unwrap_or_default();
            plan.steps
                .push(typed_step(&verb, &subject, words).map_err(|what| {
                    PlanError::Unexpected {
                        line: lineno,
                        what,
                        text: cmd.to_string(),
                    }
                })?);
            return Ok(());
        }
        if let Some(stamp) = keyfab_shell::stamp(line) {
            plan.steps.push(match stamp {
                keyfab_shell::Stamp::Text { file, text } => Step::Stamp {
                    file,
                    holds: Stamped::Text(text),
                },
                keyfab_shell::Stamp::VersionOf { file, program } => Step::Stamp {
                    file,
                    holds: Stamped::VersionOf(program),
                },
            });
            return Ok(());
        }
        if let Some(step) = bare_objcopy(line) {
            // AVR's `bin` recipe (the LUFA mass-storage bootloader's
            // firmware): `$(OBJCOPY) -Iihex -Obinary X.hex X.bin --pad-to N`,
            // with no status line before it.
            plan.steps.push(step);
            return Ok(());
        }
        if let Some((from, to)) = copy_firmware(line) {
            // QMK's ARM recipes copy the same firmware up to three times.
            let copy = Step::Copy { from, to };
            if !plan.steps.contains(&copy) {
                plan.steps.push(copy);
            }
            return Ok(());
        }
        if let Some(max) = size_limit(line) {
            plan.max_size = Some(max);
        } else if let Some(margin) = plan.max_size.and(size_margin(line)) {
            plan.size_margin = Some(margin);
        }
        Ok(())
    }

    /// The plan, once make's output has ended.
    pub fn finish(self) -> Result<Plan, PlanError> {
        if self.plan.compiles().next().is_none() {
            return Err(PlanError::Empty);
        }
        let made: std::collections::HashSet<&str> =
            self.plan.steps.iter().map(Step::output).collect();
        for step in &self.plan.steps {
            match step {
                // A copy of a file no step makes: make ran a recipe line this
                // parser does not read, which would fail the build later,
                // obscurely.
                Step::Copy { from, to } if !made.contains(from.as_str()) => {
                    return Err(PlanError::Unmade {
                        file: from.clone(),
                        copy: to.clone(),
                    });
                }
                // An object the link reads that no step makes: make found no
                // source for it (a submodule not checked out, say) and
                // printed no compile. Such a plan would fail at the link, or
                // link a stale object left in `.build`; as an error it is not
                // kept, so the plan is made again once the source is there.
                Step::Link { argv, output, .. } => {
                    let unmade = argv[1..].iter().find(|w| {
                        (w.ends_with(".o") || w.ends_with(".a"))
                            && w.starts_with(".build/")
                            && !made.contains(w.as_str())
                    });
                    if let Some(object) = unmade {
                        return Err(PlanError::Unlinked {
                            object: object.clone(),
                            link: output.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(self.plan)
    }
}

/// `printf "Compiling: quantum/led.c" | awk …` → ("Compiling", "quantum/led.c").
fn status_line(line: &str) -> Option<(String, String)> {
    let start = line.find("printf \"")? + "printf \"".len();
    let rest = &line[start..];
    let end = rest.find('"')?;
    let (verb, subject) = rest[..end].split_once(": ")?;
    if !line.contains("| awk") && !line.contains("| cat") {
        return None;
    }
    Some((verb.to_string(), subject.trim().to_string()))
}

/// The command inside `LOG=$(<cmd> 2>&1) ; if [ $? -gt 0 ]`.
fn build_cmd(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("LOG=$(")?;
    let end = rest.find(" 2>&1) ; if [ $? -gt 0 ]")?;
    Some(rest[..end].trim())
}

/// `if [ ! -z "ARGS" ]; then \` (QMK's `DFU_SUFFIX_ARGS` test) → whether
/// ARGS is not empty.
fn if_not_empty(line: &str) -> Option<bool> {
    let rest = line.trim().strip_prefix("if [ ! -z \"")?;
    let (args, tail) = rest.split_once('"')?;
    (tail.trim() == "]; then \\").then(|| !args.trim().is_empty())
}

/// A command inside such an `if` (`dfu-suffix -v V -p P -a X.bin 1>/dev/null ;\`):
/// it rewrites a file an earlier conversion wrote, so it joins that step's
/// `then`.
fn in_place_command(plan: &mut Plan, line: &str) -> Result<(), String> {
    let text = line.trim().trim_end_matches('\\').trim_end();
    let text = text.trim_end_matches(';').trim_end();
    let words = shlex::split(text).ok_or("cannot split the command")?;
    let words = without_redirections(words);
    if words.is_empty() {
        return Ok(());
    }
    let step = plan
        .steps
        .iter_mut()
        .rev()
        .find(|s| matches!(s, Step::Convert { output, .. } if words[1..].contains(output)));
    match step {
        Some(Step::Convert { then, .. }) => {
            then.push(words);
            Ok(())
        }
        _ => Err("a command on no file an earlier step wrote".into()),
    }
}

/// The words of a command without its output redirections (`>/dev/null`,
/// `1>/dev/null`, `2>&1`): the executor keeps a chained command's output
/// only to show when it fails.
fn without_redirections(words: Vec<String>) -> Vec<String> {
    let mut kept = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let op = w.trim_start_matches(|c: char| c.is_ascii_digit() || c == '&');
        if !op.starts_with('>') {
            kept.push(w);
        } else if op == ">" || op == ">>" {
            it.next(); // `> FILE`: the file is the next word
        }
    }
    kept
}

/// A bare `objcopy … IN OUT …` line (no `LOG=$(…)` around it) → a
/// conversion step.
fn bare_objcopy(line: &str) -> Option<Step> {
    // Most lines make read are no objcopy: look at the program before
    // splitting the whole line.
    let program = line.split_whitespace().next()?;
    if !program.rsplit('/').next()?.ends_with("objcopy") {
        return None;
    }
    let words = shlex::split(line.trim().trim_end_matches(';'))?;
    let (input, output) = objcopy_files(&words)?;
    Some(Step::Convert {
        argv: words,
        input,
        output,
        then: Vec::new(),
    })
}

/// objcopy's input and output: its two words that are neither options nor
/// an option's value (`-O binary`, `--pad-to 26624`).
fn objcopy_files(words: &[String]) -> Option<(String, String)> {
    const WITH_VALUE: &[&str] = &[
        "-I",
        "-O",
        "-B",
        "-R",
        "-j",
        "-K",
        "-N",
        "-L",
        "-G",
        "-W",
        "-b",
        "-i",
        "--pad-to",
        "--gap-fill",
        "--set-start",
        "--adjust-start",
        "--change-start",
        "--change-addresses",
        "--adjust-vma",
        "--remove-section",
        "--only-section",
        "--add-section",
        "--rename-section",
        "--set-section-flags",
        "--interleave",
    ];
    let mut files = Vec::new();
    let mut it = words.iter().skip(1);
    while let Some(w) = it.next() {
        if WITH_VALUE.contains(&w.as_str()) {
            it.next();
        } else if !w.starts_with('-') {
            files.push(w.clone());
        }
    }
    let [input, output] = <[String; 2]>::try_from(files).ok()?;
    Some((input, output))
}

/// `cp .build/x.hex x.hex && …` (or `…;`) → (from, to).
fn copy_firmware(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("cp ")?;
    let cmd = rest.split(" && ").next()?.trim_end().trim_end_matches(';');
    let mut parts = cmd.split_whitespace();
    let (from, to) = (parts.next()?, parts.next()?);
    (parts.next().is_none() && from.starts_with(".build/"))
        .then(|| (from.to_string(), to.to_string()))
}

/// QMK's size check: `if [ 28672 -gt 0 ] && [ … ]` → 28672.
fn size_limit(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("if [ ")?;
    let (n, tail) = rest.split_once(' ')?;
    tail.starts_with("-gt 0 ] && [")
        .then(|| n.parse().ok())
        .flatten()
}

/// The margin of QMK's AVR size check, from its line after the limit's,
/// `if [ FREE -lt SIZE_MARGIN ]; then \` (FREE as make found it while
/// planning: from the firmware of an earlier build, if any).
fn size_margin(line: &str) -> Option<u64> {
    let rest = line.trim().strip_prefix("if [ ")?;
    let (free, rest) = rest.split_once(" -lt ")?;
    let (margin, tail) = rest.split_once(' ')?;
    (free.parse::<i64>().is_ok() && tail == "]; then \\")
        .then(|| margin.parse().ok())
        .flatten()
}

/// Types a command by the status line printed before it.
fn typed_step(verb: &str, subject: &str, words: Vec<String>) -> Result<Step, String> {
    // `A || exit 0` (QMK's `.bin`/`.eep` recipes): the command's failure is
    // ignored by make; we run `A` and treat a failure as one.
    let words = match words.iter().position(|w| w == "||") {
        Some(i) if words[i + 1..] == ["exit", "0"] => words[..i].to_vec(),
        Some(_) => return Err("a command with `||`".into()),
        None => words,
    };
    // `A && B`: the compile's `mv -f x.td x.d`, a generator followed by
    // more, the `.uf2` recipe's `objcopy … X.tmp && uf2conv.py X.tmp --output X.uf2`.
    let mut parts = words.split(|w| w == "&&");
    let first = parts.next().unwrap_or_default().to_vec();
    let rest: Vec<Vec<String>> = parts.map(<[String]>::to_vec).collect();
    match verb {
        "Generating" => {
            let output = flag_value(&first, "--output").ok_or("generator without --output")?;
            Ok(Step::Generate {
                argv: first,
                output,
            })
        }
        "Compiling" | "Assembling" => {
            let object = flag_value(&first, "-o").ok_or("compile without -o")?;
            let depfile_tmp = flag_value(&first, "-MF");
            let depfile = rest
                .iter()
                .find(|c| c.len() == 4 && c[0] == "mv" && c[1] == "-f")
                .map(|c| c[3].clone());
            Ok(Step::Compile {
                source: subject.to_string(),
                object,
                argv: first,
                depfile_tmp,
                depfile,
            })
        }
        "Archiving" => {
            let output = first.get(2).cloned().ok_or("archive without output")?;
            Ok(Step::Archive {
                argv: first,
                output,
            })
        }
        "Linking" => {
            let mut env = Vec::new();
            let mut argv = first;
            while let Some((k, v)) = argv
                .first()
                .and_then(|w| w.split_once('='))
                .filter(|(k, _)| is_var_name(k))
            {
                env.push((k.to_string(), v.to_string()));
                argv.remove(0);
            }
            let output = flag_value(&argv, "--output")
                .or_else(|| flag_value(&argv, "-o"))
                .ok_or("link without --output")?;
            Ok(Step::Link { argv, env, output })
        }
        v if v.starts_with("Creating") => {
            // `objcopy … IN OUT`: the last two words.
            if first.len() < 3 {
                return Err("conversion without input and output".into());
            }
            let input = first[first.len() - 2].clone();
            let then: Vec<Vec<String>> = rest.into_iter().map(without_redirections).collect();
            // The chain's product: the last `--output` of a chained command, else objcopy's.
            let output = then
                .iter()
                .rev()
                .find_map(|c| flag_value(c, "--output"))
                .unwrap_or_else(|| first[first.len() - 1].clone());
            Ok(Step::Convert {
                argv: first,
                input,
                output,
                then,
            })
        }
        other => Err(format!("unknown step kind {other:?}")),
    }
}

fn is_var_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The word after `flag` (`-o x`), or the rest of `flag=x`.
pub(crate) fn flag_value(words: &[String], flag: &str) -> Option<String> {
    let mut it = words.iter();
    while let Some(w) = it.next() {
        if w == flag {
            return it.next().cloned();
        }
        if let Some(v) = w.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            return Some(v.to_string());
        }
    }
    None
}

/// The variables QMK's CLI passes to make for `keyboard:keymap`
/// (`qmk.build_targets._common_make_args`); `color` is its `COLOR`.
/// `QMK_BIN` is left to the caller (the plan cache wraps it).
pub fn make_args(
    keyboard: &str,
    keymap: &str,
    color: bool,
    env: &[(String, String)],
) -> Vec<String> {
    let safe = keyboard.replace('/', "_");
    let mut args = vec![
        "-r".to_string(),
        "-R".to_string(),
        "-f".to_string(),
        "builddefs/build_keyboard.mk".to_string(),
        format!("KEYBOARD={keyboard}"),
        format!("KEYMAP={keymap}"),
        format!("KEYBOARD_FILESAFE={safe}"),
        format!("TARGET={safe}_{keymap}"),
        "VERBOSE=false".to_string(),
        format!("COLOR={color}"),
        "SILENT=false".to_string(),
    ];
    args.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    args
}

/// What [`dry_run`] gives make to read after the target's makefiles, on
/// its standard input: a line naming every makefile read so far. (make's
/// `--debug=v` names them too, but also prints each target it considers:
/// 4× the output and ~15% of a plan's make time.)
const LIST_MAKEFILES: &str = "$(info keyfab-makefiles: $(MAKEFILE_LIST))\n";

/// The lines [`LIST_MAKEFILES`] printed: one per parse.
fn makefile_lists(output: &str) -> impl Iterator<Item = &str> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("keyfab-makefiles: "))
}

/// The makefiles make read (its last parse), without duplicates, from the
/// line [`LIST_MAKEFILES`] printed; its own file (make's copy of its
/// standard input, read last) left out.
pub fn makefiles_read(output: &str) -> Vec<String> {
    let mut words: Vec<&str> = makefile_lists(output)
        .last()
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    words.pop();
    let mut files: Vec<String> = Vec::new();
    for name in words {
        if !files.iter().any(|f| f == name) {
            files.push(name.to_string());
        }
    }
    files
}

/// A makefile that QMK's build includes and has a rule for:
/// `$(INTERMEDIATE_OUTPUT)/src/info_deps.d`, written by
/// `$(QMK_BIN) generate-make-dependencies`. make makes such a file after its
/// first parse and then parses every makefile again: half of a plan's make
/// time. The planner writes it first and names it to make with `-o` (do not
/// remake), so make reads it once. The recipes make prints are the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludedMakefile {
    /// Tree-relative, spelled as make names the target.
    pub path: String,
    /// The generator's arguments after `$(QMK_BIN)`.
    pub generator_args: Vec<String>,
}

/// The generated makefile `build_keyboard.mk` (its text) includes, for a
/// target with these make arguments; `None` when the makefile does not
/// include and make it the way QMK's does (make then makes it, as before).
pub fn included_makefile(build_keyboard_mk: &str, args: &[String]) -> Option<IncludedMakefile> {
    const FILE: &str = "$(INTERMEDIATE_OUTPUT)/src/info_deps.d";
    let has_line = |want: &str| build_keyboard_mk.lines().any(|l| l.trim() == want);
    let recipe = format!(
        "$(eval CMD=$(QMK_BIN) generate-make-dependencies -kb $(KEYBOARD) -km $(KEYMAP) -o {FILE})"
    );
    if !has_line(&format!("-include {FILE}"))
        || !has_line(&recipe)
        || !has_line("INTERMEDIATE_OUTPUT := $(BUILD_DIR)/obj_$(TARGET)")
    {
        return None;
    }
    let var = |name: &str| {
        args.iter()
            .rev()
            .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
    };
    let path = format!(
        "{}/obj_{}/src/info_deps.d",
        var("BUILD_DIR").unwrap_or(".build"),
        var("TARGET")?
    );
    let generator_args = [
        "generate-make-dependencies",
        "-kb",
        var("KEYBOARD")?,
        "-km",
        var("KEYMAP")?,
        "-o",
        &path,
    ]
    .map(String::from)
    .to_vec();
    Some(IncludedMakefile {
        path,
        generator_args,
    })
}

/// How many times make started over after making an included makefile
/// (each parse printed its makefiles once).
pub fn restarts(output: &str) -> usize {
    makefile_lists(output).count().saturating_sub(1)
}

/// The make program: `$MAKE`, else `make`.
pub fn make_program() -> String {
    std::env::var("MAKE").unwrap_or_else(|_| "make".into())
}

/// `path` as one word of a shell command line that make runs: quoted
/// when it has blanks or quotes, with make's `$` doubled so that make
/// passes it on as written.
pub fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    let quoted = shlex::try_quote(&text).map_or_else(|_| text.to_string(), |q| q.into_owned());
    quoted.replace('$', "$$")
}

/// The `SHELL=` value that makes make run `$(shell …)` calls with the
/// program at `path` (`keyfab-shell`), or `None` when make could not take
/// the path as one word: it splits a shell command line at blanks, and
/// would expand `$`.
pub fn make_shell(path: &Path) -> Option<String> {
    let path = path.to_str()?;
    (path.starts_with('/') && path.chars().all(keyfab_shell::plain)).then(|| path.to_string())
}

/// Runs make's dry run of a target in `tree`, with `env` added to its
/// environment (with `-B`, so every step is printed even when `.build/`
/// holds up-to-date files, and [`LIST_MAKEFILES`] read last, so the output
/// also names the makefiles read); returns its stdout, or make's stderr as
/// the error.
pub fn dry_run(
    tree: &Path,
    args: &[String],
    env: &[(String, String)],
    on_line: &mut dyn FnMut(&str),
) -> Result<String, String> {
    use std::io::{BufRead as _, Read as _, Write as _};
    let mut make = Command::new(make_program())
        .arg("-n")
        .arg("-B")
        .args(args)
        .args(["-f", "-"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(tree)
        .env_remove("MAKEFLAGS")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run make: {e}"))?;
    // make copies its standard input to a file when it starts (and reads
    // that again when it starts over); the text fits a pipe's buffer.
    let written = make
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(LIST_MAKEFILES.as_bytes()));
    // What make prints is read as it comes, a line at a time, for
    // `on_line`; its errors on a thread of their own, so neither pipe fills.
    let (Some(stdout), Some(mut stderr)) = (make.stdout.take(), make.stderr.take()) else {
        unreachable!("both pipes were asked for")
    };
    let (read, errors) = std::thread::scope(|s| {
        let errors = s.spawn(move || {
            let mut bytes = Vec::new();
            stderr.read_to_end(&mut bytes).map(|_| bytes)
        });
        let mut out = Vec::new();
        let mut reader = std::io::BufReader::new(stdout);
        let read = loop {
            let start = out.len();
            match reader.read_until(b'\n', &mut out) {
                Ok(0) => break Ok(out),
                Ok(_) => {
                    let text = String::from_utf8_lossy(&out[start..]);
                    let line = text.strip_suffix('\n').unwrap_or(&text);
                    on_line(line.strip_suffix('\r').unwrap_or(line));
                }
                Err(e) => break Err(e),
            }
        };
        (read, errors.join().unwrap_or_else(|_| Ok(Vec::new())))
    });
    let status = make.wait().map_err(|e| format!("cannot run make: {e}"))?;
    let stdout = read.map_err(|e| format!("cannot read make's output: {e}"))?;
    let stderr = errors.map_err(|e| format!("cannot read make's errors: {e}"))?;
    // make's own failure first: one that ends it early also closes the pipe.
    if !status.success() {
        return Err(failure_text(&String::from_utf8_lossy(&stderr)));
    }
    if let Some(Err(e)) = written {
        return Err(format!("cannot give make its makefile list: {e}"));
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// What make printed when it failed, each line once (in a tree that is no
/// git checkout every generator call make made repeats the same warnings,
/// burying make's own error below them).
fn failure_text(stderr: &str) -> String {
    let mut seen = std::collections::HashSet::new();
    stderr
        .trim()
        .lines()
        .filter(|l| seen.insert(*l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// make's dry run names the makefiles its last parse read (an included
    /// one it made, then read when it started over, counts once), and a
    /// failure is make's message.
    #[test]
    fn dry_run_names_the_makefiles_read() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write(
            "top.mk",
            "include sub/rules.mk\n-include gen.mk missing.mk\nall:\n\t@echo Compiling: $(X)\n",
        );
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        write("sub/rules.mk", "X := 1\n");
        let args = |extra: &[&str]| {
            ["-r", "-f", "top.mk"]
                .iter()
                .chain(extra)
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
        };
        let mut lines = Vec::new();
        let out = dry_run(dir.path(), &args(&[]), &[], &mut |l| {
            lines.push(l.to_string())
        })
        .unwrap();
        // Each line as make prints it, then all of them.
        assert_eq!(lines, out.lines().collect::<Vec<_>>());
        assert_eq!(makefiles_read(&out), ["top.mk", "sub/rules.mk"]);
        assert_eq!(restarts(&out), 0);
        assert!(out.contains("echo Compiling: 1"), "{out}");

        // make makes gen.mk (a dry run too), starts over and reads it.
        write("top.mk", "all:\n\t@echo Compiling: $(X)$(Y)\ninclude sub/rules.mk\n-include gen.mk\ngen.mk:\n\techo 'Y := 2' > gen.mk\n");
        let out = dry_run(dir.path(), &args(&[]), &[], &mut |_| {}).unwrap();
        assert_eq!(makefiles_read(&out), ["top.mk", "sub/rules.mk", "gen.mk"]);
        assert_eq!(restarts(&out), 1);
        assert!(out.contains("echo Compiling: 12"), "{out}");

        let err = dry_run(dir.path(), &args(&["no-such-goal"]), &[], &mut |_| {}).unwrap_err();
        assert!(
            err.contains("No rule to make target 'no-such-goal'"),
            "{err}"
        );
    }

    const OK_TAIL: &str = " 2>&1) ; if [ $? -gt 0 ]; then exit 1; fi;";

    fn sample() -> String {
        [
            "false || printf \"Generating: .build/obj_kb_km/src/info_config.h\" | awk '{ printf \"%-99s\", $0; }'".to_string(),
            format!("LOG=$(keyfab qmk generate-config-h --quiet --keyboard kb --output .build/obj_kb_km/src/info_config.h{OK_TAIL}"),
            "mkdir -p .build/obj_kb_km/quantum".to_string(),
            "false || printf \"Compiling: quantum/led.c\" | awk '{ printf \"%-99s\", $0; }'".to_string(),
            format!("LOG=$(cc -c -DQMK_KEYBOARD=\\\"kb\\\" -DX=\"(A | B)\" -MMD -MP -MF .build/obj_kb_km/quantum/led.td quantum/led.c -o .build/obj_kb_km/quantum/led.o && mv -f .build/obj_kb_km/quantum/led.td .build/obj_kb_km/quantum/led.d{OK_TAIL}"),
            "false || printf \"Linking: .build/kb_km.elf\" | awk '{ printf \"%-99s\", $0; }'".to_string(),
            format!("LOG=$(MAKE=make  cc -Os .build/obj_kb_km/quantum/led.o --output .build/kb_km.elf -lm{OK_TAIL}"),
            "false || printf \"Creating load file for flashing: .build/kb_km.hex\" | awk '{ printf \"%-99s\", $0; }'".to_string(),
            format!("LOG=$(objcopy -O ihex -R .eeprom .build/kb_km.elf .build/kb_km.hex{OK_TAIL}"),
            "false || printf \"Archiving: .build/obj_kb_km/i2c.o\" | awk '{ printf \"%-99s\", $0; }'".to_string(),
            format!("LOG=$(avr-ar rcs .build/obj_kb_km/i2c.a .build/obj_kb_km/i2c.o{OK_TAIL}"),
            "cp .build/kb_km.hex kb_km.hex && false || printf \" [OK]\\n\"".to_string(),
            "if [ 28672 -gt 0 ] && [ 0 -gt 0 ]; then \\".to_string(),
            "\tif [ 0 -gt 28672 ]; then \\".to_string(),
            "\t    if [ 28672 -lt 1024 ]; then \\".to_string(),
        ]
        .join("\n")
    }

    /// AVR's `bin` recipe for the LUFA mass-storage bootloader: an `eval`
    /// (an empty line), then a bare objcopy from the .hex and the copy.
    #[test]
    fn a_bare_objcopy_is_a_conversion() {
        let text = format!(
            "{}\n\navr-objcopy -Iihex -Obinary .build/kb_km.hex .build/kb_km.bin --pad-to 26624\ncp .build/kb_km.bin kb_km.bin;\ncp .build/kb_km.bin kb_km.bin && false || printf \" [OK]\\n\"",
            sample()
        );
        let plan = parse_dry_run(&text).unwrap();
        let convert = Step::Convert {
            argv: split(
                "avr-objcopy -Iihex -Obinary .build/kb_km.hex .build/kb_km.bin --pad-to 26624",
            ),
            input: ".build/kb_km.hex".into(),
            output: ".build/kb_km.bin".into(),
            then: Vec::new(),
        };
        let copy = Step::Copy {
            from: ".build/kb_km.bin".into(),
            to: "kb_km.bin".into(),
        };
        let tail = &plan.steps[plan.steps.len() - 2..];
        assert_eq!(tail, [convert, copy]);
    }

    #[test]
    fn a_copy_of_a_file_no_step_makes_is_an_error() {
        let text = format!("{}\ncp .build/kb_km.bin kb_km.bin;", sample());
        let err = parse_dry_run(&text).unwrap_err();
        assert_eq!(
            err,
            PlanError::Unmade {
                file: ".build/kb_km.bin".into(),
                copy: "kb_km.bin".into()
            }
        );
        assert!(err.to_string().contains(".build/kb_km.bin"), "{err}");
    }

    /// A link input no compile makes (make found no source for it): an
    /// error, so the plan is not kept and is made again once it is there.
    #[test]
    fn a_linked_object_no_step_makes_is_an_error() {
        let text = sample().replace(
            "--output .build/kb_km.elf",
            ".build/obj_kb_km/lib/vusb/usbdrv.o --output .build/kb_km.elf",
        );
        let err = parse_dry_run(&text).unwrap_err();
        assert_eq!(
            err,
            PlanError::Unlinked {
                object: ".build/obj_kb_km/lib/vusb/usbdrv.o".into(),
                link: ".build/kb_km.elf".into()
            }
        );
        // Archives made by a step, and inputs outside `.build`, are fine.
        let text = sample().replace(
            "--output .build/kb_km.elf",
            ".build/obj_kb_km/i2c.a lib/prebuilt.a --output .build/kb_km.elf",
        );
        assert!(parse_dry_run(&text).is_ok());
    }

    #[test]
    fn objcopy_files_skip_options_and_their_values() {
        let files = |cmd: &str| objcopy_files(&split(cmd));
        let pair = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(
            files("avr-objcopy -O ihex -R .eeprom -R .fuse x.elf x.hex"),
            pair("x.elf", "x.hex")
        );
        assert_eq!(
            files("objcopy -Iihex -Obinary x.hex x.bin --pad-to 26624"),
            pair("x.hex", "x.bin")
        );
        assert_eq!(files("objcopy -O binary x.elf"), None);
    }

    const MAKES_ITS_INCLUDE: &str = "INTERMEDIATE_OUTPUT := $(BUILD_DIR)/obj_$(TARGET)
$(INTERMEDIATE_OUTPUT)/src/info_deps.d:
\t$(eval CMD=$(QMK_BIN) generate-make-dependencies -kb $(KEYBOARD) -km $(KEYMAP) -o $(INTERMEDIATE_OUTPUT)/src/info_deps.d)
\t@$(BUILD_CMD)
-include $(INTERMEDIATE_OUTPUT)/src/info_deps.d
";

    #[test]
    fn the_included_makefile_is_named_as_make_names_it() {
        let args = make_args("a/b", "km", false, &[]);
        let made = included_makefile(MAKES_ITS_INCLUDE, &args).unwrap();
        assert_eq!(made.path, ".build/obj_a_b_km/src/info_deps.d");
        assert_eq!(
            made.generator_args.join(" "),
            "generate-make-dependencies -kb a/b -km km -o .build/obj_a_b_km/src/info_deps.d"
        );
        // make's command line wins over the makefile's `:=`, the last word wins
        let env = [("BUILD_DIR".to_string(), "out".to_string())];
        let args = make_args("a/b", "km", false, &env);
        let made = included_makefile(MAKES_ITS_INCLUDE, &args).unwrap();
        assert_eq!(made.path, "out/obj_a_b_km/src/info_deps.d");
    }

    #[test]
    fn a_makefile_that_makes_its_include_otherwise_is_left_to_make() {
        let args = make_args("a/b", "km", false, &[]);
        for (from, to) in [
            ("-include $(INTERMEDIATE_OUTPUT)/src/info_deps.d", ""),
            ("-km $(KEYMAP) -o", "-km $(KEYMAP) -x -o"),
            ("obj_$(TARGET)", "$(TARGET)"),
        ] {
            let text = MAKES_ITS_INCLUDE.replace(from, to);
            assert_eq!(included_makefile(&text, &args), None, "{from}");
        }
    }

    #[test]
    fn a_failure_names_each_line_once() {
        let stderr = "w: no git\nw: fatal\nw: no git\nw: fatal\nx.mk:104: y.mk: No such file\nmake: *** Stop.\n";
        assert_eq!(
            failure_text(stderr),
            "w: no git\nw: fatal\nx.mk:104: y.mk: No such file\nmake: *** Stop."
        );
    }

    /// The stored form gives the same plan back, is smaller, and a damaged
    /// one gives none.
    #[test]
    fn a_stored_plan_gives_the_plan_back() {
        let mut plan = parse_dry_run(&sample()).unwrap();
        // Many compiles with the same flags, as real plans have.
        let compile = plan.compiles().next().unwrap().clone();
        for i in 0..20 {
            let Step::Compile { mut argv, .. } = compile.clone() else {
                unreachable!()
            };
            argv.push(format!("-DN={i}"));
            plan.steps.push(Step::Compile {
                source: format!("s{i}.c"),
                object: format!("s{i}.o"),
                argv,
                depfile_tmp: None,
                depfile: None,
            });
        }
        let stored = StoredPlan::of(&plan);
        let json = serde_json::to_vec(&stored).unwrap();
        assert!(json.len() < serde_json::to_vec(&plan).unwrap().len());
        let back: StoredPlan = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.into_plan(), Some(plan.clone()));
        let mut damaged = StoredPlan::of(&plan);
        damaged.argvs[0][0] = damaged.words.len() as u32;
        assert_eq!(damaged.into_plan(), None);
        let mut short = StoredPlan::of(&plan);
        short.argvs.pop();
        assert_eq!(short.into_plan(), None);
    }

    /// The margin line as make prints it: with no firmware yet, with one
    /// of an earlier build, with one over the limit.
    #[test]
    fn the_size_margin_whatever_make_found_free() {
        for free in ["28672", "502", "-31"] {
            let line = format!("\t    if [ {free} -lt 1024 ]; then \\");
            assert_eq!(size_margin(&line), Some(1024), "{line}");
        }
        assert_eq!(size_margin("\tif [ 0 -gt 28672 ]; then \\"), None);
        assert_eq!(size_margin("if [ x -lt 1024 ]; then \\"), None);
    }

    /// QMK's stamp recipes as make prints them, before the compiles: each
    /// a step, in make's order; the `touch` before the version's is not.
    #[test]
    fn stamp_recipes_are_steps() {
        let text = format!(
            "echo '-Os -DX=\\\"kb\\\"' | cmp -s - .build/obj_kb_km/cflags.txt || echo '-Os -DX=\\\"kb\\\"' > .build/obj_kb_km/cflags.txt\n\
             test -f .build/obj_kb_km/compiler.txt || touch .build/obj_kb_km/compiler.txt\n\
             avr-gcc --version | cmp -s - .build/obj_kb_km/compiler.txt ||  avr-gcc --version > .build/obj_kb_km/compiler.txt\n{}",
            sample()
        );
        let plan = parse_dry_run(&text).unwrap();
        assert_eq!(
            plan.steps[..2],
            [
                Step::Stamp {
                    file: ".build/obj_kb_km/cflags.txt".into(),
                    holds: Stamped::Text("-Os -DX=\\\"kb\\\"\n".into()),
                },
                Step::Stamp {
                    file: ".build/obj_kb_km/compiler.txt".into(),
                    holds: Stamped::VersionOf("avr-gcc".into()),
                },
            ]
        );
        assert_eq!(plan.steps[2..], parse_dry_run(&sample()).unwrap().steps[..]);
    }

    #[test]
    fn parses_every_step_kind() {
        let plan = parse_dry_run(&sample()).unwrap();
        assert_eq!(plan.steps.len(), 6);
        assert_eq!(plan.max_size, Some(28672));
        assert_eq!(plan.size_margin, Some(1024));
        assert_eq!(
            plan.steps[0],
            Step::Generate {
                argv: "keyfab qmk generate-config-h --quiet --keyboard kb --output .build/obj_kb_km/src/info_config.h"
                    .split(' ')
                    .map(String::from)
                    .collect(),
                output: ".build/obj_kb_km/src/info_config.h".into(),
            }
        );
        let Step::Compile {
            source,
            object,
            argv,
            depfile_tmp,
            depfile,
        } = &plan.steps[1]
        else {
            panic!("{:?}", plan.steps[1])
        };
        assert_eq!(source, "quantum/led.c");
        assert_eq!(object, ".build/obj_kb_km/quantum/led.o");
        // shell quoting is undone: the compiler sees the same argv as under sh
        assert!(
            argv.contains(&"-DQMK_KEYBOARD=\"kb\"".to_string()),
            "{argv:?}"
        );
        assert!(argv.contains(&"-DX=(A | B)".to_string()), "{argv:?}");
        assert_eq!(argv.last().unwrap(), ".build/obj_kb_km/quantum/led.o");
        assert_eq!(
            depfile_tmp.as_deref(),
            Some(".build/obj_kb_km/quantum/led.td")
        );
        assert_eq!(depfile.as_deref(), Some(".build/obj_kb_km/quantum/led.d"));
        let Step::Link { argv, env, output } = &plan.steps[2] else {
            panic!()
        };
        assert_eq!(env, &[("MAKE".to_string(), "make".to_string())]);
        assert_eq!(argv[0], "cc");
        assert_eq!(output, ".build/kb_km.elf");
        assert_eq!(
            plan.steps[3],
            Step::Convert {
                argv: "objcopy -O ihex -R .eeprom .build/kb_km.elf .build/kb_km.hex"
                    .split(' ')
                    .map(String::from)
                    .collect(),
                input: ".build/kb_km.elf".into(),
                output: ".build/kb_km.hex".into(),
                then: vec![],
            }
        );
        assert_eq!(
            plan.steps[4],
            Step::Archive {
                argv: "avr-ar rcs .build/obj_kb_km/i2c.a .build/obj_kb_km/i2c.o"
                    .split(' ')
                    .map(String::from)
                    .collect(),
                output: ".build/obj_kb_km/i2c.a".into(),
            }
        );
        assert_eq!(
            plan.steps[5],
            Step::Copy {
                from: ".build/kb_km.hex".into(),
                to: "kb_km.hex".into()
            }
        );
    }

    /// An ARM-style tail: `.bin` by objcopy with `|| exit 0`, a DFU suffix
    /// added in place inside a shell `if`, the same copy printed thrice, and a
    /// `.uf2` made through a temporary file.
    fn arm_sample(suffix_args: &str) -> String {
        [
            "printf \"Compiling: main.c\" | awk '{ print }'".to_string(),
            format!("LOG=$(xcc -c main.c -o .build/o/main.o{OK_TAIL}"),
            "printf \"Creating binary load file for flashing: .build/fw.bin\" | awk '{ print }'".to_string(),
            format!("LOG=$(xobjcopy -O binary .build/fw.elf .build/fw.bin || exit 0{OK_TAIL}"),
            format!("if [ ! -z \"{suffix_args}\" ]; then \\"),
            format!("\tsuffixer {suffix_args} -a .build/fw.bin 1>/dev/null ;\\"),
            "fi".to_string(),
            "#false || printf \"Executing: 'suffixer':\\n\" ;\\".to_string(),
            "cp .build/fw.bin fw.bin;".to_string(),
            "printf \"Creating UF2 file for deployment: .build/fw.uf2\" | awk '{ print }'".to_string(),
            format!("LOG=$(xobjcopy -O ihex .build/fw.elf .build/fw.tmp && ./tools/touf2 .build/fw.tmp --output .build/fw.uf2 --family X >/dev/null 2>&1{OK_TAIL}"),
            "cp .build/fw.bin fw.bin;".to_string(),
            "cp .build/fw.bin fw.bin && false || printf \" [OK]\\n\"".to_string(),
        ]
        .join("\n")
    }

    fn split(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn arm_tail_with_dfu_suffix_and_uf2() {
        let plan = parse_dry_run(&arm_sample("-v 1234 -p 5678")).unwrap();
        assert_eq!(plan.steps.len(), 4, "{:#?}", plan.steps);
        assert_eq!(
            plan.steps[1],
            Step::Convert {
                argv: split("xobjcopy -O binary .build/fw.elf .build/fw.bin"),
                input: ".build/fw.elf".into(),
                output: ".build/fw.bin".into(),
                then: vec![split("suffixer -v 1234 -p 5678 -a .build/fw.bin")],
            }
        );
        assert_eq!(
            plan.steps[2],
            Step::Copy {
                from: ".build/fw.bin".into(),
                to: "fw.bin".into()
            }
        );
        assert_eq!(
            plan.steps[3],
            Step::Convert {
                argv: split("xobjcopy -O ihex .build/fw.elf .build/fw.tmp"),
                input: ".build/fw.elf".into(),
                output: ".build/fw.uf2".into(),
                then: vec![split(
                    "./tools/touf2 .build/fw.tmp --output .build/fw.uf2 --family X"
                )],
            }
        );
    }

    #[test]
    fn empty_suffix_args_run_nothing() {
        let plan = parse_dry_run(&arm_sample("")).unwrap();
        let Step::Convert { then, .. } = &plan.steps[1] else {
            panic!("{:?}", plan.steps[1])
        };
        assert!(then.is_empty(), "{then:?}");
    }

    #[test]
    fn in_place_command_needs_an_earlier_output() {
        let text = format!(
            "printf \"Compiling: a.c\" | awk 'x'\nLOG=$(xcc -c a.c -o a.o{OK_TAIL}\nif [ ! -z \"-x\" ]; then \\\n\tsuffixer -x -a other.bin ;\\\nfi\n"
        );
        let err = parse_dry_run(&text).unwrap_err();
        assert!(err.to_string().contains("line 4"), "{err}");
    }

    #[test]
    fn or_other_than_exit_0_is_an_error() {
        let text =
            format!("printf \"Creating x: b\" | awk 'x'\nLOG=$(xobjcopy a b || rm b{OK_TAIL}\n");
        let err = parse_dry_run(&text).unwrap_err();
        assert!(err.to_string().contains("||"), "{err}");
    }

    #[test]
    fn redirections_are_dropped() {
        assert_eq!(
            without_redirections(split("t a >/dev/null 2>&1 1>/dev/null > f b")),
            split("t a b")
        );
    }

    #[test]
    fn a_plan_without_compiles_is_an_error() {
        assert_eq!(parse_dry_run("mkdir -p x\n"), Err(PlanError::Empty));
    }

    #[test]
    fn unknown_step_kind_names_the_line() {
        let text = format!("printf \"Frobbing: x\" | awk 'x'\nLOG=$(frob x{OK_TAIL}\n");
        let err = parse_dry_run(&text).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(err.to_string().contains("Frobbing"), "{err}");
    }

    #[test]
    fn make_args_match_qmk_cli() {
        let args = make_args(
            "planck/rev5",
            "default",
            true,
            &[("SKIP_GIT".into(), "yes".into())],
        );
        assert!(args.contains(&"KEYBOARD_FILESAFE=planck_rev5".to_string()));
        assert!(args.contains(&"COLOR=true".to_string()));
        assert!(args.contains(&"TARGET=planck_rev5_default".to_string()));
        assert_eq!(args.last().unwrap(), "SKIP_GIT=yes");
    }

    #[test]
    fn make_shell_paths_make_takes_as_one_word() {
        assert_eq!(
            make_shell(Path::new("/opt/kf-1.0/bin/keyfab-shell")).as_deref(),
            Some("/opt/kf-1.0/bin/keyfab-shell")
        );
        for odd in [
            "/my tools/keyfab-shell",
            "/a$b/keyfab-shell",
            "rel/keyfab-shell",
        ] {
            assert_eq!(make_shell(Path::new(odd)), None, "{odd}");
        }
    }

    #[test]
    fn shell_words_survive_make_and_the_shell() {
        // Plain paths are left as they are (plan keys of earlier runs hold).
        let plain = "/home/u/.cache/keyfab/tmp/.tmpAb12";
        assert_eq!(shell_word(Path::new(plain)), plain);
        for odd in ["/my tools/keyfab", "/a$b/c", "/it's/\"x\"", "/t\tab"] {
            let word = shell_word(Path::new(odd));
            // What make passes on, split as the shell splits it.
            let words = shlex::split(&word.replace("$$", "$")).unwrap();
            assert_eq!(words, [odd], "{word}");
        }
    }
}

#[cfg(test)]
mod real_plan {
    /// Parses a real `make -n` log when `KEYFAB_PLAN_LOG` names one.
    #[test]
    fn real_dry_run_parses() {
        let Some(path) = std::env::var_os("KEYFAB_PLAN_LOG") else {
            return;
        };
        let text = std::fs::read_to_string(path).unwrap();
        let plan = super::parse_dry_run(&text).unwrap();
        let n = plan.compiles().count();
        eprintln!(
            "{n} compiles, {} steps, max size {:?}",
            plan.steps.len(),
            plan.max_size
        );
        assert!(n > 10);
    }
}

//! QMK's `cc-option` probes, made cheap.
//!
//! `builddefs/support.mk` defines `cc-option` as a `$(shell …)` that runs the
//! compiler; the flags that use it are recursively expanded, so one plan runs
//! it ~146 times. We pass make a replacement `cc-option` on its command line
//! (command-line variables override the makefile's) that memoizes each
//! distinct probe in a make variable, and asks keyfab — which answers from
//! the cache, keyed on the compiler's identity — instead of the compiler.
//! What the probes answered is learnt by the run ([`Answers`]) and given to
//! make's later plans on its command line, so those ask no process at all.

use keyfab_cas::{CommandKey, Digest, LocalCas, NewAction};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::CommandExt as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The make command-line definitions that install the memoizing `cc-option`.
/// `probe` is the command that answers one probe: it gets the compiler, the
/// option, the fallback and the extra test flags as four arguments.
pub fn cc_option_overrides(probe: &str) -> Vec<String> {
    let key = "kf_cco_$(subst :,.,$(subst =,.,$(subst $(kf_space),_,$(CC)|$(1)|$(2)|$(3))))";
    vec![
        "kf_empty=".to_string(),
        "kf_space=$(kf_empty) $(kf_empty)".to_string(),
        format!(
            "cc-option=$(if $(filter undefined,$(origin {key})),$(eval {key} := $(shell {probe} '$(CC)' '$(1)' '$(2)' '$(3)')))$({key})"
        ),
    ]
}

/// The shell test QMK's `cc-option` runs: does `cc` accept `option` (with
/// `extra`)? Exactly the command of support.mk, so the answer is the same.
pub fn probe_script(cc: &str, option: &str, extra: &str) -> String {
    format!(
        "echo 'int main(){{return 0;}}' | {cc} {option} {extra} -Wl,--unresolved-symbols=ignore-all -o /dev/null -x c /dev/null >/dev/null 2>&1"
    )
}

/// Whether `cc` accepts `option` (with `extra`): the cache's answer for
/// this compiler's whole identity (its assembler and linker included:
/// probes link, and some ask the linker, `-Wl,--no-warn-rwx-segments`),
/// else the shell test of [`probe_script`] (run in `dir`, make's folder),
/// whose answer is then stored.
pub fn ask(
    cas: &LocalCas,
    dir: &std::path::Path,
    cc: &str,
    option: &str,
    extra: &str,
) -> std::io::Result<bool> {
    match test_or_cache(cas, dir, cc, option, extra, true)? {
        Outcome::Known(supported) => Ok(supported),
        Outcome::Tested(tested) => {
            tested.put(cas)?;
            cas.flush().map_err(std::io::Error::other)?;
            Ok(tested.supported)
        }
    }
}

/// How a question was answered.
enum Outcome {
    /// From the cache, or tested and stored.
    Known(bool),
    /// Tested while the compiler was not identified yet: to keep.
    Tested(Tested),
}

/// A test's answer, to store under the compiler's identity once it is
/// found ([`Tested::put`], [`Probes::keep_tested`]).
#[derive(Debug, Clone)]
struct Tested {
    cc: String,
    option: String,
    extra: String,
    supported: bool,
}

impl Tested {
    /// Puts the answer in the cache under the compiler's identity (found
    /// now, when it has not been yet); the caller flushes.
    fn put(&self, cas: &LocalCas) -> std::io::Result<()> {
        let identity = crate::db::tool_identity(program_of(&self.cc));
        let key = answer_key(&self.cc, &self.option, &self.extra, identity);
        put_answer(cas, &key, self.supported)
    }
}

/// [`ask`]. A compiler this process identified already is asked of the
/// cache first. Else the test starts, and with `identify` runs while the
/// compiler is identified (a cached answer then stops it); without, the
/// test answers on its own and its result is returned to keep: a cold
/// identity (~40 ms: the compiler's `--version`, its helpers' paths, ~40 MB
/// of their binaries hashed) is longer than most tests, and make's serial
/// parse waits for the answer.
fn test_or_cache(
    cas: &LocalCas,
    dir: &std::path::Path,
    cc: &str,
    option: &str,
    extra: &str,
    identify: bool,
) -> std::io::Result<Outcome> {
    let program = program_of(cc);
    let test = || {
        // Its own process group, so the whole pipeline can be stopped.
        std::process::Command::new("sh")
            .arg("-c")
            .arg(probe_script(cc, option, extra))
            .current_dir(dir)
            .process_group(0)
            .spawn()
    };
    if let Some(identity) = crate::db::known_tool_identity(program) {
        let key = answer_key(cc, option, extra, Some(identity));
        if let Some(answer) = cached_answer(cas, &key) {
            return Ok(Outcome::Known(answer));
        }
        let supported = test()?.wait()?.success();
        store_answer(cas, &key, supported)?;
        return Ok(Outcome::Known(supported));
    }
    let mut test = test()?;
    if !identify {
        return Ok(Outcome::Tested(Tested {
            cc: cc.into(),
            option: option.into(),
            extra: extra.into(),
            supported: test.wait()?.success(),
        }));
    }
    let key = answer_key(cc, option, extra, crate::db::tool_identity(program));
    if let Some(answer) = cached_answer(cas, &key) {
        // SAFETY: kill(2) of the group this function made, not yet reaped.
        unsafe { libc::kill(-(test.id() as i32), libc::SIGKILL) };
        let _ = test.wait();
        return Ok(Outcome::Known(answer));
    }
    let supported = test.wait()?.success();
    store_answer(cas, &key, supported)?;
    Ok(Outcome::Known(supported))
}

/// The program a probe's `cc` runs: its last word (`ccache avr-gcc`).
fn program_of(cc: &str) -> &str {
    cc.split_whitespace().last().unwrap_or_default()
}

/// Puts an answer in the cache, to be flushed by the caller.
fn put_answer(cas: &LocalCas, key: &keyfab_cas::ActionKey, supported: bool) -> std::io::Result<()> {
    let mut action = NewAction::success(vec![]);
    action.stdout = if supported { b"yes" } else { b"no" };
    cas.put_action(key, &action)
        .map_err(std::io::Error::other)?;
    Ok(())
}

/// Puts an answer in the cache and flushes it (other processes see it).
fn store_answer(
    cas: &LocalCas,
    key: &keyfab_cas::ActionKey,
    supported: bool,
) -> std::io::Result<()> {
    put_answer(cas, key, supported)?;
    cas.flush().map_err(std::io::Error::other)
}

/// Where the cache keeps whether `cc` takes `option` with `extra`, asked
/// of the compiler with `identity` (`None`: it could not be identified).
fn answer_key(
    cc: &str,
    option: &str,
    extra: &str,
    identity: Option<Digest>,
) -> keyfab_cas::ActionKey {
    let program = program_of(cc);
    CommandKey {
        kind: "cc-option".into(),
        tool: identity.unwrap_or_else(|| Digest::of(program.as_bytes())),
        argv: vec![cc.into(), option.into(), extra.into()],
        cwd: "/".into(),
        env: Default::default(),
        inputs: vec![],
    }
    .key()
}

/// The cache's answer under `key`, if it has one.
fn cached_answer(cas: &LocalCas, key: &keyfab_cas::ActionKey) -> Option<bool> {
    let record = cas.get_action(key).ok()??;
    Some(cas.get_blob(&record.stdout).ok()?? == b"yes")
}

/// A `cc-option` call's arguments: `$(call cc-option,OPTION,FALLBACK,EXTRA)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Question {
    pub option: String,
    pub fallback: String,
    pub extra: String,
}

/// The `cc-option` calls written in a makefile whose arguments are plain
/// text (QMK's `$(,)` read as a comma), in order, as make passes them
/// (blanks kept). Calls in comments, or with any other `$`, are left out:
/// only make knows what they ask.
pub fn literal_calls(makefile: &str) -> Vec<Question> {
    const CALL: &str = "$(call cc-option,";
    let text = uncommented(makefile).collect::<Vec<_>>().join("\n");
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find(CALL) {
        rest = &rest[at + CALL.len()..];
        // The arguments end at the `)` that closes the call.
        let mut depth = 0usize;
        let Some(end) = rest.char_indices().find_map(|(i, c)| match c {
            '(' => {
                depth += 1;
                None
            }
            ')' if depth == 0 => Some(i),
            ')' => {
                depth -= 1;
                None
            }
            _ => None,
        }) else {
            break;
        };
        let args = rest[..end].replace("$(,)", "\u{1}");
        rest = &rest[end..];
        if args.contains(['$', '\n']) {
            continue;
        }
        let mut words = args.split(',').map(|w| w.replace('\u{1}', ","));
        let option = words.next().unwrap_or_default();
        let fallback = words.next().unwrap_or_default();
        let extra = words.next().unwrap_or_default();
        if words.next().is_none() && !option.is_empty() {
            found.push(Question {
                option,
                fallback,
                extra,
            });
        }
    }
    found
}

/// The literal `cc-option` calls of a tree's shared makefiles (`*.mk`
/// under `builddefs/` and `platforms/`, where QMK keeps them), in path
/// order, each once. With the target's `platform` (QMK's `PLATFORM_KEY`),
/// only its own folder of `platforms/` is read, not another platform's.
pub fn tree_questions(tree: &std::path::Path, platform: Option<&str>) -> Vec<Question> {
    fn makefiles(dir: &std::path::Path, deep: bool, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() && deep => makefiles(&path, deep, out),
                Ok(t) if t.is_file() && path.extension().is_some_and(|x| x == "mk") => {
                    out.push(path)
                }
                _ => {}
            }
        }
    }
    let mut files = Vec::new();
    makefiles(&tree.join("builddefs"), true, &mut files);
    match platform.and_then(|p| platform_folder(tree, p)) {
        Some(folder) => {
            makefiles(&tree.join("platforms"), false, &mut files);
            makefiles(&folder, true, &mut files);
        }
        None => makefiles(&tree.join("platforms"), true, &mut files),
    }
    files.sort();
    let mut seen = std::collections::HashSet::new();
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| literal_calls(&text))
        .filter(|q| seen.insert(q.clone()))
        .collect()
}

/// The compiler a platform's probes are expected to be asked of, before
/// make says: the `CC` that `platforms/PLATFORM/platform.mk` (the makefile
/// QMK's build includes for the target's `PLATFORM_KEY`) assigns first
/// outside any conditional. A variable it names that the file does not
/// assign is taken as empty (QMK's `CC_PREFIX`, set only for ccache); one
/// the file assigns, or any function, leaves it unknown. A guess: when
/// make asks of another compiler, its probes are asked as they come.
pub fn platform_compiler(tree: &std::path::Path, platform: &str) -> Option<String> {
    let folder = platform_folder(tree, platform)?;
    compiler_assigned(&std::fs::read_to_string(folder.join("platform.mk")).ok()?)
}

/// A platform's folder under `platforms/`; `None` when its name (from a
/// keyboard's info) is no plain folder name.
fn platform_folder(tree: &std::path::Path, platform: &str) -> Option<std::path::PathBuf> {
    let plain = !platform.is_empty() && !platform.contains(['/', '.']);
    plain.then(|| tree.join("platforms").join(platform))
}

/// A makefile's lines without their comments.
fn uncommented(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(|l| l.find('#').map_or(l, |i| &l[..i]))
}

/// The first unconditional `CC` of a makefile's text (see [`platform_compiler`]).
fn compiler_assigned(text: &str) -> Option<String> {
    // make's logical lines: a backslash-newline is a blank.
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = uncommented(&joined).collect();
    let assignment = |line: &str| -> Option<(String, String)> {
        let line = line
            .trim_start()
            .strip_prefix("override ")
            .unwrap_or(line.trim_start());
        let at = line.find('=')?;
        let (name, value) = (&line[..at], &line[at + 1..]);
        let name = name.trim_end_matches([':', '?', '+', '!']).trim();
        (!name.is_empty() && !name.contains(|c: char| c.is_whitespace() || c == '$'))
            .then(|| (name.to_string(), value.trim_start().to_string()))
    };
    let assigned: std::collections::HashSet<String> = lines
        .iter()
        .filter_map(|l| assignment(l))
        .map(|(n, _)| n)
        .collect();
    let mut depth = 0usize;
    for line in &lines {
        let word = line.split_whitespace().next().unwrap_or_default();
        match word {
            "ifeq" | "ifneq" | "ifdef" | "ifndef" => depth += 1,
            "endif" => depth = depth.saturating_sub(1),
            _ if line.starts_with('\t') => {}
            _ => {
                if let Some((name, value)) = assignment(line) {
                    if name == "CC" && depth == 0 {
                        return expand_outside(&value, &assigned);
                    }
                }
            }
        }
    }
    None
}

/// `value` with each `$(NAME)` / `${NAME}` that the makefile does not
/// assign (in `assigned`) expanded to nothing; `None` for any other `$`.
fn expand_outside(value: &str, assigned: &std::collections::HashSet<String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let close = match after.chars().next()? {
            '(' => ')',
            '{' => '}',
            _ => return None,
        };
        let end = after.find(close)?;
        let name = &after[1..end];
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || assigned.contains(name)
        {
            return None;
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    (!out.trim().is_empty()).then_some(out)
}

/// Whether two `cc`s run the same compiler: the same words, when they are
/// plain (what make's whitespace around `$(CC_PREFIX)` changes nothing of).
pub fn same_compiler(a: &str, b: &str) -> bool {
    cell_name(a) == cell_name(b)
}

/// The name a question's `cc` is kept under: its words joined by one
/// blank when they hold nothing a shell reads otherwise, else itself.
fn cell_name(cc: &str) -> String {
    if cc
        .chars()
        .all(|c| c == ' ' || c == '\t' || keyfab_shell::plain(c))
    {
        cc.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        cc.to_string()
    }
}

/// `questions` in the order make is expected to ask them after `first`:
/// makefiles are read top to bottom, so the calls after it in its file
/// come next; then the others from the start (`first` itself left out).
pub fn after(first: &Question, mut questions: Vec<Question>) -> Vec<Question> {
    if let Some(at) = questions.iter().position(|q| q == first) {
        questions.rotate_left(at);
        questions.remove(0);
    }
    questions
}

/// One plan's probes in this process: each question asked once, by
/// whoever wants it first. make asks through the plan's host; a prefetch
/// asks the tree's literal calls ([`tree_questions`]) ahead of make, so
/// their tests run on the cores make's serial parse leaves idle, and make
/// finds the answer ready instead of waiting for a compiler run (a link
/// with LTO for QMK's `-mrelax` probe, ~50 ms).
///
/// Until the compiler is identified (by [`Probes::identify`], alongside),
/// a question is answered by its test alone: what make waits for is then
/// the test (~5 ms), not the identity (~40 ms cold). Those answers are
/// stored in the cache by [`Probes::keep_tested`].
pub struct Probes<'a> {
    cas: &'a LocalCas,
    dir: &'a std::path::Path,
    asked: Mutex<HashMap<(String, Question), Arc<Asked>>>,
    tested: Mutex<Vec<Tested>>,
}

/// A question's answer once someone asked it (`None`: the test could not run).
type Asked = OnceLock<Option<bool>>;

impl<'a> Probes<'a> {
    /// Probes run in `dir` (make's folder) and answered through `cas`.
    pub fn new(cas: &'a LocalCas, dir: &'a std::path::Path) -> Self {
        Probes {
            cas,
            dir,
            asked: Mutex::new(HashMap::new()),
            tested: Mutex::new(Vec::new()),
        }
    }

    /// The question's cell, and whether this call made it.
    fn cell(&self, cc: &str, q: &Question) -> (Arc<Asked>, bool) {
        let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        match asked.entry((cell_name(cc), q.clone())) {
            std::collections::hash_map::Entry::Occupied(e) => (e.get().clone(), false),
            std::collections::hash_map::Entry::Vacant(e) => {
                (e.insert(Default::default()).clone(), true)
            }
        }
    }

    /// The cache's answer, or the test's; one to keep is kept for later.
    fn ask(&self, cc: &str, q: &Question) -> Option<bool> {
        match test_or_cache(self.cas, self.dir, cc, &q.option, &q.extra, false).ok()? {
            Outcome::Known(supported) => Some(supported),
            Outcome::Tested(tested) => {
                let supported = tested.supported;
                self.tested
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(tested);
                Some(supported)
            }
        }
    }

    /// make's question: the answer ([`Answer::ask`]), waiting for a
    /// prefetch that is asking it already.
    pub fn answer(&self, cc: &str, q: &Question) -> std::io::Result<Answer> {
        let (cell, _) = self.cell(cc, q);
        let supported = cell
            .get_or_init(|| self.ask(cc, q))
            .ok_or_else(|| std::io::Error::other("the probe could not run"))?;
        Ok(Answer::to(cc, q.clone(), supported))
    }

    /// Asks `questions` of `cc` ahead of make, in order, skipping those
    /// someone asks already, until `stop` (make is done). Several threads
    /// may share one list.
    pub fn prefetch(&self, cc: &str, questions: &[Question], stop: &AtomicBool) {
        for q in questions {
            if stop.load(Ordering::Acquire) {
                return;
            }
            let (cell, new) = self.cell(cc, q);
            if new {
                cell.get_or_init(|| self.ask(cc, q));
            }
        }
    }

    /// Identifies `cc`'s compiler, so later questions can be answered
    /// from the cache and the tested ones kept (the plan's key and every
    /// compile need the identity too).
    pub fn identify(&self, cc: &str) {
        crate::db::tool_identity(program_of(cc));
    }

    /// Stores the answers that were tested before their compiler was
    /// identified (identifying it now, when that is still to do), in one
    /// flush.
    pub fn keep_tested(&self) {
        let tested = std::mem::take(&mut *self.tested.lock().unwrap_or_else(|p| p.into_inner()));
        if tested.is_empty() {
            return;
        }
        // A hint for later plans: losing one costs a probe's test.
        for t in tested {
            let _ = t.put(self.cas);
        }
        let _ = self.cas.flush();
    }
}

/// One `cc-option` question as make asked it, and what it printed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Answer {
    pub cc: String,
    pub option: String,
    pub fallback: String,
    pub extra: String,
    /// What `cc-option` expanded to: `option` or `fallback`.
    pub printed: String,
}

impl Answer {
    /// Asks whether `cc` accepts `option` ([`ask`], in `dir`): the answer
    /// with what `cc-option` prints for it, `option` or `fallback`.
    pub fn ask(
        cas: &LocalCas,
        dir: &std::path::Path,
        cc: &str,
        option: &str,
        fallback: &str,
        extra: &str,
    ) -> std::io::Result<Answer> {
        let question = Question {
            option: option.into(),
            fallback: fallback.into(),
            extra: extra.into(),
        };
        let supported = ask(cas, dir, cc, option, extra)?;
        Ok(Answer::to(cc, question, supported))
    }

    /// The answer to `question` asked of `cc`, which takes its option or not.
    pub fn to(cc: &str, question: Question, supported: bool) -> Answer {
        let Question {
            option,
            fallback,
            extra,
        } = question;
        let printed = if supported { &option } else { &fallback }.clone();
        Answer {
            cc: cc.into(),
            option,
            fallback,
            extra,
            printed,
        }
    }

    /// The make variable our `cc-option` memoizes this question in (its
    /// `key` in [`cc_option_overrides`]).
    pub fn memo_name(&self) -> String {
        format!(
            "kf_cco_{}|{}|{}|{}",
            self.cc, self.option, self.fallback, self.extra
        )
        .replace(' ', "_")
        .replace(['=', ':'], ".")
    }

    /// The make command-line definition that answers the question before
    /// make asks it; `None` when make would read the words otherwise than
    /// the probe got them (quotes, `$`, comments, escapes).
    pub fn definition(&self) -> Option<String> {
        let plain = |w: &str| !w.contains(['$', '\'', '#', '\\', '\n', '\t']);
        [
            &self.cc,
            &self.option,
            &self.fallback,
            &self.extra,
            &self.printed,
        ]
        .iter()
        .all(|w| plain(w))
        .then(|| format!("{}:={}", self.memo_name(), self.printed))
    }

    /// The line a probe appends to the plan's log.
    pub fn log_line(&self) -> String {
        serde_json::json!({ "cc_option": self }).to_string()
    }

    /// The answers logged in `log` (other lines are generator calls).
    pub fn from_log(log: &str) -> Vec<Answer> {
        #[derive(Deserialize)]
        struct Line {
            cc_option: Answer,
        }
        log.lines()
            .filter_map(|l| serde_json::from_str::<Line>(l).ok())
            .map(|l| l.cc_option)
            .collect()
    }

    /// The program whose identity the answer depends on: `cc`'s last word,
    /// as the probe identifies it.
    pub fn program(&self) -> &str {
        program_of(&self.cc)
    }
}

/// The `cc-option` answers known to a run, each with the identity of the
/// compiler it was asked of. Plans made later in the run (a sweep's other
/// targets, a stale plan) get them on make's command line, so make asks no
/// probe process what was answered before.
#[derive(Debug, Default)]
pub struct Answers {
    known: Mutex<Option<BTreeMap<Answer, Digest>>>,
}

/// Where the answers live in the cache, across runs.
fn answers_key() -> keyfab_cas::ActionKey {
    CommandKey {
        kind: "cc-option-answers".into(),
        tool: Digest::of(b"cc-option-answers"),
        argv: vec![],
        cwd: "/".into(),
        env: Default::default(),
        inputs: vec![],
    }
    .key()
}

impl Answers {
    fn with_known<T>(
        &self,
        cas: &LocalCas,
        f: impl FnOnce(&mut BTreeMap<Answer, Digest>) -> T,
    ) -> T {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let known = known.get_or_insert_with(|| load(cas).unwrap_or_default());
        f(known)
    }

    /// make's definitions of every known answer that still holds: its
    /// compiler has the identity it was asked with.
    pub fn definitions(&self, cas: &LocalCas) -> Vec<String> {
        // Identities are checked outside the lock: the first may run the compiler.
        let known = self.with_known(cas, |k| k.clone());
        known
            .iter()
            .filter(|(a, id)| crate::db::tool_identity(a.program()).as_ref() == Some(id))
            .filter_map(|(a, _)| a.definition())
            .collect()
    }

    /// Learns the answers a plan's probes gave, and keeps them in the cache
    /// when any is new.
    pub fn learn(&self, cas: &LocalCas, answers: Vec<Answer>) {
        let changed = self.with_known(cas, |known| {
            let mut changed = false;
            for a in answers {
                let Some(id) = crate::db::tool_identity(a.program()) else {
                    continue;
                };
                changed |= known.insert(a, id) != Some(id);
            }
            changed.then(|| known.clone())
        });
        if let Some(known) = changed {
            // A hint for later runs: losing it costs only probe processes.
            let _ = store(cas, &known);
        }
    }
}

fn load(cas: &LocalCas) -> Option<BTreeMap<Answer, Digest>> {
    let record = cas.get_action(&answers_key()).ok()??;
    let bytes = cas.get_blob(&record.stdout).ok()??;
    let list: Vec<(Answer, String)> = serde_json::from_slice(&bytes).ok()?;
    Some(
        list.into_iter()
            .filter_map(|(a, id)| Some((a, Digest::from_hex(&id).ok()?)))
            .collect(),
    )
}

fn store(cas: &LocalCas, known: &BTreeMap<Answer, Digest>) -> Result<(), keyfab_cas::CasError> {
    if cas.is_read_only() {
        return Ok(());
    }
    let list: Vec<(&Answer, String)> = known.iter().map(|(a, d)| (a, d.to_hex())).collect();
    let json = serde_json::to_vec(&list).expect("answers serialize");
    let mut action = NewAction::success(vec![]);
    action.stdout = &json;
    cas.put_action(&answers_key(), &action)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A probe command that logs the option it is asked (`$2`) to the
    /// returned log and then runs `answer`.
    fn logging_probe(dir: &std::path::Path, answer: &str) -> (String, std::path::PathBuf) {
        let log = dir.join("calls.log");
        let probe = dir.join("probe.sh");
        let script = format!("#!/bin/sh\necho \"$2\" >> {}\n{answer}\n", log.display());
        (write_script(&probe, &script), log)
    }

    /// Writes an executable script at `path`; returns the path as text.
    fn write_script(path: &std::path::Path, script: &str) -> String {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(path, script).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// make's output for `makefile` with our `cc-option` (asking `probe`)
    /// and `extra` arguments; the options the probe was asked.
    fn make_with(makefile: &str, answer: &str, extra: &[String]) -> (String, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let (probe, log) = logging_probe(dir.path(), answer);
        std::fs::write(dir.path().join("Makefile"), makefile).unwrap();
        let out = Command::new("make")
            .arg("-s")
            .args(cc_option_overrides(&probe))
            .args(extra)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        (
            String::from_utf8(out.stdout).unwrap().trim().to_string(),
            calls.lines().map(str::to_string).collect(),
        )
    }

    /// Runs make on a makefile that uses cc-option like QMK's support.mk, with
    /// our override and a probe that logs each call.
    #[test]
    fn each_distinct_probe_runs_once_and_answers_like_support_mk() {
        let (stdout, calls) = make_with(
            "cc-option = $(shell echo SLOW)\nCC = cc\nFLAGS += $(call cc-option,-good,-fallback)\nFLAGS += $(call cc-option,-bad,-fallback)\nFLAGS += $(call cc-option,--param=x=0)\nall:\n\t@echo [$(FLAGS)] [$(FLAGS)] [$(FLAGS)]\n",
            "if [ \"$2\" = \"-good\" ]; then echo \"$2\"; else echo \"$3\"; fi",
            &[],
        );
        assert_eq!(
            stdout,
            "[-good -fallback ] [-good -fallback ] [-good -fallback ]"
        );
        assert_eq!(calls, ["-good", "-bad", "--param=x=0"]);
    }

    fn answer(cc: &str, option: &str, fallback: &str, extra: &str, printed: &str) -> Answer {
        Answer {
            cc: cc.into(),
            option: option.into(),
            fallback: fallback.into(),
            extra: extra.into(),
            printed: printed.into(),
        }
    }

    /// A question answered on make's command line is never asked: the
    /// definition names the variable our `cc-option` memoizes it in, also
    /// for words with spaces, `=` and `:`.
    #[test]
    fn answered_questions_are_not_asked() {
        // What a probe would not print, so the output shows whose answer it is.
        let known = [
            answer("ccache cc", "--param=a:b=0", "-fb", "", "-fb"),
            answer("ccache cc", "-mrelax", "", "-flto=auto", ""),
        ];
        let (stdout, calls) = make_with(
            "CC = ccache cc\nFLAGS += $(call cc-option,--param=a:b=0,-fb)\nFLAGS += $(call cc-option,-asked,,-x y)\nFLAGS += $(call cc-option,-mrelax,,-flto=auto)\nall:\n\t@echo [$(FLAGS)]\n",
            "echo \"$2\"",
            &known.iter().map(|a| a.definition().unwrap()).collect::<Vec<_>>(),
        );
        assert_eq!(stdout, "[-fb -asked ]");
        assert_eq!(calls, ["-asked"]);
    }

    #[test]
    fn words_make_would_read_otherwise_get_no_definition() {
        assert!(answer("cc", "-a", "", "", "-a").definition().is_some());
        for odd in ["$(X)", "it's", "a#b", "a\\b"] {
            assert_eq!(answer("cc", odd, "", "", odd).definition(), None, "{odd}");
            assert_eq!(
                answer("cc", "-a", "", odd, "-a").definition(),
                None,
                "{odd}"
            );
        }
    }

    /// Answers learnt in one run are given in the next (from the cache),
    /// only while the compiler has the identity they were asked of.
    #[test]
    fn answers_outlive_the_run_while_the_compiler_is_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let cas = LocalCas::open(dir.path().join("cache")).unwrap();
        let log = [
            answer("cc", "-Wfine", "", "", "-Wfine").log_line(),
            r#"["keyfab","qmk","generate-rules-mk"]"#.to_string(),
            answer("no-such-compiler-here", "-x", "", "", "").log_line(),
        ]
        .join("\n");
        let learnt = Answers::default();
        learnt.learn(&cas, Answer::from_log(&log));
        let expected = vec![answer("cc", "-Wfine", "", "", "-Wfine")
            .definition()
            .unwrap()];
        assert_eq!(learnt.definitions(&cas), expected);
        let next_run = Answers::default();
        assert_eq!(next_run.definitions(&cas), expected);
        // Another compiler by that name: the answer no longer holds.
        next_run.with_known(&cas, |k| {
            for id in k.values_mut() {
                *id = Digest::of(b"another cc");
            }
        });
        assert!(next_run.definitions(&cas).is_empty());
    }

    /// A compiler that takes `-good`, and once `slow` exists in its folder,
    /// takes a second before it writes `ran` there.
    fn fake_cc(dir: &std::path::Path) -> String {
        let d = dir.display();
        let script = format!(
            "#!/bin/sh\nif [ -e {d}/slow ]; then sleep 1; touch {d}/ran; fi\ncase \"$*\" in *-good*) exit 0;; esac\nexit 1\n"
        );
        write_script(&dir.join("fake-cc"), &script)
    }

    #[test]
    fn asks_the_compiler_once_then_the_cache_and_stops_the_test_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let cas = LocalCas::open(dir.path().join("cache")).unwrap();
        let cc = fake_cc(dir.path());
        assert!(ask(&cas, dir.path(), &cc, "-good", "").unwrap());
        assert!(!ask(&cas, dir.path(), &cc, "-bad", "").unwrap());
        let bad = Answer::ask(&cas, dir.path(), &cc, "-bad", "-fallback", "").unwrap();
        assert_eq!(bad.printed, "-fallback");
        // The cache answers now; the test started alongside is stopped,
        // with what it started (the compiler after `echo |`).
        std::fs::write(dir.path().join("slow"), "").unwrap();
        assert!(ask(&cas, dir.path(), &cc, "-good", "").unwrap());
        assert!(!ask(&cas, dir.path(), &cc, "-bad", "").unwrap());
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(!dir.path().join("ran").exists());
        // A new question still runs the test.
        assert!(ask(&cas, dir.path(), &cc, "-good-too", "").unwrap());
        assert!(dir.path().join("ran").exists());
    }

    fn q(option: &str, fallback: &str, extra: &str) -> Question {
        Question {
            option: option.into(),
            fallback: fallback.into(),
            extra: extra.into(),
        }
    }

    #[test]
    fn literal_calls_are_read_as_make_passes_them() {
        let mk = "\
CFLAGS += $(call cc-option,-Wa,-fallback)
# $(call cc-option,COMMENTED,OUT)
X += $(call cc-option,-Wl$(,)--no-warn-rwx-segments) $(call cc-option, -spaced , -kept)
Y += $(call cc-option,-mrelax,,-flto=auto)
Z += $(call cc-option,$(FLAG),-f) $(call cc-option,-a,-b,-c,-d) $(call cc-option,-n(1),-x)
W += $(call cc-option,-open";
        assert_eq!(
            literal_calls(mk),
            [
                q("-Wa", "-fallback", ""),
                q("-Wl,--no-warn-rwx-segments", "", ""),
                q(" -spaced ", " -kept", ""),
                q("-mrelax", "", "-flto=auto"),
                q("-n(1)", "-x", ""),
            ]
        );
    }

    #[test]
    fn make_is_expected_to_ask_on_from_its_first_question() {
        let all = vec![
            q("a", "", ""),
            q("b", "", ""),
            q("c", "", ""),
            q("d", "", ""),
        ];
        assert_eq!(
            after(&q("c", "", ""), all.clone()),
            [q("d", "", ""), q("a", "", ""), q("b", "", "")]
        );
        // A question not written in the makefiles (a command-line call).
        assert_eq!(after(&q("x", "", ""), all.clone()), all);
    }

    #[test]
    fn the_tree_questions_come_from_its_shared_makefiles_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write(
            "platforms/avr/platform.mk",
            "A += $(call cc-option,-mlra)\n",
        );
        write(
            "builddefs/common_rules.mk",
            "A += $(call cc-option,-x,-y)\nB += $(call cc-option,-mlra)\n",
        );
        write("builddefs/notes.txt", "$(call cc-option,-not-a-makefile)\n");
        write(
            "keyboards/k/rules.mk",
            "A += $(call cc-option,-not-shared)\n",
        );
        write(
            "platforms/chibios/platform.mk",
            "A += $(call cc-option,-mthumb)\n",
        );
        write("platforms/common.mk", "A += $(call cc-option,-common)\n");
        assert_eq!(
            tree_questions(dir.path(), None),
            [
                q("-x", "-y", ""),
                q("-mlra", "", ""),
                q("-mthumb", "", ""),
                q("-common", "", "")
            ]
        );
        // The target's platform: its folder and the shared files only.
        assert_eq!(
            tree_questions(dir.path(), Some("avr")),
            [q("-x", "-y", ""), q("-mlra", "", ""), q("-common", "", "")]
        );
    }

    /// The compiler a platform's makefile names is read the way make
    /// would expand it, or not guessed at all.
    #[test]
    fn the_platform_compiler_is_its_makefiles_first_unconditional_cc() {
        // QMK's AVR platform: CC_PREFIX is set elsewhere, for ccache only.
        let avr = "# AVR\nCC = $(CC_PREFIX) avr-gcc\nOBJCOPY = avr-objcopy\n";
        assert_eq!(compiler_assigned(avr).as_deref(), Some(" avr-gcc"));
        // A conditional one is skipped; comments, `:=` and `${}` are read.
        let host = "ifeq ($(PLATFORM),x)\n  CC = clang\nendif\nCC := ${CC_PREFIX} gcc # host\n";
        assert!(same_compiler(&compiler_assigned(host).unwrap(), "gcc"));
        // A continued line is one line.
        let continued = "CC = $(CC_PREFIX) \\\n    avr-gcc\n";
        assert!(same_compiler(
            &compiler_assigned(continued).unwrap(),
            "avr-gcc"
        ));
        // QMK's ChibiOS platform: the file itself chooses TOOLCHAIN.
        let chibios = "ifeq ($(MCU),risc-v)\n    TOOLCHAIN ?= riscv-\nelse\n    TOOLCHAIN ?= arm-none-eabi-\nendif\nCC      = $(CC_PREFIX) $(TOOLCHAIN)gcc\n";
        assert_eq!(compiler_assigned(chibios), None);
        for unknown in [
            "CC = $(shell which gcc)\n",
            "CC = $(CC_PREFIX)\n",
            "all:\n\tCC=gcc make\n",
            "ifdef X\nCC = gcc\nendif\n",
            "CC = $X gcc\n",
        ] {
            assert_eq!(compiler_assigned(unknown), None, "{unknown}");
        }
        // Read from the tree, by platform name only.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("platforms/avr")).unwrap();
        std::fs::write(dir.path().join("platforms/avr/platform.mk"), avr).unwrap();
        assert_eq!(
            platform_compiler(dir.path(), "avr").as_deref(),
            Some(" avr-gcc")
        );
        assert_eq!(platform_compiler(dir.path(), "chibios"), None);
        assert_eq!(platform_compiler(dir.path(), "../platforms/avr"), None);
    }

    #[test]
    fn compilers_are_the_same_when_their_plain_words_are() {
        assert!(same_compiler(" avr-gcc", "avr-gcc"));
        assert!(same_compiler("ccache  avr-gcc ", "ccache avr-gcc"));
        assert!(!same_compiler("ccache avr-gcc", " avr-gcc"));
        // Words a shell reads otherwise are compared as they are.
        assert!(!same_compiler("'a b'", "a b"));
        assert!(!same_compiler(" $CC", "$CC"));
    }

    /// A compiler that logs the option of each probe it runs (not its
    /// `--version` and other identity questions) and takes `-good*`.
    fn logging_cc(dir: &std::path::Path) -> (String, std::path::PathBuf) {
        let log = dir.join("probes.log");
        let script = format!(
            "#!/bin/sh\ncase \"$*\" in *' /dev/null') echo \"$1\" >> {} ;; esac\ncase \"$1\" in -good*) exit 0;; esac\nexit 1\n",
            log.display()
        );
        (write_script(&dir.join("logging-cc"), &script), log)
    }

    #[test]
    fn a_prefetched_probe_is_not_asked_again_and_answers_as_make_would() {
        let dir = tempfile::tempdir().unwrap();
        let cas = LocalCas::open(dir.path().join("cache")).unwrap();
        let (cc, log) = logging_cc(dir.path());
        let probes = Probes::new(&cas, dir.path());
        let stop = AtomicBool::new(false);
        let questions = [
            q("-good", "", ""),
            q("-bad", "-fallback", ""),
            q("-good2", "", ""),
        ];
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| probes.prefetch(&cc, &questions, &stop));
            }
        });
        let printed: Vec<String> = questions
            .iter()
            .map(|question| probes.answer(&cc, question).unwrap().printed)
            .collect();
        assert_eq!(printed, ["-good", "-fallback", "-good2"]);
        let mut ran: Vec<String> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        ran.sort();
        assert_eq!(ran, ["-bad", "-good", "-good2"]);
        // Stopped (make is done): nothing more is asked.
        stop.store(true, Ordering::Release);
        probes.prefetch(&cc, &[q("-good3", "", "")], &stop);
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 3);
    }

    /// A compiler not identified yet: its test answers make at once, and
    /// the answer reaches the cache once the compiler is identified.
    #[test]
    fn a_test_answers_before_the_identity_and_is_kept_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let cas = LocalCas::open(dir.path().join("cache")).unwrap();
        let (cc, log) = logging_cc(dir.path());
        let probes = Probes::new(&cas, dir.path());
        let good = q("-good", "", "");
        assert_eq!(probes.answer(&cc, &good).unwrap().printed, "-good");
        // Nothing identified it: the answer waits to be kept.
        assert_eq!(crate::db::known_tool_identity(&cc), None);
        probes.keep_tested();
        let identity = crate::db::known_tool_identity(&cc);
        assert!(identity.is_some());
        let key = answer_key(&cc, "-good", "", identity);
        assert_eq!(cached_answer(&cas, &key), Some(true));
        // Identified now: the cache answers, with no test started.
        assert!(ask(&cas, dir.path(), &cc, "-good", "").unwrap());
        // A new question is tested, and kept at once.
        let bad = Probes::new(&cas, dir.path()).answer(&cc, &q("-bad", "-fb", ""));
        assert_eq!(bad.unwrap().printed, "-fb");
        let key = answer_key(&cc, "-bad", "", identity);
        assert_eq!(cached_answer(&cas, &key), Some(false));
        let ran = std::fs::read_to_string(&log).unwrap();
        assert_eq!(ran.lines().collect::<Vec<_>>(), ["-good", "-bad"]);
    }
}

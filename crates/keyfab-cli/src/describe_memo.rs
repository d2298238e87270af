//! A checkout's `git describe --abbrev=6 --always --tags` (the tree's,
//! ChibiOS's, a userspace's), remembered in the cache. Its walk from HEAD to
//! the nearest tags was most of the git work a build does in a checkout of
//! QMK (~30 ms of CPU for the tree's 12k commits and 1.5k tags, ~100 ms for
//! a ChibiOS with no tag near), on every build, for version.h and the
//! provenance; its answer
//! follows from the commit at HEAD, the tag refs and git itself, which are
//! the key. Only the abbreviated hash in it can change besides them (an
//! object added later can make six digits ambiguous), so that part is
//! asked again each time, by the one `git rev-parse` the key needs anyway.

use crate::gen_cmds::GitAnswer;
use keyfab_cas::{ActionKey, CommandKey, Digest, LocalCas, NewAction, NewOutput};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a checkout's describe depends on, read at one moment.
pub struct DescribeState {
    /// The commit at HEAD, in full.
    head: String,
    /// Its abbreviation as `--abbrev=6` makes it now.
    short: String,
    common_dir: PathBuf,
    refs: Refs,
    /// The answer's key in the cache.
    key: ActionKey,
}

/// The tag refs: the bytes they are stored in, and their names.
#[derive(PartialEq, Eq)]
struct Refs {
    digest: Digest,
    tags: Vec<String>,
}

/// How describe's answer is made of the abbreviated hash.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Form {
    /// A tag at HEAD: its name alone.
    Exact(String),
    /// `TAG-N` then `-g` and the hash.
    Distance(String),
    /// No tag reaches HEAD (`--always`): the hash alone.
    Bare,
}

impl DescribeState {
    /// The state of the checkout at `dir`, from one `git rev-parse` (run by
    /// `git`) and the ref files. `None` where describe may depend on more
    /// than the key holds (a shallow clone, grafts, replaced objects, refs
    /// not stored as files, a tag that is a symbolic ref), or git failed.
    pub fn read(dir: &Path, git: impl Fn(&Path, &[&str]) -> GitAnswer) -> Option<DescribeState> {
        let args = [
            "rev-parse",
            "--git-common-dir",
            "--is-shallow-repository",
            "HEAD",
            "--short=6",
            "HEAD",
        ];
        let out = git(dir, &args).ok()?;
        let [common, shallow, head, short] = out.lines().collect::<Vec<_>>()[..] else {
            return None;
        };
        let common_dir = dir.join(common);
        let unkeyed = shallow != "false"
            || common_dir.join("reftable").exists()
            || common_dir.join("info/grafts").exists();
        if unkeyed {
            return None;
        }
        let refs = read_refs(&common_dir)?;
        let key = key(head, &refs, git_env(std::env::vars()))?;
        Some(DescribeState {
            head: head.to_string(),
            short: short.to_string(),
            refs,
            common_dir,
            key,
        })
    }

    /// The remembered answer for this state, with today's abbreviation.
    pub fn recall(&self, cas: &LocalCas) -> Option<String> {
        let result = cas.get_action(&self.key).ok()??;
        let form = cas.get_blob(&result.output("form")?.digest).ok()??;
        let form = Form::decode(std::str::from_utf8(&form).ok()?)?;
        Some(form.render(&self.short))
    }

    /// Remembers describe's answer (`described`, for this state's HEAD)
    /// when the tag refs are still as they were read: a tag made while
    /// describe ran may be in its answer but not in the key.
    pub fn remember(&self, cas: &LocalCas, described: &str) {
        let Some(form) = Form::of(described, &self.short, &self.refs.tags) else {
            return;
        };
        if read_refs(&self.common_dir).as_ref() != Some(&self.refs) {
            return;
        }
        let encoded = form.encode();
        let action = NewAction::success(vec![NewOutput::bytes("form", encoded.as_bytes())]);
        // A hint: failing to store it only costs describe's walk.
        let _ = cas.put_action(&self.key, &action);
    }

    /// The describe to run for this state: the same as QMK's, of the
    /// commit read (HEAD may move meanwhile).
    pub fn describe_args(&self) -> [&str; 5] {
        let [d, abbrev, always, tags] = DESCRIBE_PLAIN;
        [d, abbrev, always, tags, &self.head]
    }
}

/// The key of describe's answer for the commit `head` with these tag refs,
/// run by the git on `PATH` (another version may walk or choose otherwise:
/// its file's path, size, time and inode stand for it, which costs a stat
/// where hashing it and asking its version cost ~20 ms on a fresh cache)
/// with the `GIT_*` environment `env`.
fn key(head: &str, refs: &Refs, env: BTreeMap<String, String>) -> Option<ActionKey> {
    use std::os::unix::fs::MetadataExt as _;
    let git = keyfab_build::exec::resolve_program("git")?;
    let meta = std::fs::metadata(&git).ok()?;
    let stamp = format!(
        "{}\0{}\0{}.{}\0{}:{}",
        git.display(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.dev(),
        meta.ino()
    );
    Some(
        CommandKey {
            kind: "git-describe".into(),
            tool: Digest::of(stamp.as_bytes()),
            argv: DESCRIBE_PLAIN.iter().map(Into::into).collect(),
            cwd: PathBuf::new(),
            env,
            inputs: vec![
                ("HEAD".into(), Digest::of(head.as_bytes())),
                ("refs/tags".into(), refs.digest),
            ],
        }
        .key(),
    )
}

/// describe without `--dirty`, as QMK's command has it.
pub const DESCRIBE_PLAIN: [&str; 4] = ["describe", "--abbrev=6", "--always", "--tags"];

/// `packed-refs` and the loose refs under `refs/tags`, as bytes and names;
/// `None` where a tag is a symbolic ref or objects are replaced (then
/// `core.useReplaceRefs` and more would matter).
fn read_refs(common: &Path) -> Option<Refs> {
    let mut bytes = Vec::new();
    let mut tags = Vec::new();
    match std::fs::read(common.join("packed-refs")) {
        Ok(packed) => {
            let text = String::from_utf8_lossy(&packed);
            for line in text.lines().filter(|l| !l.starts_with(['#', '^'])) {
                let name = line.split_once(' ').map_or("", |(_, n)| n);
                if name.starts_with("refs/replace/") {
                    return None;
                }
                if let Some(tag) = name.strip_prefix("refs/tags/") {
                    tags.push(tag.to_string());
                }
            }
            bytes.extend((packed.len() as u64).to_le_bytes());
            bytes.extend(packed);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return None,
    }
    let replace = common.join("refs/replace");
    if std::fs::read_dir(&replace).is_ok_and(|mut d| d.next().is_some()) {
        return None;
    }
    let mut loose = Vec::new();
    loose_refs(&common.join("refs/tags"), "", &mut loose)?;
    loose.sort();
    for (name, content) in loose {
        if content.starts_with(b"ref:") {
            return None;
        }
        for part in [name.as_bytes(), &content] {
            bytes.extend((part.len() as u64).to_le_bytes());
            bytes.extend(part);
        }
        tags.push(name);
    }
    Some(Refs {
        digest: Digest::of(&bytes),
        tags,
    })
}

/// The files under `dir` (a `refs/tags` folder), by name below it.
fn loose_refs(dir: &Path, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) -> Option<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(()),
        Err(_) => return None,
    };
    for entry in entries {
        let entry = entry.ok()?;
        let name = format!("{prefix}{}", entry.file_name().to_str()?);
        if entry.file_type().ok()?.is_dir() {
            loose_refs(&entry.path(), &format!("{name}/"), out)?;
        } else {
            out.push((name, std::fs::read(entry.path()).ok()?));
        }
    }
    Some(())
}

/// The environment git reads that may change what describe sees (its
/// folders, config, replace refs, namespace); not what only traces it or
/// names the index (an audit's rebuild has an index of its own).
fn git_env(vars: impl Iterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.filter(|(k, _)| {
        k.starts_with("GIT_")
            && !k.starts_with("GIT_TRACE")
            && k != "GIT_INDEX_FILE"
            && k != "GIT_OPTIONAL_LOCKS"
    })
    .collect()
}

impl Form {
    /// The form of `described`, made with abbreviation `short` when the
    /// tags are `tags`; `None` when it could be read two ways (a tag named
    /// like the other forms) or none.
    fn of(described: &str, short: &str, tags: &[String]) -> Option<Form> {
        let is_tag = tags.iter().any(|t| t == described);
        let distance = described
            .strip_suffix(short)
            .and_then(|d| d.strip_suffix("-g"))
            .filter(|d| !d.is_empty());
        match (is_tag, distance) {
            (true, None) if described != short => Some(Form::Exact(described.to_string())),
            (false, Some(d)) => Some(Form::Distance(d.to_string())),
            (false, None) if described == short => Some(Form::Bare),
            _ => None,
        }
    }

    fn render(&self, short: &str) -> String {
        match self {
            Form::Exact(tag) => tag.clone(),
            Form::Distance(d) => format!("{d}-g{short}"),
            Form::Bare => short.to_string(),
        }
    }

    fn encode(&self) -> String {
        match self {
            Form::Exact(tag) => format!("exact\n{tag}"),
            Form::Distance(d) => format!("distance\n{d}"),
            Form::Bare => "bare\n".into(),
        }
    }

    fn decode(s: &str) -> Option<Form> {
        match s.split_once('\n')? {
            ("exact", tag) => Some(Form::Exact(tag.to_string())),
            ("distance", d) => Some(Form::Distance(d.to_string())),
            ("bare", "") => Some(Form::Bare),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn forms_render_with_a_longer_abbreviation() {
        let t = tags(&["v1.0", "0.2.0"]);
        let cases = [
            ("v1.0", Some(Form::Exact("v1.0".into())), "v1.0"),
            (
                "0.2.0-3-g653ce0",
                Some(Form::Distance("0.2.0-3".into())),
                "0.2.0-3-g653ce04",
            ),
            ("653ce0", Some(Form::Bare), "653ce04"),
        ];
        for (described, form, longer) in cases {
            let got = Form::of(described, "653ce0", &t);
            assert_eq!(got, form, "{described}");
            let form = got.unwrap();
            assert_eq!(form.render("653ce0"), described);
            assert_eq!(Form::decode(&form.encode()), Some(form.clone()));
            assert_eq!(form.render("653ce04"), longer);
        }
    }

    #[test]
    fn an_answer_that_reads_two_ways_is_not_kept() {
        // A tag named like the hash, or like a distance: which one git
        // printed would matter once the abbreviation grows.
        assert_eq!(Form::of("653ce0", "653ce0", &tags(&["653ce0"])), None);
        let odd = tags(&["x-1-g653ce0"]);
        assert_eq!(Form::of("x-1-g653ce0", "653ce0", &odd), None);
        // Neither a tag nor made of the hash: not describe's.
        assert_eq!(Form::of("something", "653ce0", &tags(&[])), None);
    }

    /// `git -C dir ARGS`, as `gen_cmds::git` answers.
    fn run_git(dir: &Path, args: &[&str]) -> GitAnswer {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .map_err(|e| (-1, e.to_string()))?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
        match out.status.code() {
            Some(0) => Ok(text(&out.stdout)),
            code => Err((code.unwrap_or(-1), text(&out.stderr))),
        }
    }

    fn commit(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), name).unwrap();
        run_git(dir, &["add", name]).unwrap();
        run_git(dir, &["commit", "-q", "-m", name]).unwrap();
    }

    #[test]
    fn a_state_is_keyed_only_where_the_key_holds_all_describe_reads() {
        let t = tempfile::tempdir().unwrap();
        let repo = t.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        // No commit yet: git cannot say.
        run_git(&repo, &["init", "-q"]).unwrap();
        assert!(DescribeState::read(&repo, run_git).is_none());
        commit(&repo, "a");
        run_git(&repo, &["tag", "v1"]).unwrap();
        commit(&repo, "b");
        let state = DescribeState::read(&repo, run_git).expect("a plain checkout");
        assert_eq!(state.refs.tags, ["v1"]);
        let head = run_git(&repo, &["rev-parse", "HEAD"]).unwrap();
        assert_eq!(state.head, head);
        assert_eq!(state.describe_args()[4], head);
        // A new tag changes the key's refs.
        run_git(&repo, &["tag", "v2", "HEAD~1"]).unwrap();
        let tagged = DescribeState::read(&repo, run_git).unwrap();
        assert!(tagged.refs != state.refs);

        // A shallow clone: describe stops at its boundary.
        let shallow = t.path().join("shallow");
        let url = format!("file://{}", repo.display());
        let parent = t.path();
        run_git(parent, &["clone", "-q", "--depth", "1", &url, "shallow"]).unwrap();
        assert!(DescribeState::read(&shallow, run_git).is_none());

        // A replaced object (HEAD grafted to have no parent): describe then
        // follows another history.
        run_git(&repo, &["replace", "--graft", "HEAD"]).unwrap();
        assert!(DescribeState::read(&repo, run_git).is_none());
    }

    #[test]
    fn git_env_keeps_what_describe_reads() {
        let vars = [
            ("GIT_DIR", "/x"),
            ("GIT_INDEX_FILE", "/tmp/i"),
            ("GIT_TRACE2_EVENT", "/tmp/t"),
            ("GIT_OPTIONAL_LOCKS", "0"),
            ("GIT_NO_REPLACE_OBJECTS", "1"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let kept: Vec<_> = git_env(vars.into_iter()).into_keys().collect();
        assert_eq!(kept, ["GIT_DIR", "GIT_NO_REPLACE_OBJECTS"]);
    }
}

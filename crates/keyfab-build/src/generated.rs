//! Generated files from the cache: a generator call (`keyfab qmk generate-…`
//! as make names it) is cached like a direct-mode compile. Its head key is
//! the call (argv, tree, keyfab's own digest, what else its host says the
//! output depends on); the manifest under it lists, per output seen, every
//! read the call made ([`keyfab_tree::reads`]: files by digest, presence
//! checks, folder listings) and the action holding the output. The database
//! ([`crate::db::generated`]) answers whether a known output still holds;
//! the executor runs only the calls it cannot answer.

use keyfab_cas::{ActionKey, Digest, GenerateKey, LocalCas, NewAction, NewOutput, OutputSource};
use keyfab_tree::reads::Read;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What an in-process generator call produced.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The file it writes.
    pub output: PathBuf,
    pub contents: Vec<u8>,
    /// Everything it read; `None` when its output depends on more than
    /// files (git, the clock): never reused.
    pub reads: Option<Vec<Read>>,
    /// What the call prints as a process (stdout, stderr), where the host
    /// can say exactly; `None`: only the process can.
    pub printed: Option<(Vec<u8>, Vec<u8>)>,
}

/// An output a call gave, as the action that holds it, and what it was
/// made from (reads encoded by [`encode_reads`]). The action is looked up
/// only for the entry that still holds: a call's manifest keeps up to 16.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GeneratedRecord {
    pub reads: Vec<(PathBuf, Digest)>,
    pub action: ActionKey,
}

/// What an encoded read is.
pub enum ReadKind {
    /// The file's digest ([`absent`] when there was none).
    File,
    /// Whether a file is there (digest of `"file"`, or [`absent`]).
    IsFile,
    /// A folder's listing (digest of its names, one per line).
    Folder,
}

/// The digest standing for "no file there".
pub fn absent() -> Digest {
    Digest::of(b"keyfab:absent")
}

/// The digest standing for "a file is there" (its bytes unread).
pub fn present() -> Digest {
    Digest::of(b"keyfab:file")
}

/// The digest of a folder listing.
pub fn listing_digest(names: &[String]) -> Digest {
    Digest::of(names.join("\n").as_bytes())
}

/// Reads as `(kind-prefixed path, digest)` pairs; paths inside `root` are
/// made relative (the database's inputs are tree-relative).
pub fn encode_reads(root: &Path, reads: &[Read]) -> Vec<(PathBuf, Digest)> {
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    let mut out: Vec<(PathBuf, Digest)> = reads
        .iter()
        .map(|r| match r {
            Read::File { path, digest } => (
                PathBuf::from(format!("f:{}", rel(path))),
                digest.map(Digest).unwrap_or_else(absent),
            ),
            Read::IsFile { path, yes } => (
                PathBuf::from(format!("e:{}", rel(path))),
                if *yes { present() } else { absent() },
            ),
            Read::Folder { path, names } => (
                PathBuf::from(format!("d:{}", rel(path))),
                listing_digest(names),
            ),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// An encoded read's kind and path.
pub fn decode_read(encoded: &Path) -> Option<(ReadKind, &Path)> {
    let s = encoded.to_str()?;
    let (kind, path) = s.split_at_checked(2)?;
    let kind = match kind {
        "f:" => ReadKind::File,
        "e:" => ReadKind::IsFile,
        "d:" => ReadKind::Folder,
        _ => return None,
    };
    Some((kind, Path::new(path)))
}

/// The head key of a call: its command line, the digest of the keyfab
/// binary that generates (its first word) and the host's `salt`. Not the
/// tree's folder: reads inside the tree are tree-relative, so a checkout in
/// another folder finds the outputs. An output that names the folder itself
/// (make dependency files list absolute paths) is kept under
/// [`folder_head`] instead.
pub fn head_key(argv: &[String], keyfab: Digest, salt: &str) -> ActionKey {
    GenerateKey {
        generator: "qmk".into(),
        generator_version: 2,
        params: BTreeMap::from([
            ("argv".into(), argv.join("\0")),
            ("host".into(), salt.to_string()),
        ]),
        inputs: vec![("keyfab".into(), keyfab)],
    }
    .key()
}

/// The head under which what names the tree's folder is kept (a call's
/// output, a plan): `head` in that folder only.
pub fn folder_head(head: &ActionKey, root: &Path) -> ActionKey {
    GenerateKey {
        generator: "qmk-in-folder".into(),
        generator_version: 1,
        params: BTreeMap::from([
            ("head".into(), head.0.to_hex()),
            ("tree".into(), root.display().to_string()),
        ]),
        inputs: Vec::new(),
    }
    .key()
}

/// Whether `contents` name the folder `root` (then they hold in that
/// folder only): as it is, or escaped the way JSON (a plan) and C string
/// literals (a generated header) write a `"` or `\` in it.
pub(crate) fn names_folder(contents: &[u8], root: &Path) -> bool {
    let folder = root.as_os_str().as_encoded_bytes();
    let mut escaped = Vec::with_capacity(folder.len());
    for &b in folder {
        if b == b'"' || b == b'\\' {
            escaped.push(b'\\');
        }
        escaped.push(b);
    }
    let holds = |f: &[u8]| !f.is_empty() && contents.windows(f.len()).any(|w| w == f);
    holds(folder) || (escaped.len() != folder.len() && holds(&escaped))
}

/// The outputs the cache knows for a call in the tree at `root`, newest
/// first: those that hold in any folder, then those of this folder (two
/// look-ups: the manifests).
pub fn load_known(cas: &LocalCas, head: &ActionKey, root: &Path) -> Vec<GeneratedRecord> {
    [*head, folder_head(head, root)]
        .iter()
        .filter_map(|h| cas.get_manifest(h).ok().flatten())
        .flat_map(|manifest| manifest.entries)
        .map(|e| GeneratedRecord {
            reads: e.headers,
            action: e.action,
        })
        .collect()
}

/// The digest of the output `name` an action holds (`None`: the cache no
/// longer has it).
pub fn output_of(
    cas: &LocalCas,
    action: &ActionKey,
    name: &str,
) -> keyfab_cas::Result<Option<Digest>> {
    Ok(cas
        .get_action(action)?
        .and_then(|r| r.output(name).map(|o| o.digest)))
}

/// Stores a call's output in the tree at `root` under its head key (its
/// [`folder_head`] when the output names the folder), with what it read.
pub fn store(
    cas: &LocalCas,
    head: &ActionKey,
    root: &Path,
    output: &str,
    reads: Vec<(PathBuf, Digest)>,
    contents: &[u8],
    took: Duration,
) -> keyfab_cas::Result<GeneratedRecord> {
    let head = &if names_folder(contents, root) {
        folder_head(head, root)
    } else {
        *head
    };
    let action = GenerateKey {
        generator: "qmk-output".into(),
        generator_version: 1,
        params: BTreeMap::from([("head".into(), head.0.to_hex())]),
        inputs: reads
            .iter()
            .map(|(p, d)| (p.display().to_string(), *d))
            .collect(),
    }
    .key();
    cas.put_action_in_manifest(
        &action,
        &NewAction {
            outputs: vec![NewOutput {
                name: output.to_string(),
                source: OutputSource::Bytes(contents),
                executable: false,
            }],
            stdout: b"",
            stderr: b"",
            exit_code: 0,
            duration: took,
        },
        head,
        &reads,
    )?;
    Ok(GeneratedRecord { reads, action })
}

/// Writes `contents` to `path` as QMK's `dump_lines` does, atomically:
/// unchanged contents leave the file alone (returns false); a changed file
/// is first kept as `<file>.bak`; the new contents go to a temporary file
/// in the same folder, renamed over the old one, so a failure never leaves
/// a half-written output.
pub fn write_generated(path: &Path, contents: &[u8]) -> std::io::Result<bool> {
    write_file(path, contents, true)
}

/// [`write_generated`] without the `.bak`: as a make recipe's
/// `cmp -s - FILE || … > FILE` writes, but whole or not at all.
pub fn write_if_changed(path: &Path, contents: &[u8]) -> std::io::Result<bool> {
    write_file(path, contents, false)
}

fn write_file(path: &Path, contents: &[u8], keep_bak: bool) -> std::io::Result<bool> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    if let Ok(existing) = std::fs::read(path) {
        if existing == contents {
            return Ok(false);
        }
    }
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?
        .to_string_lossy()
        .into_owned();
    // One temp name per call: generators may write the same file from two
    // threads at once (make's restart records version.h twice).
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.keyfab-{}-{seq}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.flush()?;
        drop(f);
        if keep_bak && path.exists() {
            // QMK keeps the previous contents as `<file>.bak`.
            let bak = dir.join(format!("{name}.bak"));
            let _ = std::fs::remove_file(&bak);
            if std::fs::hard_link(path, &bak).is_err() {
                std::fs::copy(path, &bak)?;
            }
        }
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_named_as_it_is_or_escaped() {
        let odd = Path::new(r#"/w/say "hi"\there"#);
        let plan = serde_json::to_vec(&[format!("-I{}/quantum", odd.display())]).unwrap();
        assert!(names_folder(&plan, odd));
        let header = br#"#define KB_DIR "/w/say \"hi\"\\there/keyboards""#;
        assert!(names_folder(header, odd));
        assert!(names_folder(b"/w/say \"hi\"\\there/x", odd));
        assert!(!names_folder(&plan, Path::new("/w/other")));
        assert!(names_folder(b"-I/w/plain/quantum", Path::new("/w/plain")));
        assert!(!names_folder(b"-Iquantum", Path::new("/w/plain")));
    }

    #[test]
    fn reads_encode_relative_and_decode() {
        let root = Path::new("/t");
        let enc = encode_reads(
            root,
            &[
                Read::File {
                    path: "/t/keyboards/a/info.json".into(),
                    digest: Some([7; 32]),
                },
                Read::IsFile {
                    path: "/elsewhere/x".into(),
                    yes: false,
                },
                Read::Folder {
                    path: "/t/data/schemas".into(),
                    names: vec!["a.jsonschema".into()],
                },
            ],
        );
        assert_eq!(
            enc,
            vec![
                (
                    PathBuf::from("d:data/schemas"),
                    listing_digest(&["a.jsonschema".into()])
                ),
                (PathBuf::from("e:/elsewhere/x"), absent()),
                (PathBuf::from("f:keyboards/a/info.json"), Digest([7; 32])),
            ]
        );
        let (kind, path) = decode_read(&enc[2].0).unwrap();
        assert!(matches!(kind, ReadKind::File));
        assert_eq!(path, Path::new("keyboards/a/info.json"));
        assert!(decode_read(Path::new("x:y")).is_none());
    }

    #[test]
    fn stored_outputs_come_back_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let cas = LocalCas::open(dir.path().join("cache")).unwrap();
        let root = Path::new("/work/tree");
        let head = head_key(&["kf".into(), "qmk".into()], Digest::of(b"kf"), "");
        let old = vec![(PathBuf::from("f:a"), Digest::of(b"1"))];
        let new = vec![(PathBuf::from("f:a"), Digest::of(b"2"))];
        let put = |reads: &Vec<_>, out: &[u8]| {
            store(
                &cas,
                &head,
                root,
                "out.h",
                reads.clone(),
                out,
                Duration::ZERO,
            )
            .unwrap();
        };
        put(&old, b"one");
        put(&new, b"two");
        let outputs = |root: &Path| -> Vec<_> {
            load_known(&cas, &head, root)
                .iter()
                .map(|r| {
                    let out = output_of(&cas, &r.action, "out.h").unwrap();
                    (r.reads.clone(), out)
                })
                .collect()
        };
        assert_eq!(
            outputs(root),
            vec![
                (new.clone(), Some(Digest::of(b"two"))),
                (old.clone(), Some(Digest::of(b"one"))),
            ]
        );
        let other = head_key(&["kf".into(), "qmk".into()], Digest::of(b"kf"), "2027");
        assert!(load_known(&cas, &other, root).is_empty());

        // Outputs hold in any folder, but one that names its folder.
        let elsewhere = Path::new("/ci/runner-2/tree");
        assert_eq!(outputs(elsewhere).len(), 2);
        let deps = b"generated-files: $(wildcard /work/tree/keyboards/a/keymap.json)\n";
        put(&old, deps);
        assert_eq!(outputs(elsewhere).len(), 2);
        assert_eq!(outputs(root)[2], (old, Some(Digest::of(deps))));
    }

    #[test]
    fn atomic_write_keeps_unchanged_files_and_bak() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sub/out.h");
        assert!(write_generated(&f, b"one\n").unwrap());
        assert!(!write_generated(&f, b"one\n").unwrap());
        assert!(!dir.path().join("sub/out.h.bak").exists());
        assert!(write_generated(&f, b"two\n").unwrap());
        assert_eq!(std::fs::read(&f).unwrap(), b"two\n");
        assert_eq!(
            std::fs::read(dir.path().join("sub/out.h.bak")).unwrap(),
            b"one\n"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn concurrent_writes_of_one_file_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("src/version.h");
        std::thread::scope(|s| {
            for t in 0..4 {
                let f = &f;
                s.spawn(move || {
                    for i in 0..50 {
                        write_generated(f, format!("{t} {i}\n").as_bytes()).unwrap();
                    }
                });
            }
        });
        assert!(std::fs::read_to_string(&f).unwrap().ends_with(" 49\n"));
    }
}

//! Keyboard resolution and merged info as salsa queries (DESIGN's stages 1
//! and 2): [`keyboard_folder`] and [`keyboard_info`] over inputs that hold
//! the tree's files ([`TreeFile`]) and folder listings ([`TreeFolder`]).
//!
//! The queries run keyfab-info's merge with a [`reads::Source`] that serves
//! every read from those inputs, so salsa learns exactly which files and
//! listings a keyboard's info depends on: in a watch, an edited keymap
//! re-merges nothing, an edited `info.json` re-merges the keyboards whose
//! chain holds it, and a new `config.h` that shadows another one re-merges
//! the keyboards whose folders list it. Each answer keeps the reads that
//! made it, replayed to the caller's recording, so a generator call's read
//! set (cached across processes, see [`crate::generated`]) stays complete.
//!
//! The queries do no IO: inputs are made (and read) lazily at the edge, in
//! [`InfoDb`]'s constructors, as in salsa's lazy-input example; a watch
//! calls [`InfoQueryHost::refresh`] to set the ones that changed.
//!
//! [`InfoQueryHost`] shares the database between threads (generator calls
//! run on the executor's pool): a target's generator calls share one
//! answer, and a sweep's keyboards merge in parallel.

use crate::db::{recent, stamp, FileStamp};
use keyfab_info::{Engine, Info, InfoQueries};
use keyfab_tree::reads::{self, Read};
use keyfab_tree::TreeError;
use salsa::{Durability, Setter};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A file of the tree and its bytes (`None`: no readable file there).
#[salsa::input(debug)]
pub struct TreeFile {
    #[returns(ref)]
    pub path: PathBuf,
    #[returns(ref)]
    pub bytes: Option<Arc<[u8]>>,
}

/// A folder's entries as [`reads::folder_names`] lists them.
#[salsa::input(debug)]
pub struct TreeFolder {
    #[returns(ref)]
    pub path: PathBuf,
    #[returns(ref)]
    pub names: Arc<Vec<String>>,
}

/// A keyboard name as asked (before resolution) or a keyboard folder.
#[salsa::interned(debug)]
pub struct KeyboardName<'db> {
    #[returns(ref)]
    pub name: String,
}

/// A query's answer and every read that made it.
#[derive(Debug, Clone)]
pub struct Traced<T> {
    pub value: T,
    pub reads: Arc<Vec<Read>>,
}

#[salsa::db]
pub trait InfoDbT: salsa::Database {
    fn tree_file(&self, path: &Path) -> TreeFile;
    fn tree_folder(&self, path: &Path) -> TreeFolder;
    /// An engine of the tree whose mapping tables and schemas the queries'
    /// engines share (renewed when `data/` changes).
    fn base_engine(&self) -> Arc<Engine>;
}

/// Runs `f` with reads served by `db`'s inputs; returns its answer and the
/// reads it made.
fn traced<T>(db: &dyn InfoDbT, f: impl FnOnce() -> T) -> Traced<T> {
    let (value, read) = reads::record(|| reads::with_source(&DbSource(db), f));
    Traced {
        value,
        reads: Arc::new(read),
    }
}

/// QMK's `keyboard_folder(requested)` (see [`Engine::keyboard_folder`]).
#[salsa::tracked(returns(ref), no_eq)]
pub fn keyboard_folder<'db>(
    db: &'db dyn InfoDbT,
    requested: KeyboardName<'db>,
) -> Traced<Result<Option<String>, TreeError>> {
    // Resolution reads the tree alone (no memo table of the engine's).
    let engine = db.base_engine();
    traced(db, || engine.resolve_keyboard_folder(requested.name(db)))
}

/// A keyboard folder's merged info (QMK's `info_json`).
#[salsa::tracked(returns(ref), no_eq)]
pub fn keyboard_info<'db>(db: &'db dyn InfoDbT, keyboard: KeyboardName<'db>) -> Traced<Info> {
    // A fresh engine: its memo tables live for this execution only, while
    // salsa keeps the answer; the mapping tables and schemas are shared.
    let engine = db.base_engine().renewed();
    traced(db, || engine.merge_info_json(keyboard.name(db)))
}

/// Serves reads from the database's inputs (and so records dependencies).
struct DbSource<'a>(&'a dyn InfoDbT);

impl reads::Source for DbSource<'_> {
    fn read(&self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self
            .0
            .tree_file(path)
            .bytes(self.0)
            .as_deref()
            .map(<[u8]>::to_vec))
    }

    fn is_file(&self, path: &Path) -> bool {
        self.0.tree_file(path).bytes(self.0).is_some()
    }

    fn folder_names(&self, path: &Path) -> Vec<String> {
        self.0.tree_folder(path).names(self.0).as_ref().clone()
    }

    fn replayed(&self, reads: &[Read]) {
        // A memo (the shared mapping tables and schemas) handed out what
        // these reads made: the query depends on them too.
        for r in reads {
            match r {
                Read::File { path, .. } | Read::IsFile { path, .. } => {
                    self.0.tree_file(path).bytes(self.0);
                }
                Read::Folder { path, .. } => {
                    self.0.tree_folder(path).names(self.0);
                }
            }
        }
    }
}

#[derive(Default)]
struct Inputs {
    files: HashMap<PathBuf, (TreeFile, Option<FileStamp>)>,
    folders: HashMap<PathBuf, TreeFolder>,
}

/// The database of the info queries of one tree.
#[salsa::db]
#[derive(Clone)]
pub struct InfoDb {
    storage: salsa::Storage<Self>,
    /// The tree's root (the base engine's).
    root: PathBuf,
    base: Arc<Mutex<Arc<Engine>>>,
    inputs: Arc<Mutex<Inputs>>,
    /// Names of the queries that executed, for tests and `--explain`-style
    /// questions.
    executed: Arc<Mutex<Vec<String>>>,
}

#[salsa::db]
impl salsa::Database for InfoDb {}

/// `data/` changes rarely (and renews the shared tables when it does).
fn durability(path: &Path, root: &Path) -> Durability {
    if path.starts_with(root.join("data")) {
        Durability::HIGH
    } else {
        Durability::LOW
    }
}

fn read_bytes(path: &Path) -> Option<Arc<[u8]>> {
    reads::read_file(path).ok().flatten().map(Arc::from)
}

impl InfoDb {
    /// A database for the engine's tree.
    pub fn new(engine: &Engine) -> InfoDb {
        let (storage, executed) = crate::db::logging_storage();
        InfoDb {
            storage,
            root: engine.tree().root().to_path_buf(),
            base: Arc::new(Mutex::new(Arc::new(engine.renewed().without_queries()))),
            inputs: Arc::default(),
            executed,
        }
    }

    /// The queries that executed since the last call, in order.
    pub fn take_executed(&self) -> Vec<String> {
        std::mem::take(&mut *self.executed.lock().unwrap())
    }

    /// Reads again every file and folder the queries read; sets the inputs
    /// that changed (a file whose stamp is unchanged, and too old for an
    /// edit within the same clock tick to hide behind it, is not read).
    /// Returns how many changed.
    pub fn refresh(&mut self) -> usize {
        let root = self.root.clone();
        let (files, folders) = {
            let inputs = self.inputs.lock().unwrap();
            let files: Vec<_> = inputs
                .files
                .iter()
                .map(|(p, (f, s))| (p.clone(), *f, *s))
                .collect();
            let folders: Vec<_> = inputs
                .folders
                .iter()
                .map(|(p, f)| (p.clone(), *f))
                .collect();
            (files, folders)
        };
        let mut changed = 0;
        let mut data_changed = false;
        for (path, file, old) in files {
            let now = stamp(&path);
            if now.is_some() && now == old && !old.as_ref().is_some_and(recent) {
                continue;
            }
            let bytes = read_bytes(&path);
            self.inputs
                .lock()
                .unwrap()
                .files
                .insert(path.clone(), (file, now));
            if *file.bytes(self) != bytes {
                data_changed |= path.starts_with(root.join("data"));
                file.set_bytes(self)
                    .with_durability(durability(&path, &root))
                    .to(bytes);
                changed += 1;
            }
        }
        for (path, folder) in folders {
            let names = reads::folder_names(&path);
            if **folder.names(self) != names {
                data_changed |= path.starts_with(root.join("data"));
                folder
                    .set_names(self)
                    .with_durability(durability(&path, &root))
                    .to(Arc::new(names));
                changed += 1;
            }
        }
        if data_changed {
            // The shared tables were read from the old `data/`.
            let mut base = self.base.lock().unwrap();
            *base = Arc::new(Engine::new(base.tree().clone()));
        }
        changed
    }
}

#[salsa::db]
impl InfoDbT for InfoDb {
    fn tree_file(&self, path: &Path) -> TreeFile {
        if let Some((f, _)) = self.inputs.lock().unwrap().files.get(path) {
            return *f;
        }
        // IO at the edge: the input is read once, when first asked for.
        let before = stamp(path);
        let f = TreeFile::builder(path.to_path_buf(), read_bytes(path))
            .durability(durability(path, &self.root))
            .new(self);
        self.inputs
            .lock()
            .unwrap()
            .files
            .entry(path.to_path_buf())
            .or_insert((f, before))
            .0
    }

    fn tree_folder(&self, path: &Path) -> TreeFolder {
        if let Some(f) = self.inputs.lock().unwrap().folders.get(path) {
            return *f;
        }
        let f = TreeFolder::builder(path.to_path_buf(), Arc::new(reads::folder_names(path)))
            .durability(durability(path, &self.root))
            .new(self);
        *self
            .inputs
            .lock()
            .unwrap()
            .folders
            .entry(path.to_path_buf())
            .or_insert(f)
    }

    fn base_engine(&self) -> Arc<Engine> {
        self.base.lock().unwrap().clone()
    }
}

/// The info queries for an [`Engine`] (see [`Engine::with_queries`]),
/// shared by the threads that generate: each query runs on its own handle
/// of the database (salsa's way to run queries in parallel), so two
/// keyboards merge at once.
pub struct InfoQueryHost {
    db: Mutex<InfoDb>,
}

impl InfoQueryHost {
    pub fn new(engine: &Engine) -> Arc<InfoQueryHost> {
        Arc::new(InfoQueryHost {
            db: Mutex::new(InfoDb::new(engine)),
        })
    }

    /// See [`InfoDb::refresh`]. Between builds: a query still running on
    /// another thread would be cancelled.
    pub fn refresh(&self) -> usize {
        self.db.lock().unwrap().refresh()
    }

    /// See [`InfoDb::take_executed`].
    pub fn take_executed(&self) -> Vec<String> {
        self.db.lock().unwrap().take_executed()
    }

    /// `query`'s answer for `name`, on a handle of its own; the reads that
    /// made it are replayed to the caller's recording.
    fn ask<T: Clone>(
        &self,
        name: &str,
        query: impl for<'db> FnOnce(&'db dyn InfoDbT, KeyboardName<'db>) -> &'db Traced<T>,
    ) -> T {
        let db = self.db.lock().unwrap().clone();
        let name = KeyboardName::new(&db, name.to_string());
        let answer = query(&db, name);
        reads::replay(&answer.reads);
        answer.value.clone()
    }
}

impl InfoQueries for InfoQueryHost {
    fn keyboard_folder(&self, requested: &str) -> Result<Option<String>, TreeError> {
        self.ask(requested, keyboard_folder)
    }

    fn info_json(&self, keyboard: &str) -> Info {
        self.ask(keyboard, keyboard_info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfab_tree::Tree;

    fn copy_dir(src: &Path, dest: &Path) {
        std::fs::create_dir_all(dest).unwrap();
        for e in std::fs::read_dir(src).unwrap() {
            let e = e.unwrap();
            let to = dest.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to);
            } else {
                std::fs::copy(e.path(), to).unwrap();
            }
        }
    }

    /// The fixture tree in a temp folder, and an engine answering through
    /// the info queries.
    fn setup() -> (tempfile::TempDir, PathBuf, Engine, Arc<InfoQueryHost>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tree"),
            &root,
        );
        let root = std::fs::canonicalize(root).unwrap();
        let engine = Engine::new(Tree::open(&root).unwrap());
        let host = InfoQueryHost::new(&engine);
        (dir, root, engine.with_queries(host.clone()), host)
    }

    /// Writes `text` to `path` so that its stamp surely changes.
    fn edit(path: &Path, text: &str) {
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(path, text).unwrap();
    }

    fn manufacturer(info: &Info) -> Option<&str> {
        info.value.get("manufacturer")?.as_str()
    }

    #[test]
    fn a_keyboard_merges_again_only_when_a_file_it_read_changed() {
        let (_dir, root, engine, host) = setup();
        let plain = Engine::new(Tree::open(&root).unwrap());
        let solo = engine.info_json("solo");
        assert_eq!(solo.value, plain.info_json("solo").value);
        assert_eq!(manufacturer(&solo), Some("keyfab fixtures"));
        engine.info_json("chain/mid/final");
        assert_eq!(host.take_executed(), ["keyboard_info", "keyboard_info"]);

        // Asked again: remembered.
        engine.info_json("solo");
        assert!(host.take_executed().is_empty());

        // A keymap is no input of the keyboard's info.
        edit(
            &root.join("keyboards/solo/keymaps/default/keymap.c"),
            "// edited\n",
        );
        assert_eq!(host.refresh(), 0);
        engine.info_json("solo");
        assert!(host.take_executed().is_empty());

        // Its keyboard.json is: solo merges again, the other keyboard not.
        let json = root.join("keyboards/solo/keyboard.json");
        let text = std::fs::read_to_string(&json).unwrap();
        edit(&json, &text.replace("keyfab fixtures", "keyfab edited"));
        assert_eq!(host.refresh(), 1);
        let solo = engine.info_json("solo");
        engine.info_json("chain/mid/final");
        assert_eq!(host.take_executed(), ["keyboard_info"]);
        assert_eq!(manufacturer(&solo), Some("keyfab edited"));
    }

    /// An edit that keeps the file's length and mtime (a second write in
    /// the same clock tick, a tool restoring times) is still seen.
    #[test]
    fn an_edit_that_keeps_length_and_mtime_is_seen() {
        let (_dir, root, engine, host) = setup();
        let json = root.join("keyboards/solo/keyboard.json");
        let text = std::fs::read_to_string(&json).unwrap();
        engine.info_json("solo");
        host.take_executed();
        let mtime = std::fs::metadata(&json).unwrap().modified().unwrap();
        std::fs::write(&json, text.replace("keyfab fixtures", "keyfab fixturez")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&json)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(host.refresh(), 1);
        let solo = engine.info_json("solo");
        assert_eq!(host.take_executed(), ["keyboard_info"]);
        assert_eq!(manufacturer(&solo), Some("keyfab fixturez"));
    }

    #[test]
    fn a_new_config_h_in_the_chain_is_seen() {
        let (_dir, root, engine, host) = setup();
        let before = engine.info_json("chain/mid/final");
        host.take_executed();
        assert_eq!(before.value.get("debounce"), None);
        edit(
            &root.join("keyboards/chain/mid/config.h"),
            "#pragma once\n#define DEBOUNCE 17\n",
        );
        assert!(host.refresh() >= 1);
        let after = engine.info_json("chain/mid/final");
        assert_eq!(host.take_executed(), ["keyboard_info"]);
        assert_eq!(after.value.get("debounce"), Some(&serde_json::json!(17)));
        let plain = Engine::new(Tree::open(&root).unwrap());
        assert_eq!(after.value, plain.info_json("chain/mid/final").value);
    }

    #[test]
    fn answers_replay_the_reads_that_made_them() {
        let (_dir, root, engine, _host) = setup();
        let json = root.join("keyboards/solo/keyboard.json");
        let has_json = |reads: &[Read]| {
            reads
                .iter()
                .any(|r| matches!(r, Read::File { path, .. } if *path == json))
        };
        let (_, first) = reads::record(|| engine.info_json("solo"));
        assert!(has_json(&first));
        // Remembered, yet the caller's recording has the same reads.
        let (_, again) = reads::record(|| engine.info_json("solo"));
        assert_eq!(first, again);
        let plain = Engine::new(Tree::open(&root).unwrap());
        let (_, direct) = reads::record(|| plain.info_json("solo"));
        let sorted = |v: &[Read]| {
            let mut v: Vec<String> = v.iter().map(|r| format!("{r:?}")).collect();
            v.sort();
            v
        };
        assert_eq!(sorted(&first), sorted(&direct));
    }

    #[test]
    fn resolution_follows_aliases_and_remembers() {
        let (_dir, root, engine, host) = setup();
        let plain = Engine::new(Tree::open(&root).unwrap());
        for name in ["solo", "chain/mid/final", "no/such/board"] {
            let ours = engine.keyboard_folder(name).map_err(|e| e.to_string());
            let direct = plain.keyboard_folder(name).map_err(|e| e.to_string());
            assert_eq!(ours, direct, "{name}");
        }
        assert_eq!(
            engine.keyboard_folder("solo").unwrap().as_deref(),
            Some("solo")
        );
        host.take_executed();
        engine.keyboard_folder("solo").unwrap();
        assert!(host.take_executed().is_empty());
    }
}

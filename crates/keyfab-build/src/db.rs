//! The salsa database: the incremental spine of a build.
//!
//! Inputs are what the build reads from the outside world, each read lazily
//! the first time a query asks for it: a file's content digest
//! ([`SourceFile`]), a folder's listing ([`Listing`], so a new `config.h`
//! that shadows another one is a change), a program's identity
//! ([`Toolchain`]: resolved path + `--version` + binary digest, high
//! durability), and per target the plan make last gave ([`TargetInput`]).
//! Tracked functions derive from them what a build needs: the inputs a plan
//! depends on ([`plan_inputs`]), whether the plan on record still holds
//! ([`plan_fresh`]), and each object's direct-mode key ([`object_key`]).
//!
//! Architecture invariant: tracked functions do no IO and spawn nothing. The
//! only IO here is at the edge, in [`BuildDb`]'s input constructors (as in
//! salsa's lazy-input example) and in [`BuildDb::refresh`]; make and the
//! compilers are run by [`crate::plan_cache`] and [`crate::exec`].

use crate::exec::ToolProbe;
use crate::generated::GeneratedRecord;
use crate::plan::{Plan, Step};
use keyfab_cas::{Digest, DirectKey};
use salsa::{Durability, Setter};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A file's content, as its digest (`None`: absent or unreadable).
#[salsa::input(debug)]
pub struct SourceFile {
    #[returns(ref)]
    pub path: PathBuf,
    #[returns(copy)]
    pub digest: Option<Digest>,
}

/// A folder's entries, sorted, sub-folders ending in `/` (empty when the
/// folder does not exist).
#[salsa::input(debug)]
pub struct Listing {
    #[returns(ref)]
    pub path: PathBuf,
    #[returns(ref)]
    pub names: Vec<String>,
}

/// A program's identity (`None`: not found on PATH).
#[salsa::input(debug)]
pub struct Toolchain {
    #[returns(ref)]
    pub program: String,
    #[returns(copy)]
    pub identity: Option<Digest>,
}

/// One build target and the plan make last gave for it.
#[salsa::input(debug)]
pub struct TargetInput {
    #[returns(ref)]
    pub name: String,
    /// Tree-relative folders whose listings and files the plan depends on.
    #[returns(ref)]
    pub folders: Vec<PathBuf>,
    /// Further files the plan depends on (make, keyfab itself, …).
    #[returns(ref)]
    pub files: Vec<PathBuf>,
    #[returns(ref)]
    pub planned: Option<Arc<PlanRecord>>,
}

/// A generator call (by its head key, see [`crate::generated`]) and the
/// outputs it gave before, newest first, each with what it read.
#[salsa::input(debug)]
pub struct GeneratorInput {
    #[returns(copy)]
    pub head: keyfab_cas::ActionKey,
    #[returns(ref)]
    pub known: Arc<Vec<GeneratedRecord>>,
}

/// A plan and what it was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRecord {
    pub plan: Plan,
    /// [`plan_inputs`] when make planned.
    pub inputs: Vec<(PathBuf, Digest)>,
    /// The makefiles make read (tree-relative) and their digests.
    pub makefiles: Vec<(PathBuf, Digest)>,
    /// The compilers the plan runs and their identities then.
    pub compilers: Vec<(String, Digest)>,
}

/// One compile of a plan: what its direct-mode key is made of besides the
/// compiler's identity and the source's digest.
#[salsa::interned(debug)]
pub struct CompileUnit<'db> {
    #[returns(ref)]
    pub argv: Vec<String>,
    #[returns(ref)]
    pub source: String,
}

#[salsa::db]
pub trait Db: salsa::Database {
    /// The input for a file (tree-relative or absolute), read on first use.
    fn file(&self, path: &Path) -> SourceFile;
    /// The input for a folder's listing, read on first use.
    fn listing(&self, path: &Path) -> Listing;
    /// The input for a program's identity, computed on first use.
    fn tool(&self, program: &str) -> Toolchain;
    /// The tree's root (compile keys include the working folder).
    fn root(&self) -> &Path;
    /// The environment variables that change what compilers produce.
    fn compiler_env(&self) -> &BTreeMap<String, String>;
}

/// Inputs created so far, by path or program name; shared by clones.
#[derive(Default)]
struct Inputs {
    files: HashMap<PathBuf, SourceFile>,
    listings: HashMap<PathBuf, Listing>,
    tools: HashMap<String, Toolchain>,
    targets: HashMap<String, TargetInput>,
    generators: HashMap<keyfab_cas::ActionKey, GeneratorInput>,
}

/// What we compare to decide a file may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
}

/// What running each program told this process, with the binary it was
/// run for: a sweep's databases run `--version` once per program, not once
/// per target.
static TOOLS: std::sync::LazyLock<Mutex<ToolMemo>> = std::sync::LazyLock::new(Mutex::default);
/// Program → (resolved path, binary digest, probe).
type ToolMemo = HashMap<String, (PathBuf, Digest, Arc<ToolProbe>)>;

/// A program's identity (path + `--version` + binary digest + a driver's
/// helper programs and their digests). The program runs again only when it
/// resolves to another binary; its helpers are hashed through the stat
/// cache each time, so a new `as` or `ld` is seen at once.
pub fn tool_identity(program: &str) -> Option<Digest> {
    identify(program, true)
}

/// The program's identity when this process has identified it already (a
/// few `stat`s); `None` while it is being identified, or never was. For
/// callers that have something better to do than wait: a probe's test
/// answers make sooner than a cold identity (~40 ms of compiler runs and
/// hashing) does.
pub fn known_tool_identity(program: &str) -> Option<Digest> {
    identify(program, false)
}

/// [`tool_identity`]; with `find` false, only from what this process knows.
fn identify(program: &str, find: bool) -> Option<Digest> {
    let (path, binary, probe) = probed(program, find)?;
    Some(probe.identity(&path, binary, file_digest))
}

/// What the program prints on stdout for `--version` (identifying it
/// first, when this process has not): what QMK's `compiler.txt` holds.
pub fn tool_version(program: &str) -> Option<Vec<u8>> {
    Some(probed(program, true)?.2.version_output.clone())
}

/// The program's resolved path, binary digest and probe, as this process
/// knows them (its binary unchanged); with `find`, identified now when
/// it does not.
fn probed(program: &str, find: bool) -> Option<(PathBuf, Digest, Arc<ToolProbe>)> {
    let path = crate::exec::resolve_program(program)?;
    let binary = file_digest(&path)?;
    // The memo holds programs whose helpers were hashed already.
    let memo = |program: &str| match TOOLS.lock().unwrap().get(program) {
        Some((p, b, probe)) if *p == path && *b == binary => Some(probe.clone()),
        _ => None,
    };
    if let Some(probe) = memo(program) {
        return Some((path, binary, probe));
    }
    if !find {
        return None;
    }
    // One thread identifies a program, others wait for it: a plan's
    // prefetched probes all ask at once, and each identity runs the
    // compiler and hashes its ~12 MB helpers.
    let gate = IDENTIFYING
        .lock()
        .unwrap()
        .entry(program.to_string())
        .or_default()
        .clone();
    let _identifying = gate.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(probe) = memo(program) {
        return Some((path, binary, probe));
    }
    let probe = match remembered_probe(program, &path, &binary) {
        Some(probe) => probe,
        None => {
            let probe = ToolProbe::run(program, &path).ok()?;
            remember_probe(program, &path, &binary, &probe);
            probe
        }
    };
    // Its helpers hashed before it is known (see the memo above).
    probe.helpers(file_digest);
    let probe = Arc::new(probe);
    TOOLS
        .lock()
        .unwrap()
        .insert(program.to_string(), (path.clone(), binary, probe.clone()));
    Some((path, binary, probe))
}

/// Program → the lock its first identification holds (see [`tool_identity`]).
static IDENTIFYING: std::sync::LazyLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> =
    std::sync::LazyLock::new(Mutex::default);

/// The files a program's identity covers besides its binary (a driver's
/// `as`, `ld`, …) that exist, with their digests now.
pub(crate) fn tool_helpers(program: &str) -> Vec<(PathBuf, Digest)> {
    let Some((_, _, probe)) = TOOLS.lock().unwrap().get(program).cloned() else {
        return Vec::new();
    };
    probe
        .helpers(file_digest)
        .into_iter()
        .filter_map(|(_, path, digest)| Some((path, digest?)))
        .collect()
}

/// Folder listings read in this process, by absolute path, with the
/// folder's stamp then: a sweep's targets share parent folders (QMK's
/// `keyboards/handwired` holds hundreds of keyboards).
static LISTINGS: std::sync::LazyLock<Mutex<ListingMemo>> = std::sync::LazyLock::new(Mutex::default);
type ListingMemo = HashMap<PathBuf, (FileStamp, Vec<String>)>;

/// A folder's entries, sorted; sub-folders end in `/` (from the entry's
/// type, no stat). Empty when the folder does not exist. Read again only
/// when the folder's stamp changed (entries added, removed or renamed) or
/// is too recent to trust.
fn folder_listing(abs: &Path) -> Vec<String> {
    let now = stamp(abs);
    if let (Some(now), Some((old, names))) = (now, LISTINGS.lock().unwrap().get(abs)) {
        if *old == now && !recent(old) {
            return names.clone();
        }
    }
    // The form generator calls record their folder reads in.
    let names = keyfab_tree::reads::folder_names(abs);
    if let Some(now) = now {
        LISTINGS
            .lock()
            .unwrap()
            .insert(abs.to_path_buf(), (now, names.clone()));
    }
    names
}

/// The cache entry of what running a program told: by the name it is run
/// by (its `--version` says it), its path, binary digest and the variables
/// that move a driver's program search (what it prints is a function of
/// those), so a process does not run `--version` for a compiler an earlier
/// one probed.
fn probe_key(program: &str, path: &Path, binary: &Digest) -> keyfab_cas::ActionKey {
    let env = ["COMPILER_PATH", "GCC_EXEC_PREFIX"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    keyfab_cas::CommandKey {
        kind: "tool-probe".into(),
        tool: *binary,
        argv: vec![program.into(), path.as_os_str().to_owned()],
        cwd: PathBuf::new(),
        env,
        inputs: Vec::new(),
    }
    .key()
}

fn remembered_probe(program: &str, path: &Path, binary: &Digest) -> Option<ToolProbe> {
    let (cas, _) = STAT_CACHE.get()?;
    let result = cas.get_action(&probe_key(program, path, binary)).ok()??;
    let version = cas.get_blob(&result.output("version")?.digest).ok()??;
    let helpers = cas.get_blob(&result.output("helpers")?.digest).ok()??;
    ToolProbe::from_parts(version, &helpers)
}

fn remember_probe(program: &str, path: &Path, binary: &Digest, probe: &ToolProbe) {
    if let Some((cas, _)) = STAT_CACHE.get() {
        let helpers = probe.helpers_text();
        let action = keyfab_cas::NewAction::success(vec![
            keyfab_cas::NewOutput::bytes("version", &probe.version_output),
            keyfab_cas::NewOutput::bytes("helpers", helpers.as_bytes()),
        ]);
        // A hint: failing to store it only costs a few runs of the program.
        let _ = cas.put_action(&probe_key(program, path, binary), &action);
    }
}

/// What each file's digest was computed from, by absolute path, shared by
/// every database of the process (a sweep's targets share core files), so
/// an unchanged file is hashed once.
static DIGESTS: std::sync::LazyLock<Mutex<DigestMemo>> = std::sync::LazyLock::new(Mutex::default);
type DigestMemo = HashMap<PathBuf, (FileStamp, Option<Digest>)>;

/// The cache whose stat table backs [`file_digest`], with the process's
/// clock (stamps from after it started are never trusted there).
static STAT_CACHE: std::sync::OnceLock<(Arc<keyfab_cas::LocalCas>, keyfab_cas::RunClock)> =
    std::sync::OnceLock::new();

/// Backs every database's file digests with `cas`'s stat table from now on
/// in this process (the first call wins), so files unchanged since an
/// earlier process are not hashed again.
pub fn use_stat_cache(cas: Arc<keyfab_cas::LocalCas>) {
    let _ = STAT_CACHE.set((cas, keyfab_cas::RunClock::now()));
}

/// A file's digest (`None`: absent, a folder, unreadable), hashed only when
/// its stamp changed or is too recent to trust.
fn file_digest(abs: &Path) -> Option<Digest> {
    if let Some(own) = own_exe_identity(abs) {
        return Some(own);
    }
    let now = stamp(abs);
    if let Some((old, digest)) = DIGESTS.lock().unwrap().get(abs) {
        // A stamp from the last two seconds may hide a second write with
        // the same size in the same timestamp tick: hash those again.
        if Some(*old) == now && !recent(old) {
            return *digest;
        }
    }
    let digest = now
        .filter(|_| abs.is_file())
        .and_then(|_| match STAT_CACHE.get() {
            // The cache's stat table remembers digests across processes (keyfab's
            // own 90 MB binary is a plan input: hashing it each time costs more
            // than the whole rest of a no-op build).
            Some((cas, clock)) => cas.file_digest(abs, clock).ok(),
            None => std::fs::read(abs).ok().map(|b| Digest::of(&b)),
        });
    let mut memo = DIGESTS.lock().unwrap();
    match now {
        Some(s) => memo.insert(abs.to_path_buf(), (s, digest)),
        None => memo.remove(abs),
    };
    digest
}

/// This running keyfab's identity when `abs` is its executable: the GNU
/// build-id the linker wrote (a hash of the linked output), with the
/// file's size. Hashing the binary itself — ~90 MB, most of it debug
/// info — cost ~40 ms of every build with a fresh cache. `None` for any
/// other file, or when the executable has no build-id (then it is hashed
/// like any file).
fn own_exe_identity(abs: &Path) -> Option<Digest> {
    static OWN: std::sync::OnceLock<Option<(PathBuf, Digest)>> = std::sync::OnceLock::new();
    let (path, digest) = OWN
        .get_or_init(|| {
            let exe = std::env::current_exe().ok()?;
            let file = std::fs::File::open(&exe).ok()?;
            let size = file.metadata().ok()?.len();
            let id = elf_build_id(file)?;
            let mut named = b"gnu-build-id\0".to_vec();
            named.extend_from_slice(&id);
            named.extend_from_slice(&size.to_le_bytes());
            Some((exe, Digest::of(&named)))
        })
        .as_ref()?;
    (path == abs).then_some(*digest)
}

/// The GNU build-id note of an ELF file, if it has one of at least 8 bytes
/// (`--build-id=fast` is 8; sha1, md5 and uuid are longer). Reads only the
/// headers and the note, not the whole file.
pub fn elf_build_id(file: std::fs::File) -> Option<Vec<u8>> {
    use object::Object as _;
    let cache = object::ReadCache::new(file);
    let elf = object::File::parse(&cache).ok()?;
    let id = elf.build_id().ok()??;
    (id.len() >= 8).then(|| id.to_vec())
}

pub(crate) fn recent(stamp: &FileStamp) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    now - stamp.mtime_ns.max(stamp.ctime_ns) < 2_000_000_000
}

pub(crate) fn stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        ino: m.ino(),
    })
}

/// A database's storage that notes the name of each tracked function that
/// executes, in the list returned with it.
pub(crate) fn logging_storage<D: salsa::Database>() -> (salsa::Storage<D>, Arc<Mutex<Vec<String>>>)
{
    let executed: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = executed.clone();
    let storage = salsa::Storage::new(Some(Box::new(move |event: salsa::Event| {
        if let salsa::EventKind::WillExecute { database_key } = event.kind {
            // `plan_fresh(Id(3))` → `plan_fresh`
            let text = format!("{database_key:?}");
            let name = text.split('(').next().unwrap_or_default().to_string();
            log.lock().unwrap().push(name);
        }
    })));
    (storage, executed)
}

/// The database of one keyfab process (a build, or a whole watch session).
#[salsa::db]
#[derive(Clone)]
pub struct BuildDb {
    storage: salsa::Storage<Self>,
    root: PathBuf,
    env: BTreeMap<String, String>,
    inputs: Arc<Mutex<Inputs>>,
    /// Names of the tracked functions that executed, when logging.
    executed: Arc<Mutex<Vec<String>>>,
}

#[salsa::db]
impl salsa::Database for BuildDb {}

impl BuildDb {
    /// Records the plan make gave for `target`.
    pub fn set_plan(&mut self, target: TargetInput, record: PlanRecord) {
        if target.planned(self).as_deref() != Some(&record) {
            target.set_planned(self).to(Some(Arc::new(record)));
        }
    }

    /// A database for the tree at `root`.
    pub fn new(root: &Path) -> BuildDb {
        let (storage, executed) = logging_storage();
        BuildDb {
            storage,
            root: root.to_path_buf(),
            env: crate::exec::compiler_env(),
            inputs: Arc::default(),
            executed,
        }
    }

    /// The tracked functions that executed since the last call, in order.
    pub fn take_executed(&self) -> Vec<String> {
        std::mem::take(&mut *self.executed.lock().unwrap())
    }

    fn abs(&self, path: &Path) -> PathBuf {
        self.root.join(path)
    }

    /// Core files (outside `keyboards/`, `layouts/`, `users/`, `.build/`)
    /// change rarely; a change to them is a bigger event anyway.
    fn durability(path: &Path) -> Durability {
        let volatile = path.is_absolute()
            || ["keyboards", "layouts", "users", ".build"]
                .iter()
                .any(|top| path.starts_with(top));
        if volatile {
            Durability::LOW
        } else {
            Durability::HIGH
        }
    }

    fn read_listing(&self, path: &Path) -> Vec<String> {
        folder_listing(&self.abs(path))
    }

    /// Re-reads the inputs for `changed` paths (tree-relative or absolute):
    /// the file, and the listing of its folder. Only inputs whose value
    /// really changed are set, so an unchanged save re-runs nothing.
    /// Returns how many inputs changed.
    pub fn refresh(&mut self, changed: &[PathBuf]) -> usize {
        let mut set = 0;
        let mut dirs = std::collections::BTreeSet::new();
        for path in changed {
            let rel = path.strip_prefix(&self.root).unwrap_or(path).to_path_buf();
            let file = self.inputs.lock().unwrap().files.get(&rel).copied();
            if let Some(file) = file {
                let digest = file_digest(&self.abs(&rel));
                if file.digest(self) != digest {
                    file.set_digest(self)
                        .with_durability(Self::durability(&rel))
                        .to(digest);
                    set += 1;
                }
            }
            // Its folder's listing (added, deleted), and its own when it is a
            // folder (a branch switch renames whole trees).
            dirs.insert(rel.parent().map(Path::to_path_buf).unwrap_or_default());
            dirs.insert(rel);
        }
        for dir in dirs {
            let Some(listing) = self.inputs.lock().unwrap().listings.get(&dir).copied() else {
                continue;
            };
            let names = self.read_listing(&dir);
            if *listing.names(self) != names {
                listing
                    .set_names(self)
                    .with_durability(Self::durability(&dir))
                    .to(names);
                set += 1;
            }
        }
        set
    }

    /// The programs' inputs made so far.
    fn toolchains(&self) -> Vec<Toolchain> {
        self.inputs
            .lock()
            .unwrap()
            .tools
            .values()
            .copied()
            .collect()
    }

    /// The program identities found so far.
    pub fn tool_identities(&self) -> Vec<(String, Digest)> {
        self.toolchains()
            .into_iter()
            .filter_map(|t| Some((t.program(self).clone(), t.identity(self)?)))
            .collect()
    }

    /// Re-reads every input known (after events may have been missed),
    /// program identities too: a compiler, assembler or linker upgraded
    /// while a watch runs sends no event in the tree. Unchanged files and
    /// programs cost a stat each.
    pub fn refresh_all(&mut self) -> usize {
        let paths: Vec<PathBuf> = {
            let inputs = self.inputs.lock().unwrap();
            inputs
                .files
                .keys()
                .chain(inputs.listings.keys())
                .cloned()
                .collect()
        };
        self.refresh(&paths) + self.refresh_tools()
    }

    /// Sets the identity of every program whose identity changed.
    fn refresh_tools(&mut self) -> usize {
        let mut set = 0;
        for t in self.toolchains() {
            let now = tool_identity(t.program(self));
            if t.identity(self) != now {
                t.set_identity(self)
                    .with_durability(Durability::HIGH)
                    .to(now);
                set += 1;
            }
        }
        set
    }

    /// The input of a generator call, made once per head key; `load` gives
    /// the outputs the cache knows for it (read when the input is made).
    pub fn generator(
        &self,
        head: keyfab_cas::ActionKey,
        load: impl FnOnce() -> Vec<GeneratedRecord>,
    ) -> GeneratorInput {
        if let Some(g) = self.inputs.lock().unwrap().generators.get(&head) {
            return *g;
        }
        let g = GeneratorInput::new(self, head, Arc::new(load()));
        self.inputs.lock().unwrap().generators.insert(head, g);
        g
    }

    /// Records an output a generator call just gave (first: newest).
    pub fn add_generated(&mut self, call: GeneratorInput, record: GeneratedRecord) {
        let known = call.known(self);
        if known.first() == Some(&record) {
            return;
        }
        let mut now = vec![record.clone()];
        now.extend(known.iter().filter(|r| **r != record).cloned());
        now.truncate(keyfab_cas::manifest::MAX_ENTRIES);
        call.set_known(self).to(Arc::new(now));
    }

    /// The input of a target, made once per name; its folders and files are
    /// updated when they differ (a keymap that moved).
    ///
    /// Then [`plan_fresh`] says whether make must plan again, and
    /// [`BuildDb::set_plan`] records what it planned.
    pub fn target(
        &mut self,
        name: &str,
        folders: Vec<PathBuf>,
        files: Vec<PathBuf>,
    ) -> TargetInput {
        let existing = self.inputs.lock().unwrap().targets.get(name).copied();
        match existing {
            Some(t) => {
                if *t.folders(self) != folders {
                    t.set_folders(self).to(folders);
                }
                if *t.files(self) != files {
                    t.set_files(self).to(files);
                }
                t
            }
            None => {
                let t = TargetInput::new(self, name.to_string(), folders, files, None);
                self.inputs
                    .lock()
                    .unwrap()
                    .targets
                    .insert(name.to_string(), t);
                t
            }
        }
    }
}

#[salsa::db]
impl Db for BuildDb {
    fn file(&self, path: &Path) -> SourceFile {
        if let Some(f) = self.inputs.lock().unwrap().files.get(path) {
            return *f;
        }
        let digest = file_digest(&self.abs(path));
        let mut inputs = self.inputs.lock().unwrap();
        if let Some(f) = inputs.files.get(path) {
            return *f;
        }
        let f = SourceFile::builder(path.to_path_buf(), digest)
            .digest_durability(Self::durability(path))
            .new(self);
        inputs.files.insert(path.to_path_buf(), f);
        f
    }

    fn listing(&self, path: &Path) -> Listing {
        let mut inputs = self.inputs.lock().unwrap();
        if let Some(l) = inputs.listings.get(path) {
            return *l;
        }
        let names = self.read_listing(path);
        let l = Listing::builder(path.to_path_buf(), names)
            .names_durability(Self::durability(path))
            .new(self);
        inputs.listings.insert(path.to_path_buf(), l);
        l
    }

    fn tool(&self, program: &str) -> Toolchain {
        if let Some(t) = self.inputs.lock().unwrap().tools.get(program) {
            return *t;
        }
        // Outside the lock: `--version` runs a process.
        let identity = tool_identity(program);
        let mut inputs = self.inputs.lock().unwrap();
        if let Some(t) = inputs.tools.get(program) {
            return *t;
        }
        let t = Toolchain::builder(program.to_string(), identity)
            .identity_durability(Durability::HIGH)
            .new(self);
        inputs.tools.insert(program.to_string(), t);
        t
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn compiler_env(&self) -> &BTreeMap<String, String> {
        &self.env
    }
}

/// A folder's state as a plan sees it: its listing, and the digest of every
/// file in it but C sources (those are compiled, not read by make).
#[salsa::tracked(returns(ref))]
pub fn folder_inputs(db: &dyn Db, listing: Listing) -> Vec<(PathBuf, Digest)> {
    let folder = listing.path(db);
    let names = listing.names(db);
    let mut out = vec![(folder.join("."), Digest::of(names.join("\n").as_bytes()))];
    for name in names {
        // C sources are compiled, not read by make; folders are in the listing.
        if name.ends_with(".c") || name.ends_with('/') {
            continue;
        }
        let path = folder.join(name);
        if let Some(d) = db.file(&path).digest(db) {
            out.push((path, d));
        }
    }
    out
}

/// Everything a target's plan depends on besides the makefiles make read:
/// the files named by the target, and the listings and files of its
/// folders and of `data/mappings` and `data/schemas`.
#[salsa::tracked(returns(ref))]
pub fn plan_inputs(db: &dyn Db, target: TargetInput) -> Vec<(PathBuf, Digest)> {
    let mut out = Vec::new();
    for f in target.files(db) {
        let d = db.file(f).digest(db).unwrap_or_else(|| Digest::of(b""));
        out.push((f.clone(), d));
    }
    let fixed = [
        PathBuf::from("data/mappings"),
        PathBuf::from("data/schemas"),
    ];
    for folder in target.folders(db).iter().chain(&fixed) {
        out.extend(folder_inputs(db, db.listing(folder)).iter().cloned());
    }
    out
}

/// Whether the plan on record still holds: made from the same
/// [`plan_inputs`], every makefile make read unchanged, and the same
/// compilers (their `cc-option` answers shaped the flags).
#[salsa::tracked(returns(copy))]
pub fn plan_fresh(db: &dyn Db, target: TargetInput) -> bool {
    let Some(record) = target.planned(db) else {
        return false;
    };
    record.inputs == *plan_inputs(db, target)
        && record
            .makefiles
            .iter()
            .all(|(p, d)| db.file(p).digest(db) == Some(*d))
        // A compiler missing then (not identified, so not recorded) may be
        // installed now: its probes would answer otherwise.
        && record.compilers.len() == record.plan.compilers().len()
        && record
            .compilers
            .iter()
            .all(|(c, d)| db.tool(c).identity(db) == Some(*d))
}

/// The output of a generator call that still holds (the action holding
/// it): the newest one known whose every read is unchanged (files by
/// digest, presence, folder listings). `None`: the call must run.
#[salsa::tracked(returns(copy))]
pub fn generated(db: &dyn Db, call: GeneratorInput) -> Option<keyfab_cas::ActionKey> {
    use crate::generated::{absent, decode_read, listing_digest, present, ReadKind};
    let holds = |(encoded, want): &(PathBuf, Digest)| {
        let Some((kind, path)) = decode_read(encoded) else {
            return false;
        };
        match kind {
            ReadKind::File => db.file(path).digest(db).unwrap_or_else(absent) == *want,
            ReadKind::IsFile => {
                let yes = db.file(path).digest(db).is_some();
                (if yes { present() } else { absent() }) == *want
            }
            ReadKind::Folder => listing_digest(db.listing(path).names(db)) == *want,
        }
    };
    call.known(db)
        .iter()
        .find(|r| r.reads.iter().all(holds))
        .map(|r| r.action)
}

/// An object's direct-mode key and the source digest it was made from (the
/// executor uses the key only while the source still has that digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectKey {
    pub key: keyfab_cas::ActionKey,
    pub source: Digest,
}

/// The direct-mode key of one compile: compiler identity, argv, working
/// folder, the compiler environment and the source's digest. Headers are
/// not in it: the executor checks them against the key's manifest.
#[salsa::tracked(returns(copy))]
pub fn object_key<'db>(db: &'db dyn Db, unit: CompileUnit<'db>) -> Option<ObjectKey> {
    let argv = unit.argv(db);
    let compiler = db.tool(argv.first()?).identity(db)?;
    let source = db.file(Path::new(unit.source(db))).digest(db)?;
    let key = DirectKey {
        compiler,
        argv: argv[1..].iter().map(OsString::from).collect(),
        cwd: crate::exec::key_cwd(argv, db.root()),
        env: db.compiler_env().clone(),
        source,
    }
    .key();
    Some(ObjectKey { key, source })
}

/// The direct-mode keys of every compile of the target's plan, by object.
#[salsa::tracked(returns(ref))]
pub fn object_keys(db: &dyn Db, target: TargetInput) -> BTreeMap<String, ObjectKey> {
    let mut out = BTreeMap::new();
    let Some(record) = target.planned(db) else {
        return out;
    };
    for step in record.plan.compiles() {
        if let Step::Compile {
            source,
            object,
            argv,
            ..
        } = step
        {
            let unit = CompileUnit::new(db, argv.clone(), source.clone());
            if let Some(k) = object_key(db, unit) {
                out.insert(object.clone(), k);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The build-id the linker wrote, read back; none without one, none
    /// from a file that is no ELF.
    #[test]
    fn build_id_of_a_linked_program() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.c"), "int main(void){return 0;}\n").unwrap();
        let link = |id: &str, out: &str| {
            let ok = std::process::Command::new("cc")
                .arg(format!("-Wl,--build-id={id}"))
                .args(["m.c", "-o", out])
                .current_dir(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "cc failed");
            std::fs::File::open(dir.path().join(out)).unwrap()
        };
        let id = "0x00112233445566778899aabbccddeeff01234567";
        let want: Vec<u8> = (0..20)
            .map(|i| u8::from_str_radix(&id[2 + 2 * i..4 + 2 * i], 16).unwrap())
            .collect();
        assert_eq!(elf_build_id(link(id, "with")), Some(want));
        assert_eq!(elf_build_id(link("none", "without")), None);
        assert_eq!(
            elf_build_id(std::fs::File::open(dir.path().join("m.c")).unwrap()),
            None
        );
    }

    /// This process's own executable is known by its build-id (the test
    /// binary has one, as every binary cargo links here), any other file
    /// by its bytes.
    #[test]
    fn own_executable_is_known_by_its_build_id() {
        let exe = std::env::current_exe().unwrap();
        let own = own_exe_identity(&exe).expect("cargo links with a build-id");
        assert_ne!(own, Digest::of(&std::fs::read(&exe).unwrap()));
        assert_eq!(file_digest(&exe), Some(own));
        assert_eq!(own_exe_identity(Path::new("/bin/sh")), None);
    }

    fn tree() -> (tempfile::TempDir, BuildDb) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("kb")).unwrap();
        std::fs::write(dir.path().join("kb/a.c"), "int a;\n").unwrap();
        std::fs::write(dir.path().join("kb/info.json"), "{}\n").unwrap();
        let db = BuildDb::new(dir.path());
        (dir, db)
    }

    #[test]
    fn object_key_is_the_executors_direct_key() {
        let (_dir, db) = tree();
        let argv: Vec<String> = ["cc", "-c", "kb/a.c", "-o", "a.o"]
            .map(String::from)
            .to_vec();
        let unit = CompileUnit::new(&db, argv.clone(), "kb/a.c".to_string());
        let got = object_key(&db, unit).expect("cc is installed (the fixture firmware needs it)");
        let source = Digest::of(b"int a;\n");
        let want = DirectKey {
            compiler: crate::exec::identify_tool("cc", |p| {
                Ok(Digest::of(&std::fs::read(p).unwrap()))
            })
            .unwrap(),
            argv: argv[1..].iter().map(OsString::from).collect(),
            cwd: PathBuf::new(),
            env: crate::exec::compiler_env(),
            source,
        }
        .key();
        assert_eq!(got, ObjectKey { key: want, source });
    }

    #[test]
    fn a_plan_holds_only_with_the_compilers_it_was_made_with() {
        let (_dir, mut db) = tree();
        let input = db.target("kb:km", vec![PathBuf::from("kb")], Vec::new());
        let compile = Step::Compile {
            source: "kb/a.c".into(),
            object: "a.o".into(),
            argv: ["cc", "-c", "kb/a.c", "-o", "a.o"]
                .map(String::from)
                .to_vec(),
            depfile_tmp: None,
            depfile: None,
        };
        let inputs = plan_inputs(&db, input).clone();
        let record = |compilers: Vec<(String, Digest)>| PlanRecord {
            plan: Plan {
                steps: vec![compile.clone()],
                ..Plan::default()
            },
            inputs: inputs.clone(),
            makefiles: Vec::new(),
            compilers,
        };
        let cc = tool_identity("cc").expect("cc is installed");
        let made = record(vec![("cc".into(), cc)]);
        db.set_plan(input, made);
        assert!(plan_fresh(&db, input));
        // Another compiler than the plan's, or one that was missing then.
        let other = record(vec![("cc".into(), Digest::of(b"another cc"))]);
        db.set_plan(input, other);
        assert!(!plan_fresh(&db, input));
        let missing = record(Vec::new());
        db.set_plan(input, missing);
        assert!(!plan_fresh(&db, input));
    }

    #[test]
    fn refresh_sets_only_what_changed() {
        let (dir, mut db) = tree();
        let folder = db.listing(Path::new("kb"));
        let before = folder_inputs(&db, folder).clone();
        assert_eq!(
            before.len(),
            2,
            "listing + info.json (C sources left out): {before:?}"
        );
        // Same bytes rewritten: nothing is set.
        std::fs::write(dir.path().join("kb/info.json"), "{}\n").unwrap();
        assert_eq!(db.refresh(&[PathBuf::from("kb/info.json")]), 0);
        db.take_executed();
        assert_eq!(folder_inputs(&db, folder), &before);
        assert!(db.take_executed().is_empty());
        // A new file: the listing changes.
        std::fs::write(dir.path().join("kb/config.h"), "#pragma once\n").unwrap();
        assert_eq!(db.refresh(&[dir.path().join("kb/config.h")]), 1);
        let after = folder_inputs(&db, folder).clone();
        assert_eq!(after.len(), 3, "{after:?}");
        assert_eq!(db.take_executed(), ["folder_inputs"]);
        // A deleted file: its digest becomes None and the listing shrinks.
        std::fs::remove_file(dir.path().join("kb/config.h")).unwrap();
        assert_eq!(db.refresh(&[PathBuf::from("kb/config.h")]), 2);
        assert_eq!(folder_inputs(&db, folder), &before);
    }
}

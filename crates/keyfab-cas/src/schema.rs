//! The index schema, as a list of migrations. `PRAGMA user_version` holds
//! how many have been applied; opening an index applies the missing ones in
//! one transaction, and refuses an index newer than this code.
//!
//! Never edit a released migration: append a new one.

pub const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE blobs (
        digest    BLOB PRIMARY KEY,
        size      INTEGER NOT NULL,
        last_used INTEGER NOT NULL          -- unix ms; LRU order for gc
    ) WITHOUT ROWID;
    CREATE INDEX blobs_lru ON blobs(last_used);

    CREATE TABLE totals (
        one   INTEGER PRIMARY KEY CHECK (one = 1),
        count INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    );
    INSERT INTO totals VALUES (1, 0, 0);
    CREATE TRIGGER blobs_count_ins AFTER INSERT ON blobs BEGIN
        UPDATE totals SET count = count + 1, bytes = bytes + NEW.size;
    END;
    CREATE TRIGGER blobs_count_del AFTER DELETE ON blobs BEGIN
        UPDATE totals SET count = count - 1, bytes = bytes - OLD.size;
    END;

    CREATE TABLE actions (
        key         BLOB PRIMARY KEY,
        record      BLOB NOT NULL,          -- digest of the record blob
        result      TEXT NOT NULL,          -- the ActionResult, JSON
        duration_ns INTEGER NOT NULL,
        created     INTEGER NOT NULL,
        last_used   INTEGER NOT NULL
    ) WITHOUT ROWID;
    -- Every blob an action needs (outputs, stdout, stderr, its record).
    CREATE TABLE action_blobs (
        key    BLOB NOT NULL,
        digest BLOB NOT NULL,
        PRIMARY KEY (key, digest)
    ) WITHOUT ROWID;
    CREATE INDEX action_blobs_digest ON action_blobs(digest);

    CREATE TABLE manifests (
        key       BLOB PRIMARY KEY,         -- the direct key
        record    BLOB NOT NULL,
        manifest  TEXT NOT NULL,            -- JSON
        last_used INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX manifests_record ON manifests(record);

    CREATE TABLE stat_cache (
        path     BLOB PRIMARY KEY,          -- absolute path, raw bytes
        dev      INTEGER NOT NULL,
        ino      INTEGER NOT NULL,
        size     INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        ctime_ns INTEGER NOT NULL,
        digest   BLOB NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY,
        started_ns  INTEGER NOT NULL,
        finished_ns INTEGER,
        command     TEXT NOT NULL,
        status      TEXT
    );
    CREATE TABLE provenance (
        run    INTEGER NOT NULL,
        target TEXT NOT NULL,
        record BLOB NOT NULL,
        body   TEXT NOT NULL,               -- the Provenance, JSON
        PRIMARY KEY (run, target)
    );
    CREATE INDEX provenance_target ON provenance(target, run);
    CREATE INDEX provenance_record ON provenance(record);
    "#,
    // 2: provenance bodies stored once per distinct content. A row of
    // schema 2 names its body (`body_ref`, a digest in provenance_bodies),
    // keeps `body` empty, and holds the notes that are the run's (read
    // before the body's); an up-to-date build adds a row that names the
    // body it reproduced. Rows of schema 1 keep their body inline
    // (`body_ref` NULL): the migration rewrites nothing, so it costs no
    // time and no room however large the index.
    r#"
    CREATE TABLE provenance_bodies (
        digest BLOB PRIMARY KEY,            -- the blob that holds the body
        size   INTEGER NOT NULL,            -- bytes of `body`
        body   TEXT NOT NULL                -- the Provenance, JSON
    );
    ALTER TABLE provenance ADD COLUMN body_ref BLOB;   -- provenance_bodies.digest
    ALTER TABLE provenance ADD COLUMN notes TEXT;      -- the row's own notes (JSON pairs)
    CREATE INDEX provenance_body ON provenance(body_ref);
    "#,
    // 3: no table changes. What is a run's rather than a build's moved from
    // bodies to rows (keyfab-build: which steps came from the cache is the
    // row's `ran` note, no longer a flag in the body's steps), so builds
    // that read and wrote the same bytes share a body. An older keyfab
    // would read such bodies as having no steps; the version keeps it out.
    r#"
    -- nothing to change: rows and bodies of schema 2 read as they are
    "#,
];

pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// The oldest schema a read-only open accepts: the migrations after it
/// change no table, only what a writer puts in them (a reader that writes
/// nothing reads the older rows as they are).
pub const READ_ONLY_FROM: i64 = 2;

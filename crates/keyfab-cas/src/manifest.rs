//! Direct-mode manifests: for one direct key (compiler + argv + source), the
//! header sets seen by earlier compiles and the action key each led to.
//! Pure data and matching; the index stores them.

use crate::digest::Digest;
use crate::keys::{ActionKey, CompileKey};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How many header sets a manifest remembers (newest first); older ones
/// fall off, as in ccache.
pub const MAX_ENTRIES: usize = 16;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub entries: Vec<ManifestEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub headers: Vec<(PathBuf, Digest)>,
    #[serde(with = "action_key_hex")]
    pub action: ActionKey,
}

impl ManifestEntry {
    /// The entry for a compile whose depfile named `headers`.
    pub fn from_compile(key: &CompileKey) -> ManifestEntry {
        ManifestEntry {
            headers: key.headers.clone(),
            action: key.key(),
        }
    }
}

impl Manifest {
    /// The action key of the first entry whose headers all still have the
    /// recorded digests. `digest_of` returns None for a vanished header.
    pub fn find(&self, digest_of: impl FnMut(&Path) -> Option<Digest>) -> Option<ActionKey> {
        self.find_entry(digest_of).map(|e| e.action)
    }

    /// [`Manifest::find`], the whole entry.
    pub fn find_entry(
        &self,
        mut digest_of: impl FnMut(&Path) -> Option<Digest>,
    ) -> Option<&ManifestEntry> {
        self.entries.iter().find(|e| {
            e.headers
                .iter()
                .all(|(p, d)| digest_of(p).as_ref() == Some(d))
        })
    }

    /// Puts an entry first, dropping an older one with the same action and
    /// the oldest beyond MAX_ENTRIES.
    pub fn add(&mut self, entry: ManifestEntry) {
        self.entries.retain(|e| e.action != entry.action);
        self.entries.insert(0, entry);
        self.entries.truncate(MAX_ENTRIES);
    }
}

mod action_key_hex {
    use crate::digest::Digest;
    use crate::keys::ActionKey;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(k: &ActionKey, s: S) -> Result<S::Ok, S::Error> {
        k.0.serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ActionKey, D::Error> {
        Digest::deserialize(d).map(ActionKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn entry(h: &[(&str, &str)], action: &str) -> ManifestEntry {
        ManifestEntry {
            headers: h
                .iter()
                .map(|(p, c)| (PathBuf::from(p), Digest::of(c.as_bytes())))
                .collect(),
            action: ActionKey(Digest::of(action.as_bytes())),
        }
    }

    #[test]
    fn find_matches_current_header_digests() {
        let mut m = Manifest::default();
        m.add(entry(&[("a.h", "1")], "old"));
        m.add(entry(&[("a.h", "2")], "new"));
        let files = HashMap::from([(PathBuf::from("a.h"), Digest::of(b"1"))]);
        let found = m.find(|p| files.get(p).copied());
        assert_eq!(found, Some(ActionKey(Digest::of(b"old"))));
        assert_eq!(m.find(|_| None), None);
    }

    #[test]
    fn add_dedupes_and_bounds() {
        let mut m = Manifest::default();
        for i in 0..40 {
            m.add(entry(&[("a.h", &i.to_string())], &format!("a{}", i % 20)));
        }
        assert_eq!(m.entries.len(), MAX_ENTRIES);
        assert_eq!(m.entries[0].action, ActionKey(Digest::of(b"a19")));
    }
}

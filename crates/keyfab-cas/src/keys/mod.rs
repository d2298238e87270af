//! Cache keys. One builder per action kind, each with a version constant
//! that is hashed into every key it makes: bump it whenever what goes into
//! the key (or what the action produces from the same inputs) changes.
//!
//! Every field is written as (name, length, bytes), so no two different
//! field lists can hash the same byte stream (`["a b"]` vs `["a", "b"]`).

mod command;
mod compile;
mod generate;

pub use command::CommandKey;
pub use compile::{CompileKey, DirectKey, ToolIdentity};
pub use generate::GenerateKey;

use crate::digest::Digest;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The key of one action: what the action cache is indexed by.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ActionKey(pub Digest);

impl std::fmt::Display for ActionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The hashing half of every key builder: domain-separated by kind and
/// version, fields length-prefixed and named.
pub struct KeyHasher {
    h: blake3::Hasher,
}

impl KeyHasher {
    pub fn new(kind: &str, version: u32) -> KeyHasher {
        let mut k = KeyHasher {
            h: blake3::Hasher::new(),
        };
        k.bytes("keyfab-key", kind.as_bytes());
        k.bytes("version", &version.to_le_bytes());
        k
    }

    pub fn bytes(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.h.update(&(name.len() as u64).to_le_bytes());
        self.h.update(name.as_bytes());
        self.h.update(&(value.len() as u64).to_le_bytes());
        self.h.update(value);
        self
    }

    pub fn str(&mut self, name: &str, value: &str) -> &mut Self {
        self.bytes(name, value.as_bytes())
    }

    pub fn os(&mut self, name: &str, value: &OsStr) -> &mut Self {
        self.bytes(name, value.as_bytes())
    }

    pub fn path(&mut self, name: &str, value: &Path) -> &mut Self {
        self.os(name, value.as_os_str())
    }

    pub fn digest(&mut self, name: &str, value: &Digest) -> &mut Self {
        self.bytes(name, &value.0)
    }

    pub fn u64(&mut self, name: &str, value: u64) -> &mut Self {
        self.bytes(name, &value.to_le_bytes())
    }

    /// A list: its length, then each item, so item boundaries are kept.
    pub fn list<T>(
        &mut self,
        name: &str,
        items: &[T],
        mut each: impl FnMut(&mut Self, &T),
    ) -> &mut Self {
        self.u64(name, items.len() as u64);
        for item in items {
            each(self, item);
        }
        self
    }

    pub fn env(&mut self, name: &str, env: &BTreeMap<String, String>) -> &mut Self {
        self.u64(name, env.len() as u64);
        for (k, v) in env {
            self.str("env-name", k).str("env-value", v);
        }
        self
    }

    pub fn finish(&self) -> ActionKey {
        ActionKey(Digest(*self.h.finalize().as_bytes()))
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::ActionKey;

    /// A field's name and a change to it.
    pub type Mutation<'a, T> = (&'a str, &'a dyn Fn(&mut T));

    /// Asserts that every mutation changes the key.
    pub fn assert_each_field_changes<T: Clone>(
        base: &T,
        key: impl Fn(&T) -> ActionKey,
        mutations: &[Mutation<'_, T>],
    ) {
        let k0 = key(base);
        assert_eq!(k0, key(&base.clone()), "keys must be deterministic");
        for (field, mutate) in mutations {
            let mut v = base.clone();
            mutate(&mut v);
            assert_ne!(key(&v), k0, "changing `{field}` must change the key");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_and_version_separate_domains() {
        let a = KeyHasher::new("compile", 1).finish();
        assert_ne!(a, KeyHasher::new("compile", 2).finish());
        assert_ne!(a, KeyHasher::new("link", 1).finish());
    }

    #[test]
    fn list_boundaries_are_kept() {
        let key = |items: &[&str]| {
            KeyHasher::new("t", 1)
                .list("argv", items, |k, s| {
                    k.str("arg", s);
                })
                .finish()
        };
        assert_ne!(key(&["a b"]), key(&["a", "b"]));
        assert_ne!(key(&["ab"]), key(&["a", "b"]));
        assert_ne!(key(&["a", ""]), key(&["a"]));
    }
}

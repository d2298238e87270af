//! A per-process memo table: each key is computed once, by whichever thread
//! asks first, and shared (the keyboards of a tree share most of their
//! files: mappings, schemas, parent folders' files).

use keyfab_tree::reads::{self, Read};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};

pub struct Memo<K, V> {
    map: Mutex<HashMap<K, Arc<Recorded<Arc<V>>>>>,
}

impl<K: Eq + Hash + Clone, V> Default for Memo<K, V> {
    fn default() -> Self {
        Memo {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V> Memo<K, V> {
    /// The value of `key`, computing it with `f` the first time.
    pub fn get(&self, key: &K, f: impl FnOnce() -> V) -> Arc<V> {
        let cell = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(key) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(Recorded::default());
                    map.insert(key.clone(), c.clone());
                    c
                }
            }
        };
        cell.get_or_init(|| Arc::new(f())).clone()
    }
}

/// A value computed once, with the reads that made it (see
/// [`keyfab_tree::reads`]): noted again each time it is handed out, so a
/// recording caller sees what its answer depends on even when another call
/// read the files.
pub struct Recorded<T> {
    cell: OnceLock<(T, Vec<Read>)>,
}

impl<T> Default for Recorded<T> {
    fn default() -> Self {
        Recorded {
            cell: OnceLock::new(),
        }
    }
}

impl<T> Recorded<T> {
    pub fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
        let mut made = false;
        let (value, read) = self.cell.get_or_init(|| {
            made = true;
            reads::record(f)
        });
        if !made {
            reads::replay(read);
        }
        value
    }

    pub fn get(&self) -> Option<&T> {
        self.cell.get().map(|(v, _)| v)
    }
}

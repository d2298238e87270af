//! A per-process memo table: each key is computed once, by whichever thread
//! asks first, and shared (the keyboards of a tree share most of their
//! files: mappings, schemas, parent folders' files).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};

pub struct Memo<K, V> {
    map: Mutex<HashMap<K, Arc<OnceLock<Arc<V>>>>>,
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
                    let c = Arc::new(OnceLock::new());
                    map.insert(key.clone(), c.clone());
                    c
                }
            }
        };
        cell.get_or_init(|| Arc::new(f())).clone()
    }
}

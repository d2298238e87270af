//! Which targets a sweep builds, as `qmk find` / `qmk mass-compile` select
//! them: every keyboard that has the keymap (or every keymap of every
//! keyboard with `all`), or the targets named, then the filters on each
//! target's merged info (QMK's `keymap_json`).
//!
//! Info is computed in parallel on the caller's rayon pool.
//!
//! [`filter_named`] applies the same filters to targets named elsewhere
//! (`keyfab audit -f` over the targets recorded in the cache).

use super::filter::Filter;
use crate::target::{self, Target};
use keyfab_info::Engine;
use rayon::prelude::*;

/// `-km`: one keymap name, or `all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeymapSel {
    Name(String),
    All,
}

impl KeymapSel {
    pub fn parse(s: &str) -> KeymapSel {
        if s == "all" {
            KeymapSel::All
        } else {
            KeymapSel::Name(s.to_string())
        }
    }
}

/// The selected targets, sorted by name, and what was left out and why
/// (a filter that raised on a target's info, as QMK's Python would).
#[derive(Debug, Default)]
pub struct Selection {
    pub targets: Vec<Target>,
    pub skipped: Vec<(String, String)>,
}

/// Why nothing could be selected.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(transparent)]
    Tree(#[from] keyfab_tree::TreeError),
    #[error("{0}")]
    Target(String),
}

/// (keyboard, keymap) pairs before resolution: every keyboard with the
/// keymap, or the named ones (`KB`, `KB:KM`, `all:KM`, `KB:all`).
fn candidates(
    engine: &Engine,
    keymap: &KeymapSel,
    named: &[String],
) -> Result<Vec<(String, KeymapSel)>, SelectError> {
    let tree = engine.tree();
    if named.is_empty() {
        return Ok(tree
            .list_keyboards()?
            .into_iter()
            .map(|kb| (kb, keymap.clone()))
            .collect());
    }
    let mut out = Vec::new();
    for n in named {
        let (kb, km) = match n.split_once(':') {
            Some((kb, km)) => (kb.to_string(), KeymapSel::parse(km)),
            None => (n.clone(), keymap.clone()),
        };
        if kb == "all" {
            out.extend(tree.list_keyboards()?.into_iter().map(|k| (k, km.clone())));
        } else {
            let res = tree.resolve_keyboard(&kb)?;
            out.push((res.keyboard, km));
        }
    }
    Ok(out)
}

/// Selects the targets. Run it inside the pool that should do the work.
pub fn select(
    engine: &Engine,
    keymap: &KeymapSel,
    named: &[String],
    filters: &[Filter],
) -> Result<Selection, SelectError> {
    /// A selected target with the merged info its filters were checked on.
    type TargetWithInfo = (Target, Option<keyfab_info::Info>);
    let tree = engine.tree();
    let cands = candidates(engine, keymap, named)?;
    let explicit = !named.is_empty();
    // Per keyboard: its community layouts (from its info), then the keymaps.
    let per_kb: Vec<Result<Vec<TargetWithInfo>, SelectError>> = cands
        .par_iter()
        .map(|(kb, km)| {
            let info = engine.info_json(kb);
            let layouts = keyfab_info::community_layouts_of(&info.value);
            let names = match km {
                KeymapSel::All => tree.list_keymaps(kb, &layouts),
                KeymapSel::Name(n) => {
                    if tree.locate_keymap(kb, n, &layouts).is_none() {
                        if explicit {
                            // Named targets must exist: say why not.
                            tree.require_keymap(kb, n, &layouts)?;
                        }
                        return Ok(vec![]);
                    }
                    vec![n.clone()]
                }
            };
            let mut out = Vec::new();
            for km in names {
                let t = target::resolve(tree, kb, &km, &layouts)
                    .map_err(|e| SelectError::Target(e.to_string()))?;
                let merged = if filters.is_empty() {
                    None
                } else {
                    let loc = tree.require_keymap(kb, &km, &layouts)?;
                    Some(engine.keymap_json_at(kb, info.clone(), &loc))
                };
                out.push((t, merged));
            }
            Ok(out)
        })
        .collect();
    let mut sel = Selection::default();
    for r in per_kb {
        for (t, merged) in r? {
            let keep = match merged {
                Some(info) => matches_all(&info.value, filters),
                None => Ok(true),
            };
            match keep {
                Ok(true) => sel.targets.push(t),
                Ok(false) => {}
                Err(why) => sel.skipped.push((t.name(), why)),
            }
        }
    }
    sel.targets.sort_by_key(|a| a.name());
    sel.targets.dedup_by(|a, b| a.name() == b.name());
    Ok(sel)
}

/// Whether merged info matches every filter; Err(why) when one raised (as
/// QMK's Python would on that info), naming the filter.
fn matches_all(info: &serde_json::Value, filters: &[Filter]) -> Result<bool, String> {
    for f in filters {
        match f.matches(info) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => return Err(format!("filter {:?}: {e}", f.text)),
        }
    }
    Ok(true)
}

/// Which of `names` (`KEYBOARD:KEYMAP`, keyboards already resolved) match
/// every filter on their merged info (QMK's `keymap_json`), in the order
/// given; and the names left out because they could not be checked (the
/// keyboard or keymap is not in the tree any more, or a filter raised), with
/// why. Run it inside the pool that should do the work.
pub fn filter_named(
    engine: &Engine,
    names: &[String],
    filters: &[Filter],
) -> (Vec<String>, Vec<(String, String)>) {
    let tree = engine.tree();
    let checked: Vec<Result<bool, String>> = names
        .par_iter()
        .map(|name| {
            let Some((kb, km)) = name.split_once(':') else {
                return Err("not KEYBOARD:KEYMAP".to_string());
            };
            if !tree.is_keyboard(kb) {
                return Err(format!("no keyboard {kb} in the tree"));
            }
            let info = engine.info_json(kb);
            let layouts = keyfab_info::community_layouts_of(&info.value);
            let loc = tree
                .require_keymap(kb, km, &layouts)
                .map_err(|e| e.to_string())?;
            matches_all(&engine.keymap_json_at(kb, info, &loc).value, filters)
        })
        .collect();
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    for (name, c) in names.iter().zip(checked) {
        match c {
            Ok(true) => kept.push(name.clone()),
            Ok(false) => {}
            Err(why) => skipped.push((name.clone(), why)),
        }
    }
    (kept, skipped)
}

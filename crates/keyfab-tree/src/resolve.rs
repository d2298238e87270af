//! Keyboard name resolution: `data/mappings/keyboard_aliases.hjson` and
//! `DEFAULT_FOLDER` in a keyboard's `rules.mk`, chained, with cycle detection.
//!
//! QMK's `keyboard_folder()` follows aliases until a name is not an alias
//! (it loops forever on a cycle); `DEFAULT_FOLDER` is the older mechanism that
//! QMK's make followed level by level. We follow both, in any interleaving,
//! until the name stops changing, and name the cycle if one appears.

use crate::{keyboard_chain, reads, Tree, TreeError};
use indexmap::IndexMap;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// How a requested name became a keyboard folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    pub requested: String,
    pub keyboard: String,
    pub steps: Vec<ResolveStep>,
}

/// One hop of a resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResolveStep {
    /// An entry of `data/mappings/keyboard_aliases.hjson`.
    Alias { from: String, to: String },
    /// `DEFAULT_FOLDER` in `keyboards/<from>/rules.mk`.
    DefaultFolder {
        from: String,
        to: String,
        file: String,
    },
}

/// The files that apply to a keyboard, top folder first (the order make
/// includes them in).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChainFiles {
    pub folders: Vec<String>,
    pub info_json: Vec<String>,
    pub config_h: Vec<String>,
    pub rules_mk: Vec<String>,
    pub post_config_h: Vec<String>,
    pub post_rules_mk: Vec<String>,
}

/// The alias table of `data/mappings/keyboard_aliases.hjson`: `alias → target`.
pub type Aliases = IndexMap<String, String>;

/// A parsed alias table and the stamp of the file it came from.
#[derive(Debug)]
pub(crate) struct AliasMemo {
    stamp: Option<(u64, i64, i64, u64)>,
    table: std::sync::Arc<Aliases>,
    /// The read that made the table (noted again on every hit).
    reads: Vec<reads::Read>,
}

impl Tree {
    /// The alias table, `alias → target`. A missing file is an empty table.
    /// Parsed once per change of the file (by its size, mtime and inode),
    /// and shared by this tree's clones.
    pub fn aliases(&self) -> Result<std::sync::Arc<Aliases>, TreeError> {
        let path = self.root.join("data/mappings/keyboard_aliases.hjson");
        if reads::source_installed() {
            // The source's owner memoizes, and its reads touch no disk.
            return Ok(std::sync::Arc::new(self.read_aliases(&path)?));
        }
        let stamp = std::fs::metadata(&path).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.len(), m.mtime(), m.mtime_nsec(), m.ino())
        });
        if let Some(memo) = self.aliases.lock().unwrap().as_ref() {
            if memo.stamp == stamp && stamp.is_some() {
                reads::replay(&memo.reads);
                return Ok(memo.table.clone());
            }
        }
        let (table, read) = reads::record(|| self.read_aliases(&path));
        let table = std::sync::Arc::new(table?);
        *self.aliases.lock().unwrap() = Some(AliasMemo {
            stamp,
            table: table.clone(),
            reads: read,
        });
        Ok(table)
    }

    fn read_aliases(&self, path: &Path) -> Result<IndexMap<String, String>, TreeError> {
        let Some(text) = self.read_text(path)? else {
            return Ok(IndexMap::new());
        };
        let entries =
            keyfab_syntax::parse_json_member_fields(&self.display(path), &text, "target")?;
        let Some(entries) = entries else {
            return Err(TreeError::Invalid {
                path: self.display(path),
                message: "root must be an object".into(),
            });
        };
        // An entry without a target resolves to itself, as in QMK.
        Ok(entries
            .into_iter()
            .filter_map(|(alias, target)| Some((alias, target?)))
            .collect())
    }

    /// `DEFAULT_FOLDER` from `keyboards/<name>/rules.mk` alone, if set.
    fn default_folder(&self, name: &str) -> Result<Option<String>, TreeError> {
        if !crate::is_safe_name(name) {
            return Ok(None);
        }
        let path = self.keyboard_dir(name).join("rules.mk");
        let Some(text) = self.read_text(&path)? else {
            return Ok(None);
        };
        let mut rules = keyfab_syntax::RulesMk::new();
        keyfab_syntax::parse_rules_mk(&text, &mut rules);
        Ok(rules
            .get("DEFAULT_FOLDER")
            .filter(|v| !v.is_empty())
            .cloned())
    }

    /// Resolves a keyboard name to its folder, like QMK's `keyboard_folder()`.
    pub fn resolve_keyboard(&self, requested: &str) -> Result<Resolution, TreeError> {
        let aliases = self.aliases()?;
        self.resolve_with(requested, &aliases)
    }

    /// As [`Tree::resolve_keyboard`], with the alias table already loaded
    /// (for callers resolving many names).
    pub fn resolve_with(
        &self,
        requested: &str,
        aliases: &Aliases,
    ) -> Result<Resolution, TreeError> {
        let requested = requested.trim_end_matches('/');
        let mut name = requested.to_string();
        let mut seen = vec![name.clone()];
        let mut steps = Vec::new();
        loop {
            let (next, step) = if let Some(target) = aliases.get(&name) {
                let step = ResolveStep::Alias {
                    from: name.clone(),
                    to: target.clone(),
                };
                (target.clone(), step)
            } else if let Some(folder) = self.default_folder(&name)? {
                let file = format!("keyboards/{name}/rules.mk");
                let step = ResolveStep::DefaultFolder {
                    from: name.clone(),
                    to: folder.clone(),
                    file,
                };
                (folder, step)
            } else {
                break;
            };
            if next == name {
                break;
            }
            steps.push(step);
            if seen.contains(&next) {
                seen.push(next);
                return Err(TreeError::Cycle {
                    name: requested.to_string(),
                    chain: seen,
                });
            }
            seen.push(next.clone());
            name = next;
        }
        if !self.is_keyboard(&name) {
            let suggestions = self.closest_keyboards(requested, aliases);
            return Err(TreeError::UnknownKeyboard {
                name: requested.to_string(),
                resolved: name,
                suggestions,
            });
        }
        Ok(Resolution {
            requested: requested.to_string(),
            keyboard: name,
            steps,
        })
    }

    /// Up to five known names (keyboards and aliases) closest to `name`.
    pub fn closest_keyboards(&self, name: &str, aliases: &IndexMap<String, String>) -> Vec<String> {
        let mut candidates = self.list_keyboards().unwrap_or_default();
        candidates.extend(aliases.keys().cloned());
        candidates.retain(|c| c != name);
        closest(name, candidates)
    }

    /// The files that apply to `keyboard`, top folder first.
    pub fn chain_files(&self, keyboard: &str) -> ChainFiles {
        let mut files = ChainFiles::default();
        for folder in keyboard_chain(keyboard) {
            let dir = self.keyboard_dir(&folder);
            let rel = |f: &str| format!("keyboards/{folder}/{f}");
            let present = |name: &str| reads::is_file(&dir.join(name)).then(|| rel(name));
            files.info_json.extend(present("info.json"));
            files.info_json.extend(present("keyboard.json"));
            files.config_h.extend(present("config.h"));
            files.rules_mk.extend(present("rules.mk"));
            files.post_config_h.extend(present("post_config.h"));
            files.post_rules_mk.extend(present("post_rules.mk"));
            files.folders.push(format!("keyboards/{folder}"));
        }
        files
    }

    /// Absolute path of a tree-relative path.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// Up to five candidates closest to `name`, best first.
pub(crate) fn closest(name: &str, candidates: Vec<String>) -> Vec<String> {
    let mut scored: Vec<(f64, String)> = candidates
        .into_iter()
        .map(|c| {
            let mut score = strsim::jaro_winkler(name, &c);
            // A name that is a folder prefix of the candidate is a near miss
            // (`planck` for `planck/rev6`).
            if c.starts_with(name) && c[name.len()..].starts_with('/') {
                score = score.max(0.95);
            }
            (score, c)
        })
        .filter(|(s, _)| *s >= 0.85)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(5).map(|(_, c)| c).collect()
}

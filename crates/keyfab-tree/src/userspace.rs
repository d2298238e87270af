//! A QMK userspace overlay: a folder with a `qmk.json` naming its build
//! targets, whose `keyboards/` and `layouts/` are searched for keymaps.

use crate::TreeError;
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Userspace {
    pub root: PathBuf,
    pub build_targets: Vec<BuildTarget>,
}

/// One entry of `qmk.json`'s `build_targets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BuildTarget {
    /// `["keyboard", "keymap"]`, optionally with `{"VAR": "value"}`.
    Keymap {
        keyboard: String,
        keymap: String,
        env: Vec<(String, String)>,
    },
    /// A path (relative to the userspace) to a configurator keymap JSON.
    JsonFile { path: String },
}

impl Userspace {
    /// Loads the userspace at `root`; its `qmk.json` must declare a
    /// `userspace_version` and well-formed `build_targets`.
    pub fn load(root: &Path) -> Result<Userspace, TreeError> {
        let path = root.join("qmk.json");
        let shown = path.to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).map_err(|e| TreeError::Io {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let json = keyfab_syntax::parse_json(&shown, &text)?;
        let invalid = |message: String| TreeError::Invalid {
            path: shown.clone(),
            message,
        };
        match json.get("userspace_version").and_then(Value::as_str) {
            Some("1.0" | "1.1") => {}
            Some(v) => return Err(invalid(format!("unsupported userspace_version {v:?}"))),
            None => return Err(invalid("missing \"userspace_version\"".into())),
        }
        let mut build_targets = Vec::new();
        let targets = json
            .get("build_targets")
            .cloned()
            .unwrap_or(Value::Array(vec![]));
        let Value::Array(targets) = targets else {
            return Err(invalid("\"build_targets\" must be an array".into()));
        };
        for (i, t) in targets.iter().enumerate() {
            let target = match t {
                Value::String(p) => BuildTarget::JsonFile { path: p.clone() },
                Value::Array(parts) if (2..=3).contains(&parts.len()) => {
                    let (Some(kb), Some(km)) = (parts[0].as_str(), parts[1].as_str()) else {
                        return Err(invalid(format!(
                            "build_targets[{i}]: keyboard and keymap must be strings"
                        )));
                    };
                    let mut env = Vec::new();
                    if let Some(e) = parts.get(2) {
                        let Some(obj) = e.as_object() else {
                            return Err(invalid(format!(
                                "build_targets[{i}][2]: env must be an object"
                            )));
                        };
                        for (k, v) in obj {
                            let Some(v) = v.as_str() else {
                                return Err(invalid(format!(
                                    "build_targets[{i}][2].{k}: must be a string"
                                )));
                            };
                            env.push((k.clone(), v.to_string()));
                        }
                    }
                    BuildTarget::Keymap {
                        keyboard: kb.to_string(),
                        keymap: km.to_string(),
                        env,
                    }
                }
                _ => {
                    return Err(invalid(format!(
                        "build_targets[{i}]: expected [keyboard, keymap(, env)] or a path"
                    )))
                }
            };
            build_targets.push(target);
        }
        // Resolved, as the tree's folder is: QMK's CLI gives make the
        // resolved folder, and generators compare it with the build's.
        Ok(Userspace {
            root: std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf()),
            build_targets,
        })
    }

    /// Finds the userspace as QMK does: an explicit folder; else the current
    /// folder or a parent with a `qmk.json`; else `$QMK_USERSPACE`. A found
    /// folder whose `qmk.json` does not validate is skipped, as in QMK.
    pub fn discover(
        explicit: Option<&Path>,
        cwd: &Path,
        env: Option<&Path>,
    ) -> Result<Option<Userspace>, TreeError> {
        if let Some(dir) = explicit {
            return Userspace::load(dir).map(Some);
        }
        let mut candidates = Vec::new();
        let mut dir = Some(cwd);
        while let Some(d) = dir {
            if d.join("qmk.json").is_file() {
                candidates.push(d.to_path_buf());
            }
            dir = d.parent();
        }
        if let Some(e) = env {
            if e.is_dir() {
                candidates.push(e.to_path_buf());
            }
        }
        Ok(candidates.iter().find_map(|c| Userspace::load(c).ok()))
    }
}

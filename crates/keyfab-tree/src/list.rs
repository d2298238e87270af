//! The list of all keyboards, as QMK's `list_keyboards()` computes it: every
//! folder below `keyboards/` that holds a `keyboard.json`, except those inside
//! a `keymaps` folder, skipping hidden entries the way Python's glob does.

use crate::{Tree, TreeError};
use std::fs;
use std::path::Path;

impl Tree {
    /// All keyboard names, sorted.
    pub fn list_keyboards(&self) -> Result<Vec<String>, TreeError> {
        let base = self.root.join("keyboards");
        let mut found = Vec::new();
        walk(&base, String::new(), &mut found).map_err(|e| TreeError::Io {
            path: "keyboards".into(),
            message: e.to_string(),
        })?;
        found.sort();
        found.dedup();
        Ok(found)
    }
}

fn walk(dir: &Path, rel: String, found: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        // Unreadable sub-folders are skipped, as glob skips them.
        Err(_) if !rel.is_empty() => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue;
        }
        let mut ft = entry.file_type()?;
        if ft.is_symlink() {
            match fs::metadata(entry.path()) {
                Ok(m) => ft = m.file_type(),
                Err(_) => continue,
            }
        }
        if ft.is_dir() {
            // Nothing below a keymaps folder counts as a keyboard.
            if name == "keymaps" {
                continue;
            }
            let child = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            walk(&entry.path(), child, found)?;
        } else if name == "keyboard.json" && !rel.is_empty() {
            found.push(rel.clone());
        }
    }
    Ok(())
}

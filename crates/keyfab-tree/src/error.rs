use std::path::PathBuf;

/// Everything that can go wrong while looking at a tree. Each variant names
/// the file or the name it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("{path}: not a QMK tree (no keyboards/ folder)", path = .path.display())]
    NotATree { path: PathBuf },

    #[error("no QMK tree found in {cwd} or its parents; pass --tree PATH or set QMK_HOME", cwd = .cwd.display())]
    NoTree { cwd: PathBuf },

    #[error("invalid keyboard: {name}{}{}", via(.name, .resolved), suggest(.suggestions))]
    UnknownKeyboard {
        name: String,
        /// What the name resolved to through aliases or DEFAULT_FOLDER.
        resolved: String,
        suggestions: Vec<String>,
    },

    #[error("keyboard {name} resolves in a cycle: {}", .chain.join(" -> "))]
    Cycle { name: String, chain: Vec<String> },

    #[error("keymap {keymap} not found for keyboard {keyboard}{}", keymaps_hint(.suggestions, .available))]
    UnknownKeymap {
        keyboard: String,
        keymap: String,
        suggestions: Vec<String>,
        available: Vec<String>,
    },

    #[error(transparent)]
    Json(#[from] keyfab_syntax::JsonError),

    #[error("{path}: {message}")]
    Invalid { path: String, message: String },

    #[error("{path}: not valid UTF-8")]
    NotUtf8 { path: String },

    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

fn via(name: &str, resolved: &str) -> String {
    if name == resolved {
        String::new()
    } else {
        format!(" (it resolves to {resolved}, which has no keyboard.json)")
    }
}

fn keymaps_hint(suggestions: &[String], available: &[String]) -> String {
    if !suggestions.is_empty() {
        suggest(suggestions)
    } else if available.is_empty() {
        " (it has no keymaps)".to_string()
    } else if available.len() <= 10 {
        format!(" (its keymaps: {})", available.join(", "))
    } else {
        String::new()
    }
}

fn suggest(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" (did you mean: {}?)", names.join(", "))
    }
}

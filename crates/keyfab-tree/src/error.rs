use std::path::PathBuf;

/// Everything that can go wrong while looking at a tree. Each variant names
/// the file or the name it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("{path}: not a QMK tree (no keyboards/ folder)", path = .path.display())]
    NotATree { path: PathBuf },

    #[error("no QMK tree found in {cwd} or its parents; pass --tree PATH or set QMK_HOME", cwd = .cwd.display())]
    NoTree { cwd: PathBuf },

    #[error("invalid keyboard: {name}{}", suggest(.suggestions))]
    UnknownKeyboard {
        name: String,
        suggestions: Vec<String>,
    },

    #[error("keyboard {name} resolves in a cycle: {}", .chain.join(" -> "))]
    Cycle { name: String, chain: Vec<String> },

    #[error("keymap {keymap} not found for keyboard {keyboard}{}", suggest(.suggestions))]
    UnknownKeymap {
        keyboard: String,
        keymap: String,
        suggestions: Vec<String>,
    },

    #[error("{0}")]
    Json(#[from] keyfab_syntax::JsonError),

    #[error("{path}: {message}")]
    Invalid { path: String, message: String },

    #[error("{path}: not valid UTF-8")]
    NotUtf8 { path: String },

    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

fn suggest(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" (did you mean: {}?)", names.join(", "))
    }
}

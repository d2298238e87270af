//! Keys of tool runs whose inputs are files named in the command line:
//! link, objcopy, size, ar. The kind is part of the key, so a link and an
//! objcopy with the same argv never share an entry.

use super::{ActionKey, KeyHasher};
use crate::digest::Digest;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandKey {
    /// What the command does ("link", "objcopy", "size", …).
    pub kind: String,
    /// `ToolIdentity::digest()` of the program.
    pub tool: Digest,
    pub argv: Vec<OsString>,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    /// Every input file (objects, archives, linker scripts), by path as the
    /// command names it, with the digest of its bytes.
    pub inputs: Vec<(PathBuf, Digest)>,
}

impl CommandKey {
    pub const VERSION: u32 = 1;

    pub fn key(&self) -> ActionKey {
        KeyHasher::new("command", Self::VERSION)
            .str("kind", &self.kind)
            .digest("tool", &self.tool)
            .list("argv", &self.argv, |k, a| {
                k.os("arg", a);
            })
            .path("cwd", &self.cwd)
            .env("env", &self.env)
            .list("inputs", &self.inputs, |k, (p, d)| {
                k.path("input", p).digest("input-digest", d);
            })
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::assert_each_field_changes;
    use super::*;

    #[test]
    fn command_key_fields() {
        let base = CommandKey {
            kind: "link".into(),
            tool: Digest::of(b"ld"),
            argv: vec!["-o".into(), "fw.elf".into(), "a.o".into()],
            cwd: "/tree".into(),
            env: BTreeMap::new(),
            inputs: vec![("a.o".into(), Digest::of(b"a"))],
        };
        assert_each_field_changes(
            &base,
            CommandKey::key,
            &[
                ("kind", &|k| k.kind = "objcopy".into()),
                ("tool", &|k| k.tool = Digest::of(b"ld2")),
                ("argv", &|k| k.argv[1] = "fw2.elf".into()),
                ("cwd", &|k| k.cwd = "/t2".into()),
                ("env", &|k| {
                    k.env.insert("LC_ALL".into(), "C".into());
                }),
                ("input path", &|k| k.inputs[0].0 = "b.o".into()),
                ("input digest", &|k| k.inputs[0].1 = Digest::of(b"a2")),
                ("input added", &|k| {
                    k.inputs.push(("c.o".into(), Digest::of(b"c")))
                }),
            ],
        );
    }
}

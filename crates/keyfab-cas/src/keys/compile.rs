//! Compile keys, direct mode (as ccache and sccache do it):
//! 1. `ToolIdentity`: which compiler, exactly (resolved path, `--version`
//!    output, digest of the binary, and for a compiler driver the programs
//!    and plugin it runs: `cc1`, `as`, `ld`, the LTO plugin, …).
//! 2. `DirectKey`: hash(compiler, argv, cwd, env, source). Known before the
//!    compiler runs; indexes a manifest of the headers seen last time.
//! 3. `CompileKey`: hash(direct key, every header path and digest): the
//!    action key of the object, recorded once the depfile is known.

use super::{ActionKey, KeyHasher};
use crate::digest::Digest;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

/// Exactly which tool runs: the same path with another version, or the same
/// version output from another binary, is another tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolIdentity {
    pub path: PathBuf,
    pub version_output: Vec<u8>,
    pub binary: Digest,
    /// What a compiler driver runs besides itself (empty for other tools):
    /// role (`as`, `ld`, `lto-plugin`, …), the path it resolves to, and that
    /// file's digest (`None`: not found). Binutils are packaged apart from
    /// the compiler: a new `as` or `ld` under the same driver is another tool.
    pub helpers: Vec<(String, PathBuf, Option<Digest>)>,
}

impl ToolIdentity {
    pub const VERSION: u32 = 2;

    pub fn digest(&self) -> Digest {
        KeyHasher::new("tool-identity", Self::VERSION)
            .path("path", &self.path)
            .bytes("version-output", &self.version_output)
            .digest("binary", &self.binary)
            .list("helpers", &self.helpers, |k, (role, path, digest)| {
                k.str("role", role).path("path", path);
                match digest {
                    Some(d) => k.digest("digest", d),
                    None => k.str("digest", "absent"),
                };
            })
            .finish()
            .0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectKey {
    /// `ToolIdentity::digest()` of the compiler.
    pub compiler: Digest,
    /// The full argument list, argv[0] excluded (the compiler is above).
    pub argv: Vec<OsString>,
    /// Relative paths in argv, `__FILE__` and debug info depend on it.
    pub cwd: PathBuf,
    /// Only the variables that change the output (an allowlist the caller
    /// chooses, such as SOURCE_DATE_EPOCH).
    pub env: BTreeMap<String, String>,
    /// Digest of the main source file's bytes.
    pub source: Digest,
}

impl DirectKey {
    pub const VERSION: u32 = 1;

    pub fn key(&self) -> ActionKey {
        KeyHasher::new("compile-direct", Self::VERSION)
            .digest("compiler", &self.compiler)
            .list("argv", &self.argv, |k, a| {
                k.os("arg", a);
            })
            .path("cwd", &self.cwd)
            .env("env", &self.env)
            .digest("source", &self.source)
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileKey {
    pub direct: ActionKey,
    /// Every header the depfile named, with its digest, in depfile order.
    pub headers: Vec<(PathBuf, Digest)>,
}

impl CompileKey {
    pub const VERSION: u32 = 1;

    pub fn key(&self) -> ActionKey {
        KeyHasher::new("compile", Self::VERSION)
            .digest("direct", &self.direct.0)
            .list("headers", &self.headers, |k, (p, d)| {
                k.path("header", p).digest("header-digest", d);
            })
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::assert_each_field_changes;
    use super::*;

    #[test]
    fn tool_identity_fields() {
        let base = ToolIdentity {
            path: "/usr/bin/avr-gcc".into(),
            version_output: b"avr-gcc (GCC) 7.3.0".to_vec(),
            binary: Digest::of(b"elf"),
            helpers: vec![(
                "as".into(),
                "/usr/avr/bin/as".into(),
                Some(Digest::of(b"as")),
            )],
        };
        assert_each_field_changes(
            &base,
            |t| ActionKey(t.digest()),
            &[
                ("path", &|t| t.path = "/opt/bin/avr-gcc".into()),
                ("version_output", &|t| {
                    t.version_output = b"avr-gcc (GCC) 8.1.0".to_vec()
                }),
                ("binary", &|t| t.binary = Digest::of(b"elf2")),
                ("helpers", &|t| t.helpers[0].2 = Some(Digest::of(b"as2"))),
            ],
        );
    }

    fn direct() -> DirectKey {
        DirectKey {
            compiler: Digest::of(b"gcc"),
            argv: vec!["-c".into(), "-Os".into(), "a.c".into()],
            cwd: "/tree".into(),
            env: BTreeMap::from([("SOURCE_DATE_EPOCH".into(), "0".into())]),
            source: Digest::of(b"int main;"),
        }
    }

    #[test]
    fn direct_key_fields() {
        assert_each_field_changes(
            &direct(),
            DirectKey::key,
            &[
                ("compiler", &|k| k.compiler = Digest::of(b"clang")),
                ("argv (value)", &|k| k.argv[1] = "-O2".into()),
                ("argv (order)", &|k| k.argv.swap(0, 1)),
                ("argv (added)", &|k| k.argv.push("-g".into())),
                ("cwd", &|k| k.cwd = "/other".into()),
                ("env (value)", &|k| {
                    k.env.insert("SOURCE_DATE_EPOCH".into(), "1".into());
                }),
                ("env (added)", &|k| {
                    k.env.insert("LANG".into(), "C".into());
                }),
                ("source", &|k| k.source = Digest::of(b"int main2;")),
            ],
        );
    }

    #[test]
    fn compile_key_fields() {
        let base = CompileKey {
            direct: direct().key(),
            headers: vec![
                ("a.h".into(), Digest::of(b"a")),
                ("b.h".into(), Digest::of(b"b")),
            ],
        };
        assert_each_field_changes(
            &base,
            CompileKey::key,
            &[
                ("direct", &|k| k.direct = ActionKey(Digest::of(b"x"))),
                ("header path", &|k| k.headers[0].0 = "c.h".into()),
                ("header digest", &|k| k.headers[1].1 = Digest::of(b"b2")),
                ("header added", &|k| {
                    k.headers.push(("d.h".into(), Digest::of(b"d")))
                }),
                ("header order", &|k| k.headers.swap(0, 1)),
            ],
        );
    }
}

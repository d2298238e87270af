//! Keys of keyfab's own generators (pure functions of their inputs): the
//! generator's name and version, its parameters, and its input digests.

use super::{ActionKey, KeyHasher};
use crate::digest::Digest;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateKey {
    pub generator: String,
    /// The generator's own version: bump it when its output changes.
    pub generator_version: u32,
    pub params: BTreeMap<String, String>,
    /// Named inputs (usually file paths) and the digests of their bytes.
    pub inputs: Vec<(String, Digest)>,
}

impl GenerateKey {
    pub const VERSION: u32 = 1;

    pub fn key(&self) -> ActionKey {
        KeyHasher::new("generate", Self::VERSION)
            .str("generator", &self.generator)
            .u64("generator-version", u64::from(self.generator_version))
            .env("params", &self.params)
            .list("inputs", &self.inputs, |k, (n, d)| {
                k.str("input", n).digest("input-digest", d);
            })
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::assert_each_field_changes;
    use super::*;

    #[test]
    fn generate_key_fields() {
        let base = GenerateKey {
            generator: "info_config.h".into(),
            generator_version: 1,
            params: BTreeMap::from([("keymap".into(), "default".into())]),
            inputs: vec![("keyboards/a/info.json".into(), Digest::of(b"{}"))],
        };
        assert_each_field_changes(
            &base,
            GenerateKey::key,
            &[
                ("generator", &|k| k.generator = "keymap.c".into()),
                ("generator_version", &|k| k.generator_version = 2),
                ("params", &|k| {
                    k.params.insert("keymap".into(), "via".into());
                }),
                ("input name", &|k| {
                    k.inputs[0].0 = "keyboards/b/info.json".into()
                }),
                ("input digest", &|k| k.inputs[0].1 = Digest::of(b"{ }")),
            ],
        );
    }
}

//! Shared by the integration tests: the helper binary's key and content
//! functions (kept in step with src/bin/keyfab-cas-testhelper.rs).
#![allow(dead_code)]

use keyfab_cas::{ActionKey, Digest, KeyHasher};

pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

pub fn content(name: &str, size: usize) -> Vec<u8> {
    let mut rng = Rng(u64::from_le_bytes(
        Digest::of(name.as_bytes()).0[..8].try_into().unwrap(),
    ));
    let mut v = Vec::with_capacity(size + 8);
    while v.len() < size {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(size);
    v
}

pub fn key(name: &str) -> ActionKey {
    KeyHasher::new("testhelper", 1).str("name", name).finish()
}

pub fn helper() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_keyfab-cas-testhelper"))
}

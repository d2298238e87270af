//! Blake3 digests: the names of blobs and the values of keys.

use crate::error::CasError;
use std::fmt;
use std::io::Read;
use std::path::Path;

/// A 32-byte blake3 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// The digest of the empty string, which every empty output shares.
    pub fn empty() -> Digest {
        Digest::of(b"")
    }

    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }

    pub fn from_hex(s: &str) -> Result<Digest, CasError> {
        let invalid = || CasError::Invalid {
            what: "digest",
            value: s.to_string(),
        };
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(invalid());
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or_else(invalid)?;
            let lo = hex_value(pair[1]).ok_or_else(invalid)?;
            out[i] = hi << 4 | lo;
        }
        Ok(Digest(out))
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Digest> {
        bytes.try_into().ok().map(Digest)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Hashes a file's bytes as they are read, without holding them all.
pub fn hash_reader(mut r: impl Read) -> std::io::Result<(Digest, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((Digest(*hasher.finalize().as_bytes()), total))
}

/// The digest of a file's contents.
pub fn hash_file(path: &Path) -> Result<Digest, CasError> {
    let f = std::fs::File::open(path).map_err(|e| CasError::io("open", path, e))?;
    hash_reader(f)
        .map(|(d, _)| d)
        .map_err(|e| CasError::io("read", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let d = Digest::of(b"keyfab");
        assert_eq!(Digest::from_hex(&d.to_hex()).unwrap(), d);
        assert_eq!(d.to_hex(), blake3::hash(b"keyfab").to_hex().as_str());
    }

    #[test]
    fn bad_hex_is_an_error_not_a_panic() {
        for s in [
            "",
            "zz",
            &"g".repeat(64),
            &"a".repeat(63),
            "é".repeat(32).as_str(),
        ] {
            assert!(Digest::from_hex(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn reader_hash_matches_one_shot() {
        let data = vec![7u8; 200_000];
        let (d, n) = hash_reader(&data[..]).unwrap();
        assert_eq!((d, n), (Digest::of(&data), 200_000));
    }
}

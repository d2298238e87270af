//! The stat cache's pure half: a file's metadata fingerprint and the rule
//! deciding when that fingerprint may stand in for hashing the file.

use std::os::unix::fs::MetadataExt;
use std::time::{SystemTime, UNIX_EPOCH};

/// What must be unchanged for a file's recorded digest to be reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileStat {
    pub fn from_metadata(m: &std::fs::Metadata) -> FileStat {
        FileStat {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        }
    }
}

/// The start of a run, the line after which file metadata is not trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunClock {
    pub start_ns: i64,
}

impl RunClock {
    pub fn now() -> RunClock {
        RunClock { start_ns: now_ns() }
    }

    /// Metadata is trusted only when both mtime and ctime lie before the
    /// whole second in which the run started: a file written during the run
    /// (or in the same second, where a coarse file-system clock could hide
    /// a later write) is always hashed.
    pub fn trusts(&self, s: &FileStat) -> bool {
        let cutoff = self.start_ns - self.start_ns.rem_euclid(1_000_000_000);
        s.mtime_ns < cutoff && s.ctime_ns < cutoff
    }
}

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(mtime_ns: i64, ctime_ns: i64) -> FileStat {
        FileStat {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns,
            ctime_ns,
        }
    }

    #[test]
    fn modified_at_or_after_run_start_is_never_trusted() {
        let clock = RunClock {
            start_ns: 100_500_000_000,
        };
        assert!(clock.trusts(&stat(99_000_000_000, 99_000_000_000)));
        // Same second as the start (even before it): not trusted.
        assert!(!clock.trusts(&stat(100_100_000_000, 99_000_000_000)));
        assert!(!clock.trusts(&stat(99_000_000_000, 100_000_000_000)));
        assert!(!clock.trusts(&stat(100_500_000_000, 1)));
        assert!(!clock.trusts(&stat(200_000_000_000, 1)));
    }
}

//! `qmk generate-version-h`.

use crate::{c_headers, Generated};

/// The values of `version.h`, found by the caller (git, the clock) the way
/// QMK's `generate_version_h` finds them; see [`VersionInfo::skip_all`] and
/// [`VersionInfo::skip_git`] for its two flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// `QMK_VERSION`: `git describe --abbrev=6 --dirty --always --tags`, else the build date.
    pub git_version: String,
    /// `QMK_BUILDDATE`: `%Y-%m-%d-%H:%M:%S`.
    pub build_date: String,
    /// `QMK_VERSION_BCD`.
    pub bcd_version: String,
    /// `git rev-parse --short HEAD`, else `Unknown`.
    pub git_hash: String,
    /// A `*` follows the hash.
    pub dirty: bool,
    pub chibios_version: String,
    pub chibios_contrib_version: String,
    /// `None` (the word) without a userspace.
    pub userspace_version: String,
}

impl VersionInfo {
    /// `--skip-all`: placeholders everywhere.
    pub fn skip_all() -> VersionInfo {
        VersionInfo::skip_git("1970-01-01-00:00:00")
    }

    /// `--skip-git`: the build date, and `NA` for everything git would say.
    pub fn skip_git(build_date: &str) -> VersionInfo {
        VersionInfo {
            git_version: "NA".into(),
            build_date: build_date.into(),
            bcd_version: "0x00000000".into(),
            git_hash: "NA".into(),
            dirty: false,
            chibios_version: "NA".into(),
            chibios_contrib_version: "NA".into(),
            userspace_version: "NA".into(),
        }
    }
}

/// QMK's `triplet_to_bcd`: `0.22.14-3-gabc` → `0x00220014`.
pub fn triplet_to_bcd(version: &str) -> String {
    let mut parts = [0u64; 3];
    let mut rest = version;
    for (i, part) in parts.iter_mut().enumerate() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return "0x00000000".into();
        }
        // Python's int() of a long digit run; saturate rather than overflow.
        *part = rest[..digits].parse().unwrap_or(u64::MAX);
        rest = &rest[digits..];
        if i < 2 {
            match rest.strip_prefix('.') {
                Some(r) => rest = r,
                None => return "0x00000000".into(),
            }
        }
    }
    format!("0x{:02}{:02}{:04}", parts[0], parts[1], parts[2])
}

/// `qmk generate-version-h`.
pub fn version_h(v: &VersionInfo, year: i32) -> Generated {
    let mut lines = c_headers(year);
    lines.push("#pragma once".into());
    lines.push(format!(
        "
#define QMK_VERSION \"{}\"
#define QMK_BUILDDATE \"{}\"
#define QMK_VERSION_BCD {}
#define QMK_GIT_HASH  \"{}{}\"
#define CHIBIOS_VERSION \"{}\"
#define CHIBIOS_CONTRIB_VERSION \"{}\"
#define QMK_USERSPACE_VERSION \"{}\"
",
        v.git_version,
        v.build_date,
        v.bcd_version,
        v.git_hash,
        if v.dirty { "*" } else { "" },
        v.chibios_version,
        v.chibios_contrib_version,
        v.userspace_version
    ));
    Generated::new(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcd() {
        assert_eq!(triplet_to_bcd("0.22.14"), "0x00220014");
        assert_eq!(triplet_to_bcd("1.2.3-4-gabcdef-dirty"), "0x01020003");
        assert_eq!(triplet_to_bcd("2026-08-01-10:00:00"), "0x00000000");
        assert_eq!(triplet_to_bcd("abc"), "0x00000000");
        assert_eq!(triplet_to_bcd("1.2"), "0x00000000");
    }

    #[test]
    fn skip_all() {
        let out = version_h(&VersionInfo::skip_all(), 2026).contents();
        assert!(out.ends_with("#pragma once\n\n#define QMK_VERSION \"NA\"\n#define QMK_BUILDDATE \"1970-01-01-00:00:00\"\n#define QMK_VERSION_BCD 0x00000000\n#define QMK_GIT_HASH  \"NA\"\n#define CHIBIOS_VERSION \"NA\"\n#define CHIBIOS_CONTRIB_VERSION \"NA\"\n#define QMK_USERSPACE_VERSION \"NA\"\n\n"));
    }

    #[test]
    fn dirty_star() {
        let mut v = VersionInfo::skip_git("2026-01-02-03:04:05");
        v.git_hash = "abc123".into();
        v.dirty = true;
        assert!(version_h(&v, 2026)
            .contents()
            .contains("#define QMK_GIT_HASH  \"abc123*\"\n"));
    }
}

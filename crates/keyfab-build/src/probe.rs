//! QMK's `cc-option` probes, made cheap.
//!
//! `builddefs/support.mk` defines `cc-option` as a `$(shell …)` that runs the
//! compiler; the flags that use it are recursively expanded, so one plan runs
//! it ~146 times. We pass make a replacement `cc-option` on its command line
//! (command-line variables override the makefile's) that memoizes each
//! distinct probe in a make variable, and asks keyfab — which answers from
//! the cache, keyed on the compiler's identity — instead of the compiler.

/// The make command-line definitions that install the memoizing `cc-option`.
/// `probe` is the command that answers one probe: it gets the compiler, the
/// option, the fallback and the extra test flags as four arguments.
pub fn cc_option_overrides(probe: &str) -> Vec<String> {
    let key = "kf_cco_$(subst :,.,$(subst =,.,$(subst $(kf_space),_,$(CC)|$(1)|$(2)|$(3))))";
    vec![
        "kf_empty=".to_string(),
        "kf_space=$(kf_empty) $(kf_empty)".to_string(),
        format!(
            "cc-option=$(if $(filter undefined,$(origin {key})),$(eval {key} := $(shell {probe} '$(CC)' '$(1)' '$(2)' '$(3)')))$({key})"
        ),
    ]
}

/// The shell test QMK's `cc-option` runs: does `cc` accept `option` (with
/// `extra`)? Exactly the command of support.mk, so the answer is the same.
pub fn probe_script(cc: &str, option: &str, extra: &str) -> String {
    format!(
        "echo 'int main(){{return 0;}}' | {cc} {option} {extra} -Wl,--unresolved-symbols=ignore-all -o /dev/null -x c /dev/null >/dev/null 2>&1"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Runs make on a makefile that uses cc-option like QMK's support.mk, with
    /// our override and a probe that logs each call.
    #[test]
    fn each_distinct_probe_runs_once_and_answers_like_support_mk() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls.log");
        let probe = dir.path().join("probe.sh");
        std::fs::write(
            &probe,
            format!(
                "#!/bin/sh\necho \"$2\" >> {}\nif [ \"$2\" = \"-good\" ]; then echo \"$2\"; else echo \"$3\"; fi\n",
                log.display()
            ),
        )
        .unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&probe)
            .status()
            .unwrap();
        std::fs::write(
            dir.path().join("Makefile"),
            "cc-option = $(shell echo SLOW)\nCC = cc\nFLAGS += $(call cc-option,-good,-fallback)\nFLAGS += $(call cc-option,-bad,-fallback)\nFLAGS += $(call cc-option,--param=x=0)\nall:\n\t@echo [$(FLAGS)] [$(FLAGS)] [$(FLAGS)]\n",
        )
        .unwrap();
        let out = Command::new("make")
            .arg("-s")
            .args(cc_option_overrides(probe.to_str().unwrap()))
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            stdout.trim(),
            "[-good -fallback ] [-good -fallback ] [-good -fallback ]"
        );
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            calls.lines().collect::<Vec<_>>(),
            ["-good", "-bad", "--param=x=0"]
        );
    }
}

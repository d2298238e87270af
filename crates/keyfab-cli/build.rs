//! Links the `keyfab` binary as a position-dependent executable on Linux.
//!
//! make runs `keyfab qmk …` a dozen times per build, each a process of a few
//! milliseconds; as a PIE the 90 MB binary spends ~0.4 ms of each start
//! applying ~26,000 relative relocations, copying every page they touch. A
//! fixed load address needs none of that (shared libraries, heap and stack
//! are still placed at random).

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}

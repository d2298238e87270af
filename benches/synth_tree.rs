//! `synth-tree DEST N [K]`: writes a synthetic tree of N keyboards × K keymaps
//! (see synth.rs) for trying `keyfab sweep` by hand.

mod common;
mod synth;

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dest), Some(n)) = (args.first(), args.get(1).and_then(|n| n.parse().ok())) else {
        eprintln!("usage: synth-tree DEST N [K]");
        std::process::exit(2);
    };
    let k = args.get(2).and_then(|k| k.parse().ok()).unwrap_or(1);
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tree");
    synth::generate(&src, &PathBuf::from(dest), n, k);
    println!("{dest}: {n} keyboards x {k} keymaps");
}

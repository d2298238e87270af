//! keyfab's commands as a library: the `keyfab` binary parses the command
//! line and calls [`run`]; tests drive the same code (e.g. the in-process
//! generators of [`qmk_cmds`]). All the real work happens in the library
//! crates; this crate turns their results into output and their errors into
//! messages and exit codes.

mod audit_cmds;
mod build_cmds;
mod cache_cmds;
pub mod cli;
mod describe_memo;
mod dirty_witness;
mod gen_cmds;
mod info_cmds;
mod progress_line;
pub mod qmk_cmds;
mod sweep_cmds;
mod tree_cmds;
mod watch_cmds;

use std::process::ExitCode;

/// Exit status when the command itself failed (bad input, unknown keyboard).
pub const EXIT_FAILURE: u8 = 1;

/// Runs one parsed command line.
pub fn run(args: cli::Cli) -> anyhow::Result<ExitCode> {
    // Called by make while planning; needs no tree.
    if let cli::Command::RecordGenerator(a) = args.command {
        return build_cmds::record_generator(a);
    }
    // The cache commands need no tree.
    if let cli::Command::Cache(a) = args.command {
        return cache_cmds::run(&args.global, a);
    }
    let ctx = cli::Context::from_global(&args.global)?;
    match args.command {
        cli::Command::ListKeyboards(a) => tree_cmds::list_keyboards(&ctx, a),
        cli::Command::ListKeymaps(a) => tree_cmds::list_keymaps(&ctx, a),
        cli::Command::Resolve(a) => tree_cmds::resolve(&ctx, a),
        cli::Command::UserspaceList(a) => tree_cmds::userspace_list(&ctx, a),
        cli::Command::Build(a) => build_cmds::build(&ctx, a),
        cli::Command::Watch(a) => watch_cmds::watch(&ctx, a),
        cli::Command::Sweep(a) => sweep_cmds::sweep(&ctx, a),
        cli::Command::UserspaceCompile(a) => sweep_cmds::userspace_compile(&ctx, a),
        cli::Command::ProbeCcOption(a) => build_cmds::probe_cc_option(&ctx, a),
        cli::Command::RecordGenerator(_) => unreachable!("handled above"),
        cli::Command::Cache(_) => unreachable!("handled above"),
        cli::Command::Info(a) => info_cmds::info(&ctx, a),
        cli::Command::Qmk(a) => qmk_cmds::qmk(&ctx, &a.args),
        cli::Command::Generate(a) => gen_cmds::generate(&ctx, a),
        cli::Command::Audit(a) => audit_cmds::audit(&ctx, a),
        cli::Command::Explain(a) => audit_cmds::explain(&ctx, a),
    }
}

//! `keyfab info`: the merged info of a keyboard (and keymap), like
//! `qmk info`, and of every keyboard at once (`--all`, one JSON object per
//! line, in parallel).

use crate::cli::Context;
use clap::{Args, ValueEnum};
use keyfab_info::{Diagnostic, Engine, Info};
use rayon::prelude::*;
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum InfoFormat {
    /// A short summary (qmk info's default "friendly" format)
    #[default]
    Text,
    /// The merged info as JSON, keys sorted (qmk info -f json)
    Json,
    /// One `dotted.key: value` line per value (qmk info -f text)
    Dotted,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Keyboard name or alias; `KB:KM` also sets the keymap (QMK's -kb also works)
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    pub keyboard: Option<String>,
    /// Merge in this keymap's keymap.json config, config.h and rules.mk (QMK's -km also works)
    #[arg(long)]
    pub keymap: Option<String>,
    /// Every keyboard of the tree, one JSON object per line (list-keyboards order)
    #[arg(long, conflicts_with = "keymap")]
    pub all: bool,
    /// Output format
    #[arg(long, short = 'f', value_enum, default_value_t)]
    pub format: InfoFormat,
    /// Keep the API-only keys qmk info strips (parse_errors, keyboard_folder, …)
    #[arg(long)]
    pub api: bool,
    /// Do not print diagnostics
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

fn print_diagnostics(out: &mut impl Write, diags: &[Diagnostic]) {
    for d in diags {
        let _ = writeln!(out, "{d}");
    }
}

fn finish(info: &Info, api: bool) -> Value {
    let mut v = info.value.clone();
    if !api {
        keyfab_info::strip_api_content(&mut v);
    }
    keyfab_info::to_sorted_json(&v)
}

pub fn info(ctx: &Context, a: InfoArgs) -> anyhow::Result<ExitCode> {
    let engine = Engine::new(ctx.tree.clone());
    let mut err = std::io::stderr().lock();
    if !a.quiet {
        print_diagnostics(&mut err, engine.setup_diagnostics());
    }
    if a.all {
        let r = info_all(&engine, &a);
        std::mem::forget(engine);
        return r;
    }
    let target = a.keyboard.as_deref().unwrap_or_default();
    let (kb, km_from_target) = match target.split_once(':') {
        Some((kb, km)) if !km.is_empty() => (kb, Some(km)),
        Some((kb, _)) => (kb, None),
        None => (target, None),
    };
    let keymap = a.keymap.as_deref().or(km_from_target);
    let res = ctx.tree.resolve_keyboard(kb)?;
    let info = match keymap {
        Some(km) => engine.keymap_json(&res.keyboard, km)?,
        None => engine.info_json(&res.keyboard),
    };
    if !a.quiet {
        print_diagnostics(&mut err, &info.diagnostics);
        print_diagnostics(&mut err, &engine.schema_problems());
    }
    let v = finish(&info, a.api);
    let mut out = std::io::stdout().lock();
    match a.format {
        InfoFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        InfoFormat::Dotted => write!(out, "{}", keyfab_info::render_dotted(&v))?,
        InfoFormat::Text => write!(out, "{}", keyfab_info::render_friendly(&v))?,
    }
    out.flush()?;
    Ok(if info.fatal {
        ExitCode::from(crate::EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

fn info_all(engine: &Engine, a: &InfoArgs) -> anyhow::Result<ExitCode> {
    if a.format != InfoFormat::Json {
        anyhow::bail!("--all prints JSON only; add --format json");
    }
    let keyboards = engine.tree().list_keyboards()?;
    let results: Vec<(String, String, bool)> = keyboards
        .par_iter()
        .map(|kb| {
            let mut info = engine.info_json(kb);
            if !a.api {
                keyfab_info::strip_api_content(&mut info.value);
            }
            let mut line = String::with_capacity(16 * 1024);
            keyfab_info::write_sorted_json(&info.value, &mut line);
            let mut diags = String::new();
            if !a.quiet {
                for d in &info.diagnostics {
                    diags.push_str(&d.to_string());
                    diags.push('\n');
                }
            }
            (line, diags, info.fatal)
        })
        .collect();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut err = std::io::BufWriter::new(std::io::stderr().lock());
    let mut fatal = 0;
    for (line, diags, is_fatal) in &results {
        writeln!(out, "{line}")?;
        err.write_all(diags.as_bytes())?;
        fatal += usize::from(*is_fatal);
    }
    out.flush()?;
    if !a.quiet {
        print_diagnostics(&mut err, &engine.schema_problems());
    }
    if fatal > 0 && !a.quiet {
        writeln!(
            err,
            "keyfab: {fatal} of {} keyboards have input QMK would stop on (see the errors above)",
            results.len()
        )?;
    }
    err.flush()?;
    // Freeing thousands of parsed files one by one only delays the exit.
    std::mem::forget(results);
    Ok(ExitCode::SUCCESS)
}

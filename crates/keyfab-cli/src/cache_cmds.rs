//! `keyfab cache stats | gc | verify | clear`: open the cache, call
//! keyfab-cas, print. The store does the work.

use crate::cli::{Format, GlobalArgs};
use clap::{Args, Subcommand};
use keyfab_cas::{format_size, CasError, LocalCas, OpenOptions};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
    /// Output format
    #[arg(long, short = 'f', value_enum, default_value_t, global = true)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Show where the cache is and what it holds
    Stats,
    /// Evict least-recently-used entries down to a size, remove stale temp files
    Gc {
        /// Size to shrink to, e.g. 500M, 5G (binary units); default: 5G
        #[arg(long, value_name = "SIZE", value_parser = parse_size_arg, default_value = "5G")]
        max_size: u64,
    },
    /// Hash every blob and check the index against the folder (exit 1 on problems)
    Verify {
        /// Remove corrupt blobs and broken entries, index found blobs, rebuild a damaged index
        #[arg(long)]
        repair: bool,
    },
    /// Remove everything in the cache
    Clear,
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    keyfab_cas::parse_size(s).map_err(|e| e.to_string())
}

/// The cache folder: `--cache DIR`, else `$KEYFAB_CACHE`, else
/// `$XDG_CACHE_HOME/keyfab`, else `~/.cache/keyfab`.
pub fn cache_dir(g: &GlobalArgs) -> anyhow::Result<PathBuf> {
    keyfab_cas::cache_dir(g.cache.as_deref(), |k| std::env::var(k).ok()).ok_or_else(|| {
        anyhow::anyhow!("no cache folder: pass --cache DIR or set KEYFAB_CACHE (HOME is not set)")
    })
}

/// Opens for writing, or (for commands that only read) falls back to a
/// read-only open of a folder we may not write.
fn open(dir: &PathBuf, may_read_only: bool) -> Result<LocalCas, CasError> {
    match LocalCas::open(dir) {
        Err(e) if e.is_read_only() && may_read_only => {
            let opts = OpenOptions {
                read_only: true,
                ..OpenOptions::default()
            };
            LocalCas::open_with(dir, opts)
        }
        other => other,
    }
}

fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

pub fn run(g: &GlobalArgs, a: CacheArgs) -> anyhow::Result<ExitCode> {
    let dir = cache_dir(g)?;
    let json = a.format == Format::Json;
    match a.command {
        CacheCommand::Stats => {
            let cas = open(&dir, true)?;
            let s = cas.stats()?;
            if json {
                print_json(&json!({"read_only": cas.is_read_only(), "stats": s}))?;
            } else {
                let c = &s.counts;
                println!(
                    "cache:       {}{}",
                    s.root.display(),
                    if cas.is_read_only() {
                        " (read-only)"
                    } else {
                        ""
                    }
                );
                println!("size:        {} in {} blobs", format_size(c.bytes), c.blobs);
                println!("actions:     {}", c.actions);
                println!("manifests:   {}", c.manifests);
                println!("stat cache:  {} files", c.stat_entries);
                println!(
                    "runs:        {} ({} provenance records, {} distinct: {})",
                    c.runs,
                    c.provenance,
                    c.provenance_bodies,
                    format_size(c.provenance_body_bytes)
                );
                println!("temp files:  {}", s.temp_files);
            }
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Gc { max_size } => {
            let cas = open(&dir, false)?;
            let r = cas.gc(max_size)?;
            if json {
                print_json(&json!(r))?;
            } else {
                println!(
                    "gc: {} -> {} (limit {}); removed {} blobs, {} actions, {} stale temp files",
                    format_size(r.bytes_before),
                    format_size(r.bytes_after),
                    format_size(r.max_size),
                    r.blobs_removed,
                    r.actions_removed,
                    r.temp_files_removed
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Verify { repair } => {
            let cas = open(&dir, !repair)?;
            let r = cas.verify(repair)?;
            // After a repair the question is whether the cache is sound now.
            let clean = if repair {
                cas.verify(false)?.is_clean()
            } else {
                r.is_clean()
            };
            if json {
                print_json(&json!({"clean": clean, "report": r}))?;
            } else {
                print_verify(&r, clean);
            }
            Ok(if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(crate::EXIT_FAILURE)
            })
        }
        CacheCommand::Clear => {
            let cas = open(&dir, false)?;
            let r = cas.clear()?;
            if json {
                print_json(&json!(r))?;
            } else {
                println!(
                    "cleared {}: {} blobs, {}",
                    dir.display(),
                    r.blobs_removed,
                    format_size(r.bytes_removed)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_verify(r: &keyfab_cas::VerifyReport, clean: bool) {
    println!(
        "checked {} blobs ({})",
        r.blobs_checked,
        format_size(r.bytes_checked)
    );
    for d in &r.corrupt {
        println!("corrupt blob: {d}");
    }
    for d in &r.missing {
        println!("missing blob: {d}");
    }
    for p in &r.stray {
        println!("stray file: {}", p.display());
    }
    for p in &r.index_problems {
        println!("index: {p}");
    }
    if r.unindexed > 0 || r.temp_files > 0 {
        println!(
            "{} unindexed blobs and {} temp files (left by interrupted writes; harmless)",
            r.unindexed, r.temp_files
        );
    }
    if let Some(rep) = &r.repaired {
        println!(
            "repaired: removed {} corrupt blobs and {} stray files, forgot {} missing blobs, indexed {} blobs, removed {} temp files{}",
            rep.corrupt_removed,
            rep.stray_removed,
            rep.missing_forgotten,
            rep.unindexed_registered,
            rep.temp_files_removed,
            if rep.index_rebuilt { ", rebuilt the index" } else { "" }
        );
    }
    println!(
        "{}",
        if clean {
            "cache is clean"
        } else {
            "cache has problems (run `keyfab cache verify --repair`)"
        }
    );
}

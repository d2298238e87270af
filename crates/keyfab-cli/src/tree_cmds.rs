//! list-keyboards, list-keymaps, resolve, userspace-list.

use crate::cli::{Context, Format, FormatArgs, ListKeyboardsArgs, ListKeymapsArgs, ResolveArgs};
use keyfab_tree::{KeymapSource, ResolveStep};
use serde_json::json;
use std::io::Write;
use std::process::ExitCode;

fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn print_lines<I: IntoIterator<Item = S>, S: AsRef<str>>(lines: I) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for l in lines {
        writeln!(out, "{}", l.as_ref())?;
    }
    out.flush()?;
    Ok(())
}

/// The community layouts of a keyboard, from its merged info (as QMK's
/// `list_keymaps` and `locate_keymap` get them); only the problems with the
/// community layouts themselves and with the keyboard's JSON files are shown.
fn community_layouts(tree: &keyfab_tree::Tree, keyboard: &str) -> Vec<String> {
    let engine = keyfab_info::Engine::new(tree.clone());
    let (layouts, diags) = keyfab_info::community_layouts(&engine, keyboard);
    let relevant = |d: &&keyfab_info::Diagnostic| {
        d.message.contains("community layout") || d.path.ends_with(".json")
    };
    for d in diags.iter().filter(relevant) {
        eprintln!("keyfab: {d}");
    }
    layouts
}

pub fn list_keyboards(ctx: &Context, a: ListKeyboardsArgs) -> anyhow::Result<ExitCode> {
    let names = ctx.tree.list_keyboards()?;
    match a.format.format {
        Format::Text => print_lines(&names)?,
        Format::Json => print_json(&json!(names))?,
    }
    Ok(ExitCode::SUCCESS)
}

pub fn list_keymaps(ctx: &Context, a: ListKeymapsArgs) -> anyhow::Result<ExitCode> {
    let (kb, _) = split_target(&a.keyboard);
    let res = ctx.tree.resolve_keyboard(kb)?;
    let layouts = community_layouts(&ctx.tree, &res.keyboard);
    let names = ctx.tree.list_keymaps(&res.keyboard, &layouts);
    match a.format.format {
        Format::Text => print_lines(&names)?,
        Format::Json => print_json(&json!({"keyboard": res.keyboard, "keymaps": names}))?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `kb:km` → (`kb`, Some(`km`)).
fn split_target(s: &str) -> (&str, Option<&str>) {
    match s.split_once(':') {
        Some((kb, km)) if !km.is_empty() => (kb, Some(km)),
        Some((kb, _)) => (kb, None),
        None => (s, None),
    }
}

pub fn resolve(ctx: &Context, a: ResolveArgs) -> anyhow::Result<ExitCode> {
    let tree = &ctx.tree;
    let (kb, km_from_target) = split_target(&a.keyboard);
    let keymap = a.keymap.as_deref().or(km_from_target);
    let res = tree.resolve_keyboard(kb)?;
    let files = tree.chain_files(&res.keyboard);
    let layouts = community_layouts(tree, &res.keyboard);
    let location = match keymap {
        Some(km) => Some(tree.require_keymap(&res.keyboard, km, &layouts)?),
        None => None,
    };
    let show = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| tree.display(p));
    match a.format.format {
        Format::Json => {
            let km = location.as_ref().map(|l| {
                json!({
                    "keymap": l.keymap,
                    "dir": tree.display(&l.dir),
                    "keymap_c": show(&l.keymap_c),
                    "keymap_json": show(&l.keymap_json),
                    "source": l.source,
                })
            });
            print_json(&json!({
                "requested": res.requested,
                "keyboard": res.keyboard,
                "steps": res.steps,
                "files": files,
                "community_layouts": layouts,
                "keymap": km,
            }))?;
        }
        Format::Text => {
            let mut lines = vec![format!("keyboard: {}", res.keyboard)];
            for step in &res.steps {
                lines.push(match step {
                    ResolveStep::Alias { from, to } => {
                        format!("  via alias {from} -> {to} (data/mappings/keyboard_aliases.hjson)")
                    }
                    ResolveStep::DefaultFolder { from, to, file } => {
                        format!("  via DEFAULT_FOLDER {from} -> {to} ({file})")
                    }
                });
            }
            for (label, list) in [
                ("info", &files.info_json),
                ("config.h", &files.config_h),
                ("rules.mk", &files.rules_mk),
                ("post_config.h", &files.post_config_h),
                ("post_rules.mk", &files.post_rules_mk),
            ] {
                for f in list {
                    lines.push(format!("{label}: {f}"));
                }
            }
            if !layouts.is_empty() {
                lines.push(format!("community layouts: {}", layouts.join(" ")));
            }
            if let Some(l) = &location {
                let file = show(&l.keymap_json)
                    .or_else(|| show(&l.keymap_c))
                    .unwrap_or_default();
                let from = match &l.source {
                    KeymapSource::Keyboard { folder } => format!("keyboard folder {folder}"),
                    KeymapSource::Userspace { folder } => {
                        format!("userspace, keyboard folder {folder}")
                    }
                    KeymapSource::CommunityLayout { repo, layout } => {
                        format!("community layout {repo}/{layout}")
                    }
                };
                lines.push(format!("keymap: {file} ({from})"));
            }
            print_lines(lines)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The tree's userspace, or an error saying how to name one.
pub(crate) fn require_userspace(
    tree: &keyfab_tree::Tree,
) -> anyhow::Result<&keyfab_tree::Userspace> {
    tree.userspace().ok_or_else(|| {
        anyhow::anyhow!("no QMK userspace found; pass --userspace PATH, set QMK_USERSPACE, or run inside a folder with qmk.json")
    })
}

pub fn userspace_list(ctx: &Context, a: FormatArgs) -> anyhow::Result<ExitCode> {
    let us = require_userspace(&ctx.tree)?;
    match a.format {
        Format::Json => {
            print_json(&json!({"userspace": us.root, "build_targets": us.build_targets}))?
        }
        Format::Text => {
            let lines = us.build_targets.iter().map(|t| match t {
                keyfab_tree::BuildTarget::Keymap {
                    keyboard,
                    keymap,
                    env,
                } => {
                    let env: Vec<String> = env.iter().map(|(k, v)| format!(" {k}={v}")).collect();
                    format!("{keyboard}:{keymap}{}", env.concat())
                }
                keyfab_tree::BuildTarget::JsonFile { path } => path.clone(),
            });
            print_lines(lines)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

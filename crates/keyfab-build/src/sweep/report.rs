//! The sweep report: `sweep.json` (the data; also what the next sweep
//! compares against), `junit.xml` for CI, and `index.html`, a static
//! self-contained page (no external resources) with counts, what changed
//! since the previous sweep, and a filterable table, failures first.
//!
//! Rendering is pure: `Report` → text. Only [`write`] touches the disk.

use super::run::{Status, TargetResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

pub const FORMAT: u32 = 1;

/// Totals of a sweep.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub ok: usize,
    pub failed: usize,
    pub skipped: usize,
    pub compiled: usize,
    pub cached: usize,
    pub warnings: usize,
}

impl Counts {
    pub fn of(results: &[TargetResult]) -> Counts {
        let mut c = Counts {
            total: results.len(),
            ..Counts::default()
        };
        for r in results {
            match r.status {
                Status::Ok => c.ok += 1,
                Status::Failed => c.failed += 1,
                Status::Skipped => c.skipped += 1,
            }
            c.compiled += r.compiled;
            c.cached += r.cached;
            c.warnings += usize::from(!r.warnings.is_empty());
        }
        c
    }
}

/// A firmware whose bytes changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HashChange {
    pub target: String,
    pub old: String,
    pub new: String,
}

/// A firmware whose size changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SizeDelta {
    pub target: String,
    pub old: u64,
    pub new: u64,
    pub delta: i64,
}

/// What changed since a previous sweep.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Comparison {
    /// When the previous sweep started (seconds since the epoch).
    pub previous_started: u64,
    /// Failing now, not failing before (including targets new to the sweep).
    pub new_failures: Vec<String>,
    /// Failing before, building now.
    pub fixed: Vec<String>,
    pub hash_changes: Vec<HashChange>,
    pub size_deltas: Vec<SizeDelta>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// A whole sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub format: u32,
    pub tool: String,
    /// Seconds since the epoch.
    pub started: u64,
    pub duration_ms: u64,
    pub tree: String,
    pub keymap: String,
    pub filters: Vec<String>,
    /// `I/N` when sharded.
    pub shard: Option<String>,
    pub jobs: usize,
    pub interrupted: bool,
    pub counts: Counts,
    #[serde(default)]
    pub compare: Option<Comparison>,
    pub targets: Vec<TargetResult>,
}

/// Compares a sweep with a previous one.
pub fn compare(previous: &Report, current: &[TargetResult]) -> Comparison {
    let old: BTreeMap<&str, &TargetResult> = previous
        .targets
        .iter()
        .map(|t| (t.target.as_str(), t))
        .collect();
    let new: BTreeMap<&str, &TargetResult> =
        current.iter().map(|t| (t.target.as_str(), t)).collect();
    let mut c = Comparison {
        previous_started: previous.started,
        ..Comparison::default()
    };
    for (name, n) in &new {
        let o = old.get(name);
        if o.is_none() {
            c.added.push(name.to_string());
        }
        match (o.map(|o| o.status), n.status) {
            (Some(Status::Failed), Status::Ok) => c.fixed.push(name.to_string()),
            (Some(Status::Ok) | Some(Status::Skipped) | None, Status::Failed) => {
                c.new_failures.push(name.to_string())
            }
            _ => {}
        }
        let Some(o) = o else { continue };
        if let (Some(a), Some(b)) = (&o.sha256, &n.sha256) {
            if a != b {
                c.hash_changes.push(HashChange {
                    target: name.to_string(),
                    old: a.clone(),
                    new: b.clone(),
                });
            }
        }
        if let (Some(a), Some(b)) = (o.size, n.size) {
            if a != b {
                c.size_deltas.push(SizeDelta {
                    target: name.to_string(),
                    old: a,
                    new: b,
                    delta: b as i64 - a as i64,
                });
            }
        }
    }
    for name in old.keys() {
        if !new.contains_key(name) {
            c.removed.push(name.to_string());
        }
    }
    c
}

/// Reads a previous `sweep.json` (from a report folder or the file itself).
pub fn read_previous(path: &Path) -> Result<Option<Report>, String> {
    let file = if path.is_dir() {
        path.join("sweep.json")
    } else {
        path.to_path_buf()
    };
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("{}: not a sweep report: {e}", file.display()))
}

/// Writes `sweep.json`, `junit.xml` and `index.html` into `dir`, each
/// atomically (a temp file renamed into place).
pub fn write(dir: &Path, report: &Report) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(report).map_err(std::io::Error::other)? + "\n";
    for (name, text) in [
        ("sweep.json", json),
        ("junit.xml", junit(report)),
        ("index.html", html(report)),
    ] {
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut tmp, text.as_bytes())?;
        // Reports are for reading (and serving): not the temp file's 0600.
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )?;
        tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    }
    Ok(())
}

/// Text safe in XML content and attributes: escaped, and without the
/// control characters XML 1.0 forbids (compiler logs carry ANSI escapes).
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn secs(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// JUnit XML (the schema Jenkins, GitLab and GitHub's reporters read): one
/// testsuite, one testcase per target (classname = keyboard, name = keymap).
/// Only the schema's attributes: `skipped` is the testsuite's, not the
/// testsuites root's (Jenkins' junit-10.xsd rejects it there).
pub fn junit(report: &Report) -> String {
    let c = &report.counts;
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"keyfab sweep\" tests=\"{}\" failures=\"{}\" errors=\"0\" time=\"{}\">",
        c.total,
        c.failed,
        secs(report.duration_ms)
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"keyfab sweep{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{}\" timestamp=\"{}\">",
        report
            .shard
            .as_ref()
            .map(|s| format!(" {s}"))
            .unwrap_or_default(),
        c.total,
        c.failed,
        c.skipped,
        secs(report.duration_ms),
        iso8601(report.started)
    );
    for t in &report.targets {
        let _ = write!(
            x,
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{}\"",
            xml_escape(&t.keyboard),
            xml_escape(&t.target),
            secs(t.time_ms)
        );
        let warnings: String = t
            .warnings
            .iter()
            .map(|w| format!("{}:\n{}\n", w.file, w.log))
            .collect();
        if t.status == Status::Ok && warnings.is_empty() {
            x.push_str("/>\n");
            continue;
        }
        x.push_str(">\n");
        match t.status {
            Status::Failed => {
                let log = t.error.as_deref().unwrap_or("");
                let first = log.lines().next().unwrap_or("failed");
                let _ = writeln!(
                    x,
                    "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                    xml_escape(first),
                    xml_escape(t.stage.as_deref().unwrap_or("build")),
                    xml_escape(log)
                );
            }
            Status::Skipped => x.push_str("      <skipped message=\"interrupted\"/>\n"),
            Status::Ok => {}
        }
        if !warnings.is_empty() {
            let _ = writeln!(
                x,
                "      <system-err>{}</system-err>",
                xml_escape(&warnings)
            );
        }
        x.push_str("    </testcase>\n");
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) from seconds since the epoch.
pub fn iso8601(secs: u64) -> String {
    let days = secs / 86400;
    let rem = secs % 86400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

const CSS: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{padding:16px 24px;background:#fff;border-bottom:1px solid #ddd}
h1{font-size:20px;margin:0 0 8px}
.meta{color:#666;font-size:12px}
.counts{display:flex;gap:12px;margin-top:12px;flex-wrap:wrap}
.count{padding:8px 14px;border-radius:6px;background:#f0f0f0;min-width:80px}
.count b{display:block;font-size:22px}
.count.ok{background:#e3f6e8}.count.failed{background:#fde2e1}.count.skipped{background:#fff3cd}
main{padding:16px 24px}
section.changes{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 16px;margin-bottom:16px}
section.changes h2{font-size:15px;margin:8px 0}
.controls{display:flex;gap:8px;margin-bottom:8px;align-items:center}
.controls input{flex:1;max-width:420px;padding:6px 8px;font:inherit}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eee;vertical-align:top}
th{position:sticky;top:0;background:#f5f5f5;cursor:pointer;user-select:none}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.st{font-weight:600;border-radius:4px;padding:1px 6px;font-size:12px}
.st.ok{background:#e3f6e8;color:#14622e}.st.failed{background:#fde2e1;color:#a1140f}.st.skipped{background:#fff3cd;color:#7a5b00}
.bar{width:160px;height:10px;background:#eee;border-radius:5px;overflow:hidden;display:inline-block;vertical-align:middle}
.bar i{display:block;height:100%;background:#4c8bf5}
.bar i.hot{background:#f5a623}.bar i.over{background:#e5484d}
code{font:12px ui-monospace,monospace}
pre{font:12px/1.3 ui-monospace,monospace;white-space:pre-wrap;max-height:320px;overflow:auto;background:#1e1e1e;color:#eee;padding:8px;border-radius:4px;margin:4px 0}
details summary{cursor:pointer;color:#555}
.delta.up{color:#a1140f}.delta.down{color:#14622e}
"#;

const JS: &str = r#"
(function(){
var q=document.getElementById('q'),s=document.getElementById('status'),n=document.getElementById('shown');
var rows=[].slice.call(document.querySelectorAll('#targets tbody tr'));
function apply(){var t=q.value.toLowerCase(),st=s.value,k=0;
rows.forEach(function(r){var ok=(!t||r.dataset.name.indexOf(t)>=0)&&(!st||r.dataset.status===st||(st==='warnings'&&r.dataset.warn==='1'));
r.style.display=ok?'':'none';if(ok)k++;});n.textContent=k;}
q.addEventListener('input',apply);s.addEventListener('change',apply);
[].slice.call(document.querySelectorAll('#targets th[data-key]')).forEach(function(th){
th.addEventListener('click',function(){var key=th.dataset.key,dir=th.dataset.dir==='1'?-1:1;th.dataset.dir=dir===1?'1':'0';
var tb=document.querySelector('#targets tbody');rows.sort(function(a,b){var x=a.dataset[key],y=b.dataset[key];
var nx=parseFloat(x),ny=parseFloat(y);if(!isNaN(nx)&&!isNaN(ny))return (nx-ny)*dir;return x<y?-dir:x>y?dir:0;});
rows.forEach(function(r){tb.appendChild(r);});});});
apply();})();
"#;

fn h(s: &str) -> String {
    xml_escape(s)
}

/// The HTML page: self-contained (inline CSS and JS), readable without JS.
pub fn html(report: &Report) -> String {
    let c = &report.counts;
    let mut x = String::new();
    let title = format!("keyfab sweep: {} of {} failed", c.failed, c.total);
    let _ = write!(
        x,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<header>\n<h1>keyfab sweep</h1>\n",
        h(&title)
    );
    let _ = writeln!(
        x,
        "<div class=\"meta\">{} UTC · {:.1} s · keymap <code>{}</code>{}{} · {} jobs · tree <code>{}</code>{}</div>",
        iso8601(report.started).replace('T', " "),
        report.duration_ms as f64 / 1000.0,
        h(&report.keymap),
        if report.filters.is_empty() {
            String::new()
        } else {
            format!(
                " · filters {}",
                report
                    .filters
                    .iter()
                    .map(|f| format!("<code>{}</code>", h(f)))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        },
        report
            .shard
            .as_ref()
            .map(|s| format!(" · shard {}", h(s)))
            .unwrap_or_default(),
        report.jobs,
        h(&report.tree),
        if report.interrupted {
            " · <b>interrupted</b>"
        } else {
            ""
        }
    );
    x.push_str("<div class=\"counts\">\n");
    for (class, label, n) in [
        ("", "targets", c.total),
        ("ok", "ok", c.ok),
        ("failed", "failed", c.failed),
        ("skipped", "skipped", c.skipped),
        ("", "with warnings", c.warnings),
        ("", "objects compiled", c.compiled),
        ("", "objects from cache", c.cached),
    ] {
        let _ = writeln!(
            x,
            "<div class=\"count {class}\" id=\"count-{}\"><b>{n}</b>{label}</div>",
            label.replace(' ', "-")
        );
    }
    x.push_str("</div>\n</header>\n<main>\n");
    if let Some(cmp) = &report.compare {
        changes_section(&mut x, cmp);
    }
    x.push_str("<div class=\"controls\"><input id=\"q\" type=\"search\" placeholder=\"filter targets…\" aria-label=\"filter targets\"> <select id=\"status\" aria-label=\"status\"><option value=\"\">all</option><option value=\"failed\">failed</option><option value=\"ok\">ok</option><option value=\"skipped\">skipped</option><option value=\"warnings\">with warnings</option></select> <span><span id=\"shown\"></span> shown</span></div>\n");
    x.push_str("<table id=\"targets\">\n<thead><tr><th data-key=\"status\">status</th><th data-key=\"name\">target</th><th data-key=\"size\">size</th><th data-key=\"free\">free</th><th data-key=\"time\">time</th><th data-key=\"compiled\">compiled / cached</th><th>sha256</th></tr></thead>\n<tbody>\n");
    // Failures first, then skipped, then the rest; by name within.
    let mut rows: Vec<&TargetResult> = report.targets.iter().collect();
    rows.sort_by_key(|t| {
        (
            match t.status {
                Status::Failed => 0,
                Status::Skipped => 1,
                Status::Ok => 2,
            },
            t.target.clone(),
        )
    });
    let biggest = report
        .targets
        .iter()
        .filter_map(|t| t.max_size.or(t.size))
        .max()
        .unwrap_or(1)
        .max(1);
    // Failure logs start open unless there are many of them.
    let open = c.failed <= 10;
    for t in rows {
        target_row(&mut x, t, biggest, open);
    }
    x.push_str("</tbody>\n</table>\n</main>\n");
    let _ = write!(x, "<script>{JS}</script>\n</body>\n</html>\n");
    x
}

fn changes_section(x: &mut String, cmp: &Comparison) {
    let _ = writeln!(
        x,
        "<section class=\"changes\" id=\"changes\"><h2>Since the sweep of {} UTC</h2>",
        iso8601(cmp.previous_started).replace('T', " ")
    );
    let list = |x: &mut String, title: &str, id: &str, items: &[String]| {
        if items.is_empty() {
            return;
        }
        let _ = writeln!(
            x,
            "<div id=\"{id}\"><b>{title} ({})</b>: {}</div>",
            items.len(),
            items
                .iter()
                .map(|i| format!("<code>{}</code>", h(i)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    list(x, "New failures", "new-failures", &cmp.new_failures);
    list(x, "Fixed", "fixed", &cmp.fixed);
    list(x, "Added", "added", &cmp.added);
    list(x, "Removed", "removed", &cmp.removed);
    if !cmp.hash_changes.is_empty() {
        let _ = writeln!(
            x,
            "<div id=\"hash-changes\"><b>Firmware changed ({})</b>: {}</div>",
            cmp.hash_changes.len(),
            cmp.hash_changes
                .iter()
                .map(|c| format!(
                    "<code>{}</code> {}…→{}…",
                    h(&c.target),
                    &c.old[..8.min(c.old.len())],
                    &c.new[..8.min(c.new.len())]
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !cmp.size_deltas.is_empty() {
        let _ = writeln!(
            x,
            "<div id=\"size-deltas\"><b>Size changes ({})</b>: {}</div>",
            cmp.size_deltas.len(),
            cmp.size_deltas
                .iter()
                .map(|d| format!(
                    "<code>{}</code> {} → {} (<span class=\"delta {}\">{:+}</span>)",
                    h(&d.target),
                    d.old,
                    d.new,
                    if d.delta > 0 { "up" } else { "down" },
                    d.delta
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if cmp.new_failures.is_empty()
        && cmp.fixed.is_empty()
        && cmp.hash_changes.is_empty()
        && cmp.size_deltas.is_empty()
        && cmp.added.is_empty()
        && cmp.removed.is_empty()
    {
        x.push_str("<div>No changes.</div>\n");
    }
    x.push_str("</section>\n");
}

fn target_row(x: &mut String, t: &TargetResult, biggest: u64, open_failures: bool) {
    let status = match t.status {
        Status::Ok => "ok",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
    };
    let free = match (t.size, t.max_size) {
        (Some(s), Some(m)) => Some(m as i64 - s as i64),
        _ => None,
    };
    let _ = write!(
        x,
        "<tr class=\"{status}\" data-status=\"{status}\" data-name=\"{}\" data-warn=\"{}\" data-size=\"{}\" data-free=\"{}\" data-time=\"{}\" data-compiled=\"{}\">",
        h(&t.target.to_lowercase()),
        u8::from(!t.warnings.is_empty()),
        t.size.unwrap_or(0),
        free.unwrap_or(i64::MAX),
        t.time_ms,
        t.compiled
    );
    let _ = write!(
        x,
        "<td><span class=\"st {status}\">{status}</span></td><td><code>{}</code>",
        h(&t.target)
    );
    if let Some(err) = &t.error {
        let _ = write!(
            x,
            "<details{}><summary>{} error</summary><pre>{}</pre></details>",
            if t.status == Status::Failed && open_failures {
                " open"
            } else {
                ""
            },
            h(t.stage.as_deref().unwrap_or("build")),
            h(err)
        );
    }
    if !t.warnings.is_empty() {
        let text: String = t
            .warnings
            .iter()
            .map(|w| format!("{}:\n{}\n", w.file, w.log))
            .collect();
        let _ = write!(
            x,
            "<details><summary>{} warning(s)</summary><pre>{}</pre></details>",
            t.warnings.len(),
            h(&text)
        );
    }
    x.push_str("</td>");
    // size bar: share of the MCU limit (or of the biggest firmware)
    match t.size {
        Some(size) => {
            let limit = t.max_size.unwrap_or(biggest).max(1);
            let pct = (size as f64 * 100.0 / limit as f64).min(100.0);
            let class = if size > limit {
                "over"
            } else if pct > 90.0 {
                "hot"
            } else {
                ""
            };
            let _ = write!(
                x,
                "<td class=\"num\"><span class=\"bar\" title=\"{size} of {limit} bytes ({pct:.1}%)\"><i class=\"{class}\" style=\"width:{pct:.1}%\"></i></span> {size}{}</td>",
                t.max_size.map(|m| format!(" / {m}")).unwrap_or_default()
            );
        }
        None => x.push_str("<td class=\"num\">–</td>"),
    }
    let _ = writeln!(
        x,
        "<td class=\"num\">{}</td><td class=\"num\">{:.2} s</td><td class=\"num\">{} / {}</td><td><code title=\"{}\">{}</code></td></tr>",
        free.map(|f| f.to_string()).unwrap_or_else(|| "–".into()),
        t.time_ms as f64 / 1000.0,
        t.compiled,
        t.cached,
        t.sha256.as_deref().unwrap_or(""),
        t.sha256.as_deref().map(|s| &s[..12.min(s.len())]).unwrap_or("–"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, status: Status, sha: &str, size: u64) -> TargetResult {
        TargetResult {
            target: name.into(),
            keyboard: name.split(':').next().unwrap().into(),
            keymap: "default".into(),
            status,
            stage: (status == Status::Failed).then(|| "build".into()),
            time_ms: 1234,
            plan_from_cache: true,
            compiled: 1,
            cached: 4,
            link_from_cache: false,
            firmware: Some("x.hex".into()),
            size: (status == Status::Ok).then_some(size),
            max_size: Some(28672),
            sha256: (status == Status::Ok).then(|| sha.into()),
            warnings: vec![],
            error: (status == Status::Failed).then(|| "compiling a.c failed <&>\x1b[0m".into()),
            provenance_error: None,
        }
    }

    fn report(targets: Vec<TargetResult>) -> Report {
        Report {
            format: FORMAT,
            tool: "keyfab".into(),
            started: 1_700_000_000,
            duration_ms: 5000,
            tree: "/t".into(),
            keymap: "default".into(),
            filters: vec![],
            shard: None,
            jobs: 2,
            interrupted: false,
            counts: Counts::of(&targets),
            compare: None,
            targets,
        }
    }

    #[test]
    fn comparison() {
        let old = report(vec![
            result("a:default", Status::Ok, "aa", 100),
            result("b:default", Status::Failed, "", 0),
            result("c:default", Status::Ok, "cc", 300),
            result("gone:default", Status::Ok, "gg", 1),
        ]);
        let new = vec![
            result("a:default", Status::Failed, "", 0),
            result("b:default", Status::Ok, "bb", 200),
            result("c:default", Status::Ok, "cd", 310),
            result("new:default", Status::Ok, "nn", 5),
        ];
        let c = compare(&old, &new);
        assert_eq!(c.new_failures, ["a:default"]);
        assert_eq!(c.fixed, ["b:default"]);
        assert_eq!(c.added, ["new:default"]);
        assert_eq!(c.removed, ["gone:default"]);
        assert_eq!(c.hash_changes.len(), 1);
        assert_eq!(c.size_deltas[0].delta, 10);
    }

    #[test]
    fn junit_escapes_and_counts() {
        let r = report(vec![
            result("a:default", Status::Ok, "aa", 100),
            result("b:default", Status::Failed, "", 0),
        ]);
        let x = junit(&r);
        assert!(x.contains("tests=\"2\" failures=\"1\""), "{x}");
        assert!(x.contains("&lt;&amp;&gt;\u{FFFD}[0m"), "{x}");
        assert!(!x.contains('\x1b'));
        // The root's attributes are those Jenkins' junit-10.xsd allows.
        let root = x.lines().find(|l| l.starts_with("<testsuites")).unwrap();
        let names: Vec<&str> = root
            .split_whitespace()
            .filter_map(|w| w.split_once("=\"").map(|(n, _)| n))
            .collect();
        assert_eq!(
            names,
            ["name", "tests", "failures", "errors", "time"],
            "{root}"
        );
    }

    #[test]
    fn html_has_failures_first() {
        let r = report(vec![
            result("a:default", Status::Ok, "aa", 100),
            result("b:default", Status::Failed, "", 0),
        ]);
        let page = html(&r);
        let (a, b) = (
            page.find("data-name=\"a:default\"").unwrap(),
            page.find("data-name=\"b:default\"").unwrap(),
        );
        assert!(b < a);
        assert!(!page.contains("http://") && !page.contains("https://"));
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00");
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20");
    }
}

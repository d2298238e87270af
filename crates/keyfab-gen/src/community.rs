//! The community-module generators (`qmk generate-community-modules-*`,
//! `generate-community-config-h`, the LED/RGB matrix and split transaction
//! `.inc` files).

use crate::{c_headers, err, path_name, py_str, sh_headers, upper, Generated, Result};
use serde_json::{Map, Value};

/// One hook of the module API (`data/constants/module_hooks/*.hjson`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleApi {
    pub name: String,
    pub ret_type: String,
    pub args: String,
    pub call_params: String,
    pub guard: Option<String>,
    pub header: Option<String>,
}

/// The merged module API and its version (the newest hook file's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleApis {
    pub apis: Vec<ModuleApi>,
    pub version: String,
    pub major: String,
    pub minor: String,
    pub patch: String,
}

/// QMK's `merge_ordered_dicts`: later values override, objects merge
/// recursively, arrays append; `!reset!` and `!delete!` as QMK handles them.
pub fn merge_ordered_dicts(dicts: &[&Map<String, Value>]) -> Map<String, Value> {
    let mut result = Map::new();
    for d in dicts {
        for (k, v) in d.iter() {
            add_entry(&mut result, k, v);
        }
    }
    result
}

fn add_entry(target: &mut Map<String, Value>, k: &str, v: &Value) {
    match (target.get(k), v) {
        (Some(existing), Value::Object(vo)) => {
            let mut merged = if vo.contains_key("!reset!") {
                vo.clone()
            } else {
                match existing {
                    Value::Object(eo) => merge_ordered_dicts(&[eo, vo]),
                    _ => vo.clone(),
                }
            };
            merged.shift_remove("!reset!");
            target.insert(k.to_string(), Value::Object(merged));
        }
        (Some(existing), Value::Array(va)) => {
            let new = if va.first().and_then(Value::as_str) == Some("!reset!") {
                va[1..].to_vec()
            } else {
                let mut e = existing.as_array().cloned().unwrap_or_default();
                e.extend(va.iter().cloned());
                e
            };
            target.insert(k.to_string(), Value::Array(new));
        }
        (_, Value::String(s)) if s == "!delete!" => {
            target.shift_remove(k);
        }
        _ => {
            target.insert(k.to_string(), v.clone());
        }
    }
}

impl ModuleApis {
    /// `module_api_list()`: `files` are (file name, parsed content) of the
    /// hook files; they are taken in sorted file-name order, as QMK does.
    pub fn from_hook_files(files: &[(String, Value)]) -> Result<ModuleApis> {
        let mut sorted: Vec<&(String, Value)> = files.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let Some(last) = sorted.last() else {
            return err("no module hook files (data/constants/module_hooks/*.hjson)");
        };
        let maps = sorted
            .iter()
            .map(|(name, v)| {
                v.as_object()
                    .ok_or_else(|| crate::GenError(format!("{name}: not a JSON object")))
            })
            .collect::<Result<Vec<_>>>()?;
        let merged = merge_ordered_dicts(&maps);
        let version = last.0.strip_suffix(".hjson").unwrap_or(&last.0).to_string();
        let version = path_name(&version).to_string();
        let parts: Vec<&str> = version.split('.').collect();
        if parts.len() < 3 {
            return err(format!(
                "module hook file {} is not named MAJOR.MINOR.PATCH",
                last.0
            ));
        }
        let mut apis = Vec::new();
        for (name, m) in &merged {
            let s = |k: &str| m.get(k).filter(|v| !v.is_null()).map(py_str);
            let (Some(ret_type), Some(args)) = (s("ret_type"), s("args")) else {
                return err(format!("module hook {name} lacks ret_type or args"));
            };
            apis.push(ModuleApi {
                name: name.clone(),
                ret_type,
                args,
                call_params: s("call_params").unwrap_or_default(),
                guard: s("guard").filter(|g| !g.is_empty()),
                header: s("header").filter(|h| !h.is_empty()),
            });
        }
        Ok(ModuleApis {
            apis,
            major: parts[0].into(),
            minor: parts[1].into(),
            patch: parts[2].into(),
            version,
        })
    }
}

/// A module a build uses: its name as listed (`qmk/hello_world`), its folder
/// as QMK prints it (absolute), and its `qmk_module.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleInfo {
    pub module: String,
    pub path: String,
    pub json: Value,
}

impl ModuleInfo {
    fn name(&self) -> &str {
        path_name(&self.module)
    }
}

/// `get_modules`: the keyboard's `modules`, then the keymap's, without
/// repeats; two modules with the same last name are an error.
pub fn modules_of(info: &Value, keymap: Option<&Value>) -> Result<Vec<String>> {
    let mut all: Vec<String> = Vec::new();
    for src in std::iter::once(Some(info))
        .chain(std::iter::once(keymap))
        .flatten()
    {
        if let Some(list) = src.get("modules").and_then(Value::as_array) {
            for m in list {
                let m = py_str(m);
                if !all.contains(&m) {
                    all.push(m);
                }
            }
        }
    }
    let mut seen: Vec<String> = Vec::new();
    for m in &all {
        let slug = path_name(m).to_lowercase();
        if seen.contains(&slug) {
            let dups: Vec<&String> = all
                .iter()
                .filter(|o| path_name(o).to_lowercase() == slug)
                .collect();
            return err(format!(
                "Duplicate module name detected: \"{slug}\" - {dups:?}"
            ));
        }
        seen.push(slug);
    }
    Ok(all)
}

fn guarded(lines: &mut Vec<String>, api: &ModuleApi, body: impl FnOnce(&mut Vec<String>)) {
    if let Some(g) = &api.guard {
        lines.push(format!("#if {g}"));
    }
    body(lines);
    if let Some(g) = &api.guard {
        lines.push(format!("#endif  // {g}"));
    }
}

fn features_rules(features: &Map<String, Value>) -> Vec<String> {
    features
        .iter()
        .map(|(f, on)| {
            let on = if crate::truthy(on) { "yes" } else { "no" };
            format!("{}_ENABLE={on}", upper(f))
        })
        .collect()
}

/// `generate-community-modules-rules-mk`.
pub fn community_rules_mk(modules: &[ModuleInfo], year: i32) -> Generated {
    let mut lines = sh_headers(year);
    if !modules.is_empty() {
        lines.push(String::new());
        lines.push("OPT_DEFS += -DCOMMUNITY_MODULES_ENABLE=TRUE".into());
        for m in modules {
            let p = &m.path;
            let name = path_name(p);
            let up = upper(name);
            lines.push(String::new());
            lines.push(format!("COMMUNITY_MODULES += {name}"));
            lines.push(format!("OPT_DEFS += -DCOMMUNITY_MODULE_{up}_ENABLE=TRUE"));
            lines.push(format!("COMMUNITY_MODULE_PATHS += {p}"));
            lines.push(format!("VPATH += {p}"));
            lines.push(format!("SRC += $(wildcard {p}/{name}.c)"));
            lines.push(format!("MODULE_NAME_{up} := {name}"));
            lines.push(format!("MODULE_PATH_{up} := {p}"));
            lines.push(format!("-include {p}/rules.mk"));
        }
        for m in modules {
            if let Some(features) = m.json.get("features") {
                lines.push(String::new());
                lines.push(format!(
                    "# Module: {}",
                    m.json.get("module_name").map(py_str).unwrap_or_default()
                ));
                if let Some(f) = features.as_object() {
                    lines.extend(features_rules(f));
                }
            }
        }
    }
    Generated::new(lines)
}

fn squashed(lines: Vec<String>) -> Generated {
    Generated {
        lines,
        squash_blank_lines: true,
        errors: Vec::new(),
    }
}

/// `generate-community-config-h`.
pub fn community_config_h(modules: &[String], year: i32) -> Generated {
    let mut lines = c_headers(year);
    lines.push("#pragma once".into());
    lines.push(String::new());
    if !modules.is_empty() {
        lines.push("// Split transactions".into());
        for m in modules {
            lines.push(format!(
                "#ifdef SPLIT_TRANSACTION_IDS_MODULE_{}",
                upper(path_name(m))
            ));
            lines.push("#    define SPLIT_TRANSACTION_RPC".into());
            lines.push("#endif".into());
        }
        lines.push(String::new());
    }
    squashed(lines)
}

fn keycodes(modules: &[ModuleInfo]) -> Vec<String> {
    let mut lines = vec![String::new(), "enum {".to_string()];
    let mut first = true;
    for m in modules {
        let codes = m
            .json
            .get("keycodes")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if codes.is_empty() {
            continue;
        }
        lines.push(format!("    // From module: {}", m.name()));
        for kc in codes {
            let key = kc.get("key").map(py_str).unwrap_or_else(|| "None".into());
            if first {
                lines.push(format!("    {key} = QK_COMMUNITY_MODULE,"));
                first = false;
            } else {
                lines.push(format!("    {key},"));
            }
            for alias in kc
                .get("aliases")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                lines.push(format!("    {} = {key},", py_str(alias)));
            }
        }
        lines.push(String::new());
    }
    lines.push("    LAST_COMMUNITY_MODULE_KEY".into());
    lines.push("};".into());
    lines.push("STATIC_ASSERT((int)LAST_COMMUNITY_MODULE_KEY <= (int)(QK_COMMUNITY_MODULE_MAX+1), \"Too many community module keycodes\");".into());
    lines
}

fn declarations(lines: &mut Vec<String>, api: &ModuleApi, module: &str, user_kb: bool) {
    lines.push(String::new());
    guarded(lines, api, |l| {
        let (r, n, a) = (&api.ret_type, &api.name, &api.args);
        if user_kb {
            l.push(format!("{r} {n}_{module}_user({a});"));
            l.push(format!("{r} {n}_{module}_kb({a});"));
        }
        l.push(format!("{r} {n}_{module}({a});"));
    });
}

/// `generate-community-modules-h`.
pub fn community_modules_h(apis: &ModuleApis, modules: &[ModuleInfo], year: i32) -> Generated {
    let mut lines = c_headers(year);
    let (maj, min, pat, ver) = (&apis.major, &apis.minor, &apis.patch, &apis.version);
    lines.extend([
        "#pragma once".to_string(),
        "#include <stdint.h>".into(),
        "#include <stdbool.h>".into(),
        "#include <keycodes.h>".into(),
        String::new(),
        "#include \"compiler_support.h\"".into(),
        String::new(),
        "#define COMMUNITY_MODULES_API_VERSION_BUILDER(ver_major,ver_minor,ver_patch) (((((uint32_t)(ver_major))&0xFF) << 24) | ((((uint32_t)(ver_minor))&0xFF) << 16) | (((uint32_t)(ver_patch))&0xFF))".into(),
        format!("#define COMMUNITY_MODULES_API_VERSION COMMUNITY_MODULES_API_VERSION_BUILDER({maj},{min},{pat})"),
        format!("#define ASSERT_COMMUNITY_MODULES_MIN_API_VERSION(ver_major,ver_minor,ver_patch) STATIC_ASSERT(COMMUNITY_MODULES_API_VERSION_BUILDER(ver_major,ver_minor,ver_patch) <= COMMUNITY_MODULES_API_VERSION, \"Community module requires a newer version of QMK modules API -- needs: \" #ver_major \".\" #ver_minor \".\" #ver_patch \", current: {ver}.\")"),
        String::new(),
        "typedef struct keyrecord_t keyrecord_t; // forward declaration so we don't need to include quantum.h".into(),
        String::new(),
    ]);
    if !modules.is_empty() {
        lines.extend(keycodes(modules));
        for api in &apis.apis {
            if let Some(h) = &api.header {
                lines.push(String::new());
                guarded(&mut lines, api, |l| l.push(format!("#include <{h}>")));
            }
        }
        for m in modules {
            lines.push(String::new());
            lines.push(format!("// From module: {}", m.module));
            for api in &apis.apis {
                declarations(&mut lines, api, m.name(), true);
            }
        }
        lines.push(String::new());
        lines.push("// Core wrapper".into());
        for api in &apis.apis {
            declarations(&mut lines, api, "modules", false);
        }
    }
    squashed(lines)
}

fn returns_value(api: &ModuleApi) -> bool {
    api.ret_type == "layer_state_t" || api.ret_type == "report_mouse_t"
}

fn implementations(lines: &mut Vec<String>, api: &ModuleApi, m: &str) {
    lines.push(String::new());
    let (r, n, a, p) = (&api.ret_type, &api.name, &api.args, &api.call_params);
    guarded(lines, api, |l| {
        l.push(format!("__attribute__((weak)) {r} {n}_{m}_user({a}) {{"));
        if r == "bool" {
            l.push("    return true;".into());
        } else if returns_value(api) {
            l.push(format!("    return {p};"));
        }
        l.push("}".into());
        l.push(String::new());

        l.push(format!("__attribute__((weak)) {r} {n}_{m}_kb({a}) {{"));
        if r == "bool" {
            l.push(format!("    if(!{n}_{m}_user({p})) {{ return false; }}"));
            l.push("    return true;".into());
        } else if returns_value(api) {
            l.push(format!("    return {n}_{m}_user({p});"));
        } else {
            l.push(format!("    {n}_{m}_user({p});"));
        }
        l.push("}".into());
        l.push(String::new());

        l.push(format!("__attribute__((weak)) {r} {n}_{m}({a}) {{"));
        if r == "bool" {
            l.push(format!("    if(!{n}_{m}_kb({p})) {{ return false; }}"));
            l.push("    return true;".into());
        } else if returns_value(api) {
            l.push(format!("    return {n}_{m}_kb({p});"));
        } else {
            l.push(format!("    {n}_{m}_kb({p});"));
        }
        l.push("}".into());
    });
}

fn core_implementation(lines: &mut Vec<String>, api: &ModuleApi, modules: &[ModuleInfo]) {
    lines.push(String::new());
    let (r, n, a, p) = (&api.ret_type, &api.name, &api.args, &api.call_params);
    guarded(lines, api, |l| {
        l.push(format!("{r} {n}_modules({a}) {{"));
        if r == "bool" {
            l.push("    return true".into());
        }
        for m in modules {
            let m = m.name();
            if r == "bool" {
                l.push(format!("        && {n}_{m}({p})"));
            } else if returns_value(api) {
                l.push(format!("    {p} = {n}_{m}({p});"));
            } else {
                l.push(format!("    {n}_{m}({p});"));
            }
        }
        if r == "bool" {
            l.push("    ;".into());
        } else if returns_value(api) {
            l.push(format!("    return {p};"));
        }
        l.push("}".into());
    });
}

/// `generate-community-modules-c`.
pub fn community_modules_c(apis: &ModuleApis, modules: &[ModuleInfo], year: i32) -> Generated {
    let mut lines = c_headers(year);
    lines.push(String::new());
    lines.push("#include \"community_modules.h\"".into());
    if !modules.is_empty() {
        for m in modules {
            for api in &apis.apis {
                implementations(&mut lines, api, m.name());
            }
        }
        for api in &apis.apis {
            core_implementation(&mut lines, api, modules);
        }
    }
    squashed(lines)
}

/// The files `_generate_include_per_module` includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerModuleInclude {
    IntrospectionH,
    IntrospectionC,
    LedMatrix,
    RgbMatrix,
}

impl PerModuleInclude {
    pub fn file_name(self) -> &'static str {
        match self {
            PerModuleInclude::IntrospectionH => "introspection.h",
            PerModuleInclude::IntrospectionC => "introspection.c",
            PerModuleInclude::LedMatrix => "led_matrix_module.inc",
            PerModuleInclude::RgbMatrix => "rgb_matrix_module.inc",
        }
    }
}

/// `generate-community-modules-introspection-{c,h}` and the LED/RGB matrix
/// `.inc` generators: a guarded `#include` of each module's file.
pub fn include_per_module(which: PerModuleInclude, modules: &[ModuleInfo], year: i32) -> Generated {
    let mut lines = c_headers(year);
    for m in modules {
        let full = format!("{}/{}", m.path, which.file_name());
        lines.push(String::new());
        lines.push(format!("#if __has_include(\"{full}\")"));
        lines.push(format!("#include \"{full}\""));
        lines.push(format!("#endif  // __has_include(\"{full}\")"));
    }
    squashed(lines)
}

/// `generate-split-transaction-id-community-modules-inc`.
pub fn split_transaction_id_inc(modules: &[String], year: i32) -> Generated {
    let mut lines = c_headers(year);
    for m in modules {
        let up = upper(path_name(m));
        lines.push(format!("#ifdef SPLIT_TRANSACTION_IDS_MODULE_{up}"));
        lines.push(format!("    SPLIT_TRANSACTION_IDS_MODULE_{up},"));
        lines.push("#endif".into());
    }
    squashed(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apis() -> ModuleApis {
        ModuleApis::from_hook_files(&[
            (
                "1.1.0.hjson".into(),
                json!({"shutdown": {"ret_type": "bool", "args": "bool b", "call_params": "b"},
                       "pointing": {"ret_type": "report_mouse_t", "args": "report_mouse_t r", "call_params": "r", "guard": "defined(PD)", "header": "report.h"}}),
            ),
            (
                "0.1.0.hjson".into(),
                json!({"init": {"ret_type": "void", "args": "void"}, "shutdown": {"ret_type": "int"}}),
            ),
        ])
        .unwrap()
    }

    fn hello() -> ModuleInfo {
        ModuleInfo {
            module: "qmk/hello".into(),
            path: "/t/modules/qmk/hello".into(),
            json: json!({"module_name": "Hello", "features": {"console": true, "x": false},
                         "keycodes": [{"key": "CM_A", "aliases": ["CA"]}, {"key": "CM_B"}]}),
        }
    }

    #[test]
    fn api_merge_order_and_version() {
        let a = apis();
        assert_eq!(a.version, "1.1.0");
        let names: Vec<&str> = a.apis.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["init", "shutdown", "pointing"]);
        assert_eq!(a.apis[1].ret_type, "bool");
    }

    #[test]
    fn merge_reset_delete_append() {
        let a = json!({"a": [1], "b": {"x": 1, "y": 2}, "c": 1});
        let b = json!({"a": [2], "b": {"y": "!delete!"}, "c": "!delete!"});
        let c = json!({"a": ["!reset!", 3]});
        let m = merge_ordered_dicts(&[
            a.as_object().unwrap(),
            b.as_object().unwrap(),
            c.as_object().unwrap(),
        ]);
        assert_eq!(Value::Object(m), json!({"a": [3], "b": {"x": 1}}));
    }

    #[test]
    fn modules_dedup_and_duplicates() {
        let info = json!({"modules": ["a/x", "b/y"]});
        let km = json!({"modules": ["b/y", "c/z"]});
        assert_eq!(modules_of(&info, Some(&km)).unwrap(), ["a/x", "b/y", "c/z"]);
        assert!(modules_of(&json!({"modules": ["a/x", "b/X"]}), None).is_err());
    }

    #[test]
    fn rules_mk() {
        let out = community_rules_mk(&[hello()], 2026).contents();
        assert!(out.ends_with("#\n\n\nOPT_DEFS += -DCOMMUNITY_MODULES_ENABLE=TRUE\n\nCOMMUNITY_MODULES += hello\nOPT_DEFS += -DCOMMUNITY_MODULE_HELLO_ENABLE=TRUE\nCOMMUNITY_MODULE_PATHS += /t/modules/qmk/hello\nVPATH += /t/modules/qmk/hello\nSRC += $(wildcard /t/modules/qmk/hello/hello.c)\nMODULE_NAME_HELLO := hello\nMODULE_PATH_HELLO := /t/modules/qmk/hello\n-include /t/modules/qmk/hello/rules.mk\n\n# Module: Hello\nCONSOLE_ENABLE=yes\nX_ENABLE=no\n"), "{out}");
        assert!(community_rules_mk(&[], 2026).contents().ends_with("#\n\n"));
    }

    #[test]
    fn modules_h_and_c() {
        let h = community_modules_h(&apis(), &[hello()], 2026).contents();
        assert!(h.contains("COMMUNITY_MODULES_API_VERSION_BUILDER(1,1,0)\n"));
        assert!(h.contains("current: 1.1.0.\")\n"));
        assert!(h.contains("\nenum {\n    // From module: hello\n    CM_A = QK_COMMUNITY_MODULE,\n    CA = CM_A,\n    CM_B,\n\n    LAST_COMMUNITY_MODULE_KEY\n};\n"));
        assert!(h.contains("\n#if defined(PD)\n#include <report.h>\n#endif  // defined(PD)\n"));
        assert!(h.contains("// From module: qmk/hello\n\nvoid init_hello_user(void);\nvoid init_hello_kb(void);\nvoid init_hello(void);\n"));
        assert!(h.ends_with("// Core wrapper\n\nvoid init_modules(void);\n\nbool shutdown_modules(bool b);\n\n#if defined(PD)\nreport_mouse_t pointing_modules(report_mouse_t r);\n#endif  // defined(PD)\n"));
        assert!(!h.contains("\n\n\n"));
        let c = community_modules_c(&apis(), &[hello()], 2026).contents();
        assert!(c.contains("__attribute__((weak)) bool shutdown_hello_kb(bool b) {\n    if(!shutdown_hello_user(b)) { return false; }\n    return true;\n}\n"));
        assert!(c.contains("report_mouse_t pointing_modules(report_mouse_t r) {\n    r = pointing_hello(r);\n    return r;\n}\n"));
        assert!(c.contains("bool shutdown_modules(bool b) {\n    return true\n        && shutdown_hello(b)\n    ;\n}\n"));
        let empty = community_modules_h(&apis(), &[], 2026).contents();
        assert!(empty.ends_with("quantum.h\n\n"));
    }

    #[test]
    fn includes_config_and_split_ids() {
        let inc = include_per_module(PerModuleInclude::RgbMatrix, &[hello()], 2026).contents();
        assert!(inc.ends_with("*/\n\n#if __has_include(\"/t/modules/qmk/hello/rgb_matrix_module.inc\")\n#include \"/t/modules/qmk/hello/rgb_matrix_module.inc\"\n#endif  // __has_include(\"/t/modules/qmk/hello/rgb_matrix_module.inc\")\n"));
        let cfg = community_config_h(&["qmk/hello".into()], 2026).contents();
        assert!(cfg.ends_with("#pragma once\n\n// Split transactions\n#ifdef SPLIT_TRANSACTION_IDS_MODULE_HELLO\n#    define SPLIT_TRANSACTION_RPC\n#endif\n\n"));
        assert!(community_config_h(&[], 2026)
            .contents()
            .ends_with("#pragma once\n\n"));
        let ids = split_transaction_id_inc(&["qmk/hello".into()], 2026).contents();
        assert!(ids.ends_with("*/\n\n#ifdef SPLIT_TRANSACTION_IDS_MODULE_HELLO\n    SPLIT_TRANSACTION_IDS_MODULE_HELLO,\n#endif\n"));
    }
}

//! `info_json` and `keymap_json`: the merge itself, step by step in QMK's
//! order (`qmk.info`).

use crate::cfile::led_layout;
use crate::dotty;
use crate::engine::{Engine, JsonFile};
use crate::mapping::{config_to_json, Mapping, MappingSource};
use crate::py::{self, repr, str_of, truthy};
use crate::{Diagnostic, Info, Severity};
use keyfab_syntax::{ConfigH, ConfigValue, RulesMk};
use keyfab_tree::{keyboard_chain, KeymapLocation, TreeError};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

const CHIBIOS_PROCESSORS: &[&str] = &[
    "cortex-m0",
    "cortex-m0plus",
    "cortex-m3",
    "cortex-m4",
    "MKL26Z64",
    "MK20DX128",
    "MK20DX256",
    "MK64FX512",
    "MK66FX1M0",
    "RP2040",
    "STM32F042",
    "STM32F072",
    "STM32F103",
    "STM32F303",
    "STM32F401",
    "STM32F405",
    "STM32F407",
    "STM32F411",
    "STM32F446",
    "STM32G0B1",
    "STM32G431",
    "STM32G474",
    "STM32H723",
    "STM32H733",
    "STM32L412",
    "STM32L422",
    "STM32L432",
    "STM32L433",
    "STM32L442",
    "STM32L443",
    "GD32VF103",
    "WB32F3G71",
    "WB32FQ95",
    "AT32F415",
];
const LUFA_PROCESSORS: &[&str] = &[
    "at90usb162",
    "atmega16u2",
    "atmega32u2",
    "atmega16u4",
    "atmega32u4",
    "at90usb646",
    "at90usb647",
    "at90usb1286",
    "at90usb1287",
];
const VUSB_PROCESSORS: &[&str] = &["atmega32a", "atmega328p", "atmega328", "attiny85"];
const JOYSTICK_AXES: &[&str] = &["x", "y", "z", "rx", "ry", "rz"];
const COL_LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijilmnopqrstuvwxyz";
const ROW_LETTERS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop";

/// The merged `rules.mk` values and where each came from.
struct Rules {
    values: RulesMk,
    origin: HashMap<String, String>,
}

/// The merged `config.h` values and where each came from.
struct Config {
    values: ConfigH,
    origin: HashMap<String, String>,
}

/// The state of one merge: the info being built and its diagnostics.
struct Merge<'e> {
    engine: &'e Engine,
    keyboard: String,
    info: Value,
    diags: Vec<Diagnostic>,
    fatal: bool,
}

fn obj(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(o) => o,
        _ => unreachable!("just made an object"),
    }
}

/// `d.setdefault(key, {})`, as a map.
fn child<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    obj(m.entry(key.to_string()).or_insert_with(|| json!({})))
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.as_object()?.get(*p)?;
    }
    Some(cur)
}

fn has(v: &Value, path: &[&str]) -> bool {
    get(v, path).is_some()
}

/// QMK's `deep_update`: objects merge recursively, anything else replaces.
pub fn deep_update(orig: &mut Map<String, Value>, new: Map<String, Value>) {
    for (k, v) in new {
        match v {
            Value::Object(inner) => {
                let slot = orig.entry(k).or_insert_with(|| json!({}));
                deep_update(obj(slot), inner);
            }
            other => {
                orig.insert(k, other);
            }
        }
    }
}

impl<'e> Merge<'e> {
    fn new(engine: &'e Engine, keyboard: &str) -> Self {
        Merge {
            engine,
            keyboard: keyboard.to_string(),
            info: json!({
                "keyboard_name": keyboard,
                "keyboard_folder": keyboard,
                "keymaps": {},
                "layouts": {},
                "parse_errors": [],
                "parse_warnings": [],
                "maintainer": "qmk",
            }),
            diags: Vec::new(),
            fatal: false,
        }
    }

    fn kb_path(&self) -> String {
        format!("keyboards/{}", self.keyboard)
    }

    fn info_map(&mut self) -> &mut Map<String, Value> {
        obj(&mut self.info)
    }

    fn record(&mut self, list: &str, sev: Severity, path: &str, line: usize, msg: String) {
        let m = self.info_map();
        let slot = m.entry(list.to_string()).or_insert_with(|| json!([]));
        if !slot.is_array() {
            *slot = json!([]);
        }
        if let Value::Array(a) = slot {
            a.push(Value::from(msg.clone()));
        }
        self.diags.push(Diagnostic {
            severity: sev,
            path: path.to_string(),
            line,
            json_path: None,
            message: msg,
        });
    }

    /// QMK's `_log_error`: recorded in `parse_errors` and reported.
    fn error_at(&mut self, path: &str, line: usize, msg: String) {
        self.record("parse_errors", Severity::Error, path, line, msg);
    }
    fn error(&mut self, msg: String) {
        let p = self.kb_path();
        self.error_at(&p, 0, msg);
    }
    /// QMK's `_log_warning`.
    fn warning_at(&mut self, path: &str, line: usize, msg: String) {
        self.record("parse_warnings", Severity::Warning, path, line, msg);
    }
    fn warning(&mut self, msg: String) {
        let p = self.kb_path();
        self.warning_at(&p, 0, msg);
    }
    /// Reported only (QMK's `cli.log`), not recorded in the info.
    fn log(&mut self, sev: Severity, path: &str, line: usize, msg: String) {
        self.diags.push(Diagnostic {
            severity: sev,
            path: path.to_string(),
            line,
            json_path: None,
            message: msg,
        });
    }
    /// Where QMK would have stopped with an exception: we report it and go on.
    fn crash(&mut self, path: &str, msg: String) {
        self.fatal = true;
        self.log(
            Severity::Error,
            path,
            0,
            format!("QMK would stop here: {msg}"),
        );
    }

    fn into_info(self) -> Info {
        Info {
            value: self.info,
            diagnostics: self.diags,
            fatal: self.fatal,
        }
    }
}

/// QMK's `find_info_json`: the keyboard's own folder first, then up to five
/// parents; only files that exist.
pub(crate) fn find_info_json(engine: &Engine, keyboard: &str) -> Vec<String> {
    let chain = keyboard_chain(keyboard);
    let mut files = Vec::new();
    for folder in chain.iter().rev().take(6) {
        for name in ["info.json", "keyboard.json"] {
            let rel = format!("keyboards/{folder}/{name}");
            if engine.exists(&rel) {
                files.push(rel);
            }
        }
    }
    files
}

impl Engine {
    /// The merged info of a keyboard folder, as QMK's `info_json()` returns
    /// it (before `qmk info` strips API-only keys; see
    /// [`crate::strip_api_content`]). Never fails.
    pub fn info_json(&self, keyboard: &str) -> Info {
        match &self.queries {
            Some(q) => q.info_json(keyboard),
            None => self.merge_info_json(keyboard),
        }
    }

    /// [`Engine::info_json`] merged now, from the files (through this
    /// engine's memo tables).
    pub fn merge_info_json(&self, keyboard: &str) -> Info {
        let mut m = Merge::new(self, keyboard);
        m.run_info_json();
        m.into_info()
    }

    /// The merged info of a keyboard and keymap, as QMK's `keymap_json()`:
    /// the keyboard's info, the keymap.json `config`, then the keymap's own
    /// `rules.mk` and `config.h`. Fails only when the keymap does not exist.
    pub fn keymap_json(&self, keyboard: &str, keymap: &str) -> Result<Info, TreeError> {
        let kb_info = self.info_json(keyboard);
        let layouts = community_layouts_of(&kb_info.value);
        let loc = self.tree.require_keymap(keyboard, keymap, &layouts)?;
        Ok(self.keymap_json_at(keyboard, kb_info, &loc))
    }

    /// [`Engine::keymap_json`] with the keyboard info and keymap location
    /// already known.
    pub fn keymap_json_at(&self, keyboard: &str, kb_info: Info, loc: &KeymapLocation) -> Info {
        let mut m = Merge {
            engine: self,
            keyboard: keyboard.to_string(),
            info: kb_info.value,
            diags: kb_info.diagnostics,
            fatal: kb_info.fatal,
        };
        let dir = self.tree.display(&loc.dir);
        if let Some(json_path) = &loc.keymap_json {
            let rel = self.tree.display(json_path);
            match crate::engine::read_text(&self.tree, &rel)
                .and_then(|t| t.ok_or_else(|| "missing".to_string()))
            {
                Ok(text) => match keyfab_syntax::parse_json(&rel, &text) {
                    Ok(km) => {
                        if let Err(e) = self.schemas().validate(&km, "qmk.keymap.v1") {
                            m.fatal = true;
                            m.diags.push(Diagnostic {
                                severity: Severity::Error,
                                path: rel.clone(),
                                line: 0,
                                json_path: Some(e.json_path.clone()),
                                message: format!("Invalid JSON keymap: {}", e.message),
                            });
                        }
                        if let Some(Value::Object(config)) = km.get("config") {
                            deep_update(m.info_map(), config.clone());
                        }
                    }
                    Err(e) => {
                        m.fatal = true;
                        m.log(
                            Severity::Error,
                            &rel,
                            e.line,
                            format!("invalid JSON: {}", e.message),
                        );
                    }
                },
                Err(e) => m.log(Severity::Error, &rel, 0, e),
            }
        }
        let rules_rel = format!("{dir}/rules.mk");
        let mut rules = Rules {
            values: RulesMk::new(),
            origin: HashMap::new(),
        };
        if let Some(text) = crate::engine::read_text(&self.tree, &rules_rel)
            .ok()
            .flatten()
        {
            apply_rules(&mut rules, &rules_rel, &text);
        }
        m.extract_rules_mk(&rules);
        let config_rel = format!("{dir}/config.h");
        let mut config = Config {
            values: ConfigH::new(),
            origin: HashMap::new(),
        };
        if let Some(text) = crate::engine::read_text(&self.tree, &config_rel)
            .ok()
            .flatten()
        {
            let diags = keyfab_syntax::parse_config_h(&config_rel, &text, &mut config.values);
            for d in diags {
                m.log(Severity::Error, &d.path, d.line + 1, d.message);
            }
            for k in config.values.keys() {
                config.origin.insert(k.clone(), config_rel.clone());
            }
        }
        m.extract_config_h(&config);
        m.into_info()
    }
}

/// `community_layouts` of a merged info.
pub fn community_layouts_of(info: &Value) -> Vec<String> {
    info.get("community_layouts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn apply_rules(rules: &mut Rules, rel: &str, text: &str) {
    let mut own = RulesMk::new();
    keyfab_syntax::parse_rules_mk(text, &mut own);
    for k in own.keys() {
        rules.origin.insert(k.clone(), rel.to_string());
    }
    keyfab_syntax::parse_rules_mk(text, &mut rules.values);
}

impl Merge<'_> {
    fn run_info_json(&mut self) {
        self.search_keyboard_h();
        self.merge_info_jsons();
        self.process_defaults();
        let rules = self.keyboard_rules();
        self.extract_rules_mk(&rules);
        let config = self.keyboard_config();
        self.extract_config_h(&config);
        self.matrix_size();
        self.joystick_axis_count();
        self.matrix_masked();
        self.extract_led_config();
        self.validate();
        self.check_matrix();
    }

    /// QMK's `_search_keyboard_h`: `LAYOUT` macros of every `<folder>.h`.
    fn search_keyboard_h(&mut self) {
        let mut layouts: Vec<(String, Value)> = Vec::new();
        let mut aliases: Vec<(String, String)> = Vec::new();
        for folder in keyboard_chain(&self.keyboard) {
            let last = folder.rsplit('/').next().unwrap_or(&folder);
            let rel = format!("keyboards/{folder}/{last}.h");
            let parsed = self.engine.header(&rel);
            let Some(h) = parsed.as_ref() else { continue };
            for p in &h.problems {
                self.log(Severity::Error, &rel, p.line, p.message.clone());
            }
            for (name, layout) in &h.layouts {
                match layouts.iter_mut().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = layout.clone(),
                    None => layouts.push((name.clone(), layout.clone())),
                }
            }
            for (alias, text) in &h.aliases {
                if layouts.iter().any(|(n, _)| n == text) {
                    match aliases.iter_mut().find(|(n, _)| n == alias) {
                        Some(slot) => slot.1 = text.clone(),
                        None => aliases.push((alias.clone(), text.clone())),
                    }
                }
            }
        }
        let info = self.info_map();
        if !aliases.is_empty() {
            let a: Map<String, Value> = aliases
                .into_iter()
                .map(|(k, v)| (k, Value::from(v)))
                .collect();
            info.insert("layout_aliases".into(), Value::Object(a));
        }
        let out = child(info, "layouts");
        for (name, mut layout) in layouts {
            if name.starts_with("LAYOUT_kc") {
                continue;
            }
            let l = obj(&mut layout);
            l.insert("c_macro".into(), json!(true));
            l.insert("json_layout".into(), json!(false));
            out.insert(name, layout);
        }
    }

    /// QMK's `merge_info_jsons`.
    fn merge_info_jsons(&mut self) {
        let own_folder = format!("keyboards/{}/", self.keyboard);
        for rel in find_info_json(self.engine, &self.keyboard) {
            // The keyboard's own files are read by this keyboard alone: parse
            // them here and own the value; parents' files are shared.
            let own = rel
                .strip_prefix(&own_folder)
                .is_some_and(|r| !r.contains('/'));
            let new: Value = if own {
                let f = self.engine.load_json(&rel);
                if !self.check_json(&rel, &f) {
                    continue;
                }
                match f {
                    JsonFile::Parsed { value, .. } => value,
                    _ => continue,
                }
            } else {
                let f = self.engine.json_file(&rel);
                if !self.check_json(&rel, &f) {
                    continue;
                }
                match f.as_ref() {
                    JsonFile::Parsed { value, .. } => value.clone(),
                    _ => continue,
                }
            };
            let Value::Object(mut new) = new else {
                continue;
            };
            if let Some(aliases) = new.remove("layout_aliases") {
                let info = self.info_map();
                let mut merged = match info.remove("layout_aliases") {
                    Some(Value::Object(o)) => o,
                    _ => Map::new(),
                };
                if let Value::Object(a) = aliases {
                    for (k, v) in a {
                        merged.insert(k, v);
                    }
                }
                info.insert("layout_aliases".into(), Value::Object(merged));
            }
            if let Some(Value::Object(layouts)) = new.remove("layouts") {
                for (name, layout) in layouts {
                    self.merge_layout(&rel, name, layout);
                }
            }
            deep_update(self.info_map(), new);
        }
    }

    /// Whether a loaded info file can be merged; reports why not.
    fn check_json(&mut self, rel: &str, file: &JsonFile) -> bool {
        match file {
            JsonFile::Missing => return false,
            JsonFile::Unreadable(e) => {
                self.fatal = true;
                self.log(Severity::Error, rel, 0, e.clone());
                return false;
            }
            JsonFile::Invalid(e) => {
                // QMK: "Invalid JSON encountered attempting to load", exit 1.
                self.fatal = true;
                self.log(
                    Severity::Error,
                    rel,
                    e.line,
                    format!("Invalid JSON encountered: {}", e.message),
                );
                return false;
            }
            JsonFile::Parsed { value, .. } if !value.is_object() => {
                self.error_at(
                    rel,
                    0,
                    format!("Invalid file {rel}, root object should be a dictionary."),
                );
                return false;
            }
            JsonFile::Parsed { .. } => {}
        }
        if let Err(e) = self.engine.keyboard_schema_ok(file) {
            self.diags.push(Diagnostic {
                severity: Severity::Error,
                path: rel.to_string(),
                line: json_line(self.engine, rel, &e.json_path),
                json_path: Some(e.json_path.clone()),
                message: format!("Not including data from file: {}", e.message),
            });
            return false;
        }
        true
    }

    fn merge_layout(&mut self, rel: &str, mut name: String, mut layout: Value) {
        let alias_target = get(&self.info, &["layout_aliases", &name]).cloned();
        if let Some(target) = alias_target {
            let target = str_of(&target);
            self.warning_at(
                rel,
                0,
                format!("info.json uses alias name {name} instead of {target}"),
            );
            name = target;
        }
        let new_keys = layout
            .get("layout")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let existing_len = get(&self.info, &["layouts", &name, "layout"])
            .and_then(Value::as_array)
            .map(Vec::len);
        match existing_len {
            Some(n) if n != new_keys.len() => {
                self.error_at(
                    rel,
                    0,
                    format!(
                        "Number of keys for {name} does not match! info.json specifies {} keys, C macro specifies {n}",
                        new_keys.len()
                    ),
                );
            }
            Some(_) => {
                let existing = obj(&mut self.info_map()["layouts"][&name]);
                existing.insert("json_layout".into(), json!(true));
                if let Some(Value::Array(keys)) = existing.get_mut("layout") {
                    for (old, new) in keys.iter_mut().zip(new_keys) {
                        if let (Value::Object(o), Value::Object(n)) = (old, new) {
                            for (k, v) in n {
                                o.insert(k, v);
                            }
                        }
                    }
                }
            }
            None => {
                if !new_keys
                    .iter()
                    .all(|k| k.as_object().is_some_and(|o| o.contains_key("matrix")))
                {
                    self.error_at(
                        rel,
                        0,
                        format!("Layout \"{name}\" has no \"matrix\" definition in either \"info.json\" or \"<keyboard>.h\"!"),
                    );
                } else {
                    let l = obj(&mut layout);
                    l.insert("c_macro".into(), json!(false));
                    l.insert("json_layout".into(), json!(true));
                    child(self.info_map(), "layouts").insert(name, layout);
                }
            }
        }
    }

    /// QMK's `_process_defaults` (`data/mappings/defaults.hjson`).
    fn process_defaults(&mut self) {
        let defaults = self.engine.mappings().defaults.clone();
        let Value::Object(defaults) = defaults else {
            return;
        };
        for (default_type, thing_map) in defaults {
            let Some(Value::String(selected)) = self.info.get(&default_type).cloned() else {
                continue;
            };
            let items = thing_map
                .get(&selected)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let mut merged = 0;
            let info = self.info_map();
            for (k, v) in &items {
                if !info.contains_key(k) {
                    info.insert(k.clone(), v.clone());
                    merged += 1;
                }
            }
            if merged == 0 && !items.is_empty() {
                self.warning(format!("All defaults for '{default_type}' were skipped, potential redundant config or misconfiguration detected"));
            }
        }
    }

    /// QMK's `rules_mk(keyboard)`: the keyboard's own file, then every level
    /// from the top (the deepest file counts twice).
    fn keyboard_rules(&mut self) -> Rules {
        let mut rules = Rules {
            values: RulesMk::new(),
            origin: HashMap::new(),
        };
        let own = format!("keyboards/{}/rules.mk", self.keyboard);
        let mut files = vec![own];
        files.extend(
            keyboard_chain(&self.keyboard)
                .into_iter()
                .map(|f| format!("keyboards/{f}/rules.mk")),
        );
        for rel in files {
            if let Some(text) = self.engine.rules_file(&rel).as_ref() {
                apply_rules(&mut rules, &rel, text);
            }
        }
        rules
    }

    /// QMK's `config_h(keyboard)`: each level's `config.h` parsed on its own
    /// and laid over the previous ones.
    fn keyboard_config(&mut self) -> Config {
        let mut config = Config {
            values: ConfigH::new(),
            origin: HashMap::new(),
        };
        for folder in keyboard_chain(&self.keyboard) {
            let rel = format!("keyboards/{folder}/config.h");
            let file = self.engine.config_file(&rel);
            let Some(f) = file.as_ref() else { continue };
            for d in &f.diags {
                self.log(Severity::Error, &d.path, d.line + 1, d.message.clone());
            }
            for (k, v) in &f.config {
                config.values.insert(k.clone(), v.clone());
                config.origin.insert(k.clone(), rel.clone());
            }
        }
        config
    }

    /// Line of `#define KEY` in a config.h, for diagnostics.
    fn define_line(&self, rel: &str, key: &str) -> usize {
        let file = self.engine.config_file(rel);
        let Some(f) = file.as_ref() else { return 0 };
        find_line(&f.text, |l| {
            let mut w = l.split_whitespace();
            matches!(w.next(), Some("#define") | Some("#undef")) && w.next() == Some(key)
        })
    }

    fn rules_line(&self, rel: &str, key: &str) -> usize {
        let Some(text) = crate::engine::read_text(&self.engine.tree, rel)
            .ok()
            .flatten()
        else {
            return 0;
        };
        find_line(&text, |l| {
            l.split(['=', '+', '?', ':']).next().map(str::trim) == Some(key)
        })
    }

    /// QMK's `_extract_rules_mk`.
    fn extract_rules_mk(&mut self, rules: &Rules) {
        let processor = match rules.values.get("MCU") {
            Some(mcu) => Value::from(mcu.as_str()),
            None => self
                .info
                .get("processor")
                .cloned()
                .unwrap_or_else(|| json!("atmega32u4")),
        };
        self.info_map()
            .insert("processor".into(), processor.clone());
        let is = |list: &[&str]| processor.as_str().is_some_and(|p| list.contains(&p));
        if is(CHIBIOS_PROCESSORS) {
            let p = processor.as_str().unwrap_or_default().to_string();
            let info = self.info_map();
            info.insert("processor_type".into(), json!("arm"));
            info.insert("protocol".into(), json!("ChibiOS"));
            info.insert("platform_key".into(), json!("chibios"));
            if p.contains("STM32") {
                info.insert("platform".into(), json!("STM32"));
            } else if let Some(series) = rules.values.get("MCU_SERIES") {
                info.insert("platform".into(), json!(series));
            }
        } else if processor.is_null() || is(LUFA_PROCESSORS) || is(VUSB_PROCESSORS) {
            let arch = rules.values.get("ARCH").cloned();
            let vusb = is(VUSB_PROCESSORS);
            let info = self.info_map();
            info.insert("processor_type".into(), json!("avr"));
            info.insert(
                "platform".into(),
                json!(arch.as_deref().unwrap_or("unknown")),
            );
            info.insert("platform_key".into(), json!("avr"));
            info.insert(
                "protocol".into(),
                json!(if vusb { "V-USB" } else { "LUFA" }),
            );
        } else {
            let p = self.kb_path();
            self.log(
                Severity::Warning,
                &p,
                0,
                format!("{}: Unknown MCU: {}", self.keyboard, str_of(&processor)),
            );
            let info = self.info_map();
            for k in [
                "bootloader",
                "platform",
                "processor",
                "processor_type",
                "protocol",
            ] {
                info.insert(k.into(), json!("unknown"));
            }
        }
        let engine = self.engine;
        self.apply_mappings(&engine.mappings().rules, MappingSource::RulesMk, |key| {
            rules.values.get(key).map(|v| {
                (
                    ConfigValue::Text(v.clone()),
                    rules.origin.get(key).cloned().unwrap_or_default(),
                )
            })
        });
        self.extract_features(rules);
        self.extract_matrix_rules(rules);
    }

    fn apply_mappings(
        &mut self,
        mappings: &[Mapping],
        source: MappingSource,
        lookup: impl Fn(&str) -> Option<(ConfigValue, String)>,
    ) {
        let file = source.file_name();
        for m in mappings {
            let Some((value, origin)) = lookup(&m.key) else {
                continue;
            };
            let line = match source {
                MappingSource::ConfigH => self.define_line(&origin, &m.key),
                MappingSource::RulesMk => self.rules_line(&origin, &m.key),
            };
            let key = &m.key;
            if m.invalid {
                let msg = match &m.replace_with {
                    Some(r) => format!("{key} in {file} is no longer a valid option and should be replaced with {r}"),
                    None => format!("{key} in {file} is no longer a valid option and should be removed"),
                };
                self.error_at(&origin, line, msg);
            } else if m.deprecated {
                let msg = match &m.replace_with {
                    Some(r) => format!("{key} in {file} is deprecated in favor of {r} and will be removed at a later date"),
                    None => format!("{key} in {file} is deprecated and will be removed at a later date"),
                };
                self.warning_at(&origin, line, msg);
            }
            if !m.to_json {
                continue;
            }
            let existing = match dotty::get(&self.info, &m.info_key) {
                Ok(v) => v.is_some_and(truthy),
                Err(e) => {
                    self.warning_at(&origin, line, format!("{key}->{}: {e}", m.info_key));
                    continue;
                }
            };
            if existing && m.warn_duplicate {
                self.warning_at(
                    &origin,
                    line,
                    format!("{key} in {file} is overwriting {} in info.json", m.info_key),
                );
            }
            match config_to_json(&m.value_type, &value)
                .and_then(|v| dotty::set(&mut self.info, &m.info_key, v))
            {
                Ok(()) => {}
                Err(e) => self.warning_at(&origin, line, format!("{key}->{}: {e}", m.info_key)),
            }
        }
    }

    /// QMK's `_extract_features`: every `*_ENABLE` of rules.mk.
    fn extract_features(&mut self, rules: &Rules) {
        for (key, value) in &rules.values {
            let Some(stem) = key.strip_suffix("_ENABLE") else {
                continue;
            };
            let name = stem.to_lowercase();
            if name == "lto" {
                continue;
            }
            let lower = value.to_lowercase();
            let v = if ["true", "1", "on", "yes"].contains(&lower.as_str()) {
                json!(true)
            } else if ["false", "0", "off", "no"].contains(&lower.as_str()) {
                json!(false)
            } else {
                json!(value)
            };
            let features = child(self.info_map(), "features");
            if features.contains_key(&name) {
                let all = repr(&Value::Object(features.clone()));
                let origin = rules.origin.get(key).cloned().unwrap_or_default();
                let line = self.rules_line(&origin, key);
                self.warning_at(&origin, line, format!("Feature {name} is specified in both info.json ({all}) and rules.mk ({}). The rules.mk value wins.", str_of(&v)));
            }
            child(self.info_map(), "features").insert(name, v);
        }
    }

    /// QMK's `_extract_matrix_rules` (`CUSTOM_MATRIX`).
    fn extract_matrix_rules(&mut self, rules: &Rules) {
        let Some(custom) = rules.values.get("CUSTOM_MATRIX") else {
            return;
        };
        if custom == "no" {
            return;
        }
        if has(&self.info, &["matrix_pins", "custom"]) {
            self.warning("Custom Matrix is specified in both info.json and rules.mk, the rules.mk values win.".into());
        }
        let key = if custom == "lite" {
            "custom_lite"
        } else {
            "custom"
        };
        child(self.info_map(), "matrix_pins").insert(key.into(), json!(true));
    }

    /// QMK's `_extract_config_h`.
    fn extract_config_h(&mut self, config: &Config) {
        let engine = self.engine;
        self.apply_mappings(&engine.mappings().config, MappingSource::ConfigH, |key| {
            config.values.get(key).map(|v| {
                (
                    v.clone(),
                    config.origin.get(key).cloned().unwrap_or_default(),
                )
            })
        });
        self.extract_matrix_info(config);
        self.extract_secure_unlock(config);
        self.migrate_split();
        self.extract_split_transport(config);
        self.extract_split_right_pins(config);
        self.extract_encoders(config);
        self.extract_split_encoders(config);
    }

    fn text<'c>(config: &'c Config, key: &str) -> &'c str {
        match config.values.get(key) {
            Some(ConfigValue::Text(s)) => s,
            _ => "",
        }
    }

    fn origin(&self, config: &Config, key: &str) -> (String, usize) {
        match config.origin.get(key) {
            Some(rel) => (rel.clone(), self.define_line(rel, key)),
            None => (self.kb_path(), 0),
        }
    }

    fn extract_matrix_info(&mut self, config: &Config) {
        let row_pins = braces_stripped(Self::text(config, "MATRIX_ROW_PINS"));
        let col_pins = braces_stripped(Self::text(config, "MATRIX_COL_PINS"));
        let direct = inner(&Self::text(config, "DIRECT_PINS").replace(' ', ""));
        if config.values.contains_key("MATRIX_ROWS") && config.values.contains_key("MATRIX_COLS") {
            if has(&self.info, &["matrix_size"]) {
                let (p, l) = self.origin(config, "MATRIX_ROWS");
                self.warning_at(&p, l, "Matrix size is specified in both info.json and config.h, the config.h values win.".into());
            }
            let mut size = Map::new();
            for (k, macro_name) in [("cols", "MATRIX_COLS"), ("rows", "MATRIX_ROWS")] {
                let v = match config.values.get(macro_name) {
                    Some(ConfigValue::Text(s)) => py::compute(s),
                    _ => Err("compute() of a flag".into()),
                };
                match v {
                    Ok(n) => {
                        size.insert(k.into(), n.to_json());
                    }
                    Err(e) => {
                        let (p, _) = self.origin(config, macro_name);
                        self.crash(&p, format!("{macro_name}: {e}"));
                        return;
                    }
                }
            }
            self.info_map()
                .insert("matrix_size".into(), Value::Object(size));
        }
        if !row_pins.is_empty() && !col_pins.is_empty() {
            if has(&self.info, &["matrix_pins", "cols"])
                && has(&self.info, &["matrix_pins", "rows"])
            {
                let (p, l) = self.origin(config, "MATRIX_ROW_PINS");
                self.warning_at(&p, l, "Matrix pins are specified in both info.json and config.h, the config.h values win.".into());
            }
            let pins = child(self.info_map(), "matrix_pins");
            pins.insert("cols".into(), extract_pins(&col_pins));
            pins.insert("rows".into(), extract_pins(&row_pins));
        }
        if !direct.is_empty() {
            if has(&self.info, &["matrix_pins", "direct"]) {
                let (p, l) = self.origin(config, "DIRECT_PINS");
                self.warning_at(&p, l, "Direct pins are specified in both info.json and config.h, the config.h values win.".into());
            }
            match extract_direct_matrix(&direct) {
                Some(v) => {
                    child(self.info_map(), "matrix_pins").insert("direct".into(), v);
                }
                None => {
                    let (p, _) = self.origin(config, "DIRECT_PINS");
                    self.crash(&p, "DIRECT_PINS: string index out of range".into());
                }
            }
        }
    }

    fn extract_secure_unlock(&mut self, config: &Config) {
        let unlock = inner(&Self::text(config, "SECURE_UNLOCK_SEQUENCE").replace(' ', ""));
        if unlock.is_empty() {
            return;
        }
        let Some(rows) = extract_2d_array(&unlock) else {
            let (p, _) = self.origin(config, "SECURE_UNLOCK_SEQUENCE");
            self.crash(
                &p,
                "SECURE_UNLOCK_SEQUENCE: string index out of range".into(),
            );
            return;
        };
        let mut out = Vec::new();
        for row in rows {
            let mut r = Vec::new();
            for v in row {
                match py::int(&v) {
                    Ok(i) => r.push(json!(i)),
                    Err(e) => {
                        let (p, _) = self.origin(config, "SECURE_UNLOCK_SEQUENCE");
                        self.crash(&p, e);
                        return;
                    }
                }
            }
            out.push(Value::Array(r));
        }
        if let Some(existing) = get(&self.info, &["secure", "unlock_sequence"]) {
            let msg = format!("Secure unlock sequence is specified in both config.h (SECURE_UNLOCK_SEQUENCE) and info.json (secure.unlock_sequence) (Value: {}), the config.h value wins.", repr(existing));
            let (p, l) = self.origin(config, "SECURE_UNLOCK_SEQUENCE");
            self.warning_at(&p, l, msg);
        }
        child(self.info_map(), "secure").insert("unlock_sequence".into(), Value::Array(out));
    }

    /// `_extract_split_handedness` and `_extract_split_serial`: old keys
    /// moved to their new places.
    fn migrate_split(&mut self) {
        let Some(Value::Object(split)) = self.info_map().get_mut("split") else {
            return;
        };
        if let Some(grid) = split.remove("matrix_grid") {
            child(split, "handedness").insert("matrix_grid".into(), grid);
        }
        if let Some(pin) = split.remove("soft_serial_pin") {
            child(split, "serial").insert("pin".into(), pin);
        }
        if let Some(speed) = split.remove("soft_serial_speed") {
            child(split, "serial").insert("speed".into(), speed);
        }
    }

    fn extract_split_transport(&mut self, config: &Config) {
        if config.values.get("USE_I2C") == Some(&ConfigValue::Flag(true)) {
            if let Some(t) = get(&self.info, &["split", "transport"]) {
                if t.get("protocol").is_some() {
                    let msg = format!("Split transport is specified in both config.h (USE_I2C) and info.json (split.transport.protocol) (Value: {}), the config.h value wins.", repr(t));
                    let (p, l) = self.origin(config, "USE_I2C");
                    self.warning_at(&p, l, msg);
                }
            }
            let split = child(self.info_map(), "split");
            child(split, "transport").insert("protocol".into(), json!("i2c"));
        } else if has(&self.info, &["split", "enabled"]) {
            let split = child(self.info_map(), "split");
            let transport = child(split, "transport");
            if !transport.contains_key("protocol") {
                transport.insert("protocol".into(), json!("serial"));
            }
        }
        let Some(Value::Object(split)) = self.info_map().get_mut("split") else {
            return;
        };
        let Some(Value::Object(transport)) = split.get_mut("transport") else {
            return;
        };
        if let Some(v) = transport.remove("sync_matrix_state") {
            child(transport, "sync").insert("matrix_state".into(), v);
        }
        if let Some(v) = transport.remove("sync_modifiers") {
            child(transport, "sync").insert("modifiers".into(), v);
        }
    }

    fn extract_split_right_pins(&mut self, config: &Config) {
        let row_pins = braces_stripped(Self::text(config, "MATRIX_ROW_PINS_RIGHT"));
        let col_pins = braces_stripped(Self::text(config, "MATRIX_COL_PINS_RIGHT"));
        let direct = inner(&Self::text(config, "DIRECT_PINS_RIGHT").replace(' ', ""));
        if row_pins.is_empty() && col_pins.is_empty() && direct.is_empty() {
            return;
        }
        if get(&self.info, &["split", "matrix_pins", "right"]).is_some_and(truthy) {
            let (p, l) = self.origin(config, "MATRIX_ROW_PINS_RIGHT");
            self.warning_at(&p, l, "Right hand matrix data is specified in both info.json and config.h, the config.h values win.".into());
        }
        let direct_v = if direct.is_empty() {
            None
        } else {
            match extract_direct_matrix(&direct) {
                Some(v) => Some(v),
                None => {
                    let (p, _) = self.origin(config, "DIRECT_PINS_RIGHT");
                    self.crash(&p, "DIRECT_PINS_RIGHT: string index out of range".into());
                    return;
                }
            }
        };
        let split = child(self.info_map(), "split");
        let right = child(child(split, "matrix_pins"), "right");
        if !col_pins.is_empty() {
            right.insert("cols".into(), extract_pins(&col_pins));
        }
        if !row_pins.is_empty() {
            right.insert("rows".into(), extract_pins(&row_pins));
        }
        if let Some(d) = direct_v {
            right.insert("direct".into(), d);
        }
    }

    /// QMK's `_extract_encoders_values`.
    fn encoder_values(&mut self, config: &Config, postfix: &str) -> Option<Vec<Value>> {
        let a_key = format!("ENCODER_A_PINS{postfix}");
        let a = inner(&Self::text(config, &a_key).replace(' ', ""));
        let b = inner(&Self::text(config, &format!("ENCODER_B_PINS{postfix}")).replace(' ', ""));
        let res =
            inner(&Self::text(config, &format!("ENCODER_RESOLUTIONS{postfix}")).replace(' ', ""));
        if a.is_empty() || b.is_empty() {
            return None;
        }
        let a: Vec<&str> = a.split(',').filter(|s| !s.is_empty()).collect();
        let b: Vec<&str> = b.split(',').filter(|s| !s.is_empty()).collect();
        let mut res: Vec<ConfigValue> = res
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| ConfigValue::Text(s.to_string()))
            .collect();
        if let Some(default) = config.values.get("ENCODER_RESOLUTION") {
            if *default != ConfigValue::Flag(false) && *default != ConfigValue::Text(String::new())
            {
                while res.len() < a.len() {
                    res.push(default.clone());
                }
            }
        }
        let mut encoders = Vec::new();
        for (i, pin_a) in a.iter().enumerate() {
            let Some(pin_b) = b.get(i) else {
                let (p, _) = self.origin(config, &a_key);
                self.crash(&p, format!("{a_key}: list index out of range"));
                return None;
            };
            let mut e = Map::new();
            e.insert("pin_a".into(), json!(pin_a));
            e.insert("pin_b".into(), json!(pin_b));
            if let Some(r) = res.get(i) {
                let n = match r {
                    ConfigValue::Flag(f) => Ok(*f as i64),
                    ConfigValue::Text(t) => py::int(t),
                };
                match n {
                    Ok(n) => {
                        e.insert("resolution".into(), json!(n));
                    }
                    Err(err) => {
                        let (p, _) = self.origin(config, &a_key);
                        self.crash(&p, err);
                        return None;
                    }
                }
            }
            encoders.push(Value::Object(e));
        }
        Some(encoders)
    }

    fn extract_encoders(&mut self, config: &Config) {
        if let Some(encoders) = self.encoder_values(config, "") {
            if let Some(existing) = get(&self.info, &["encoder", "rotary"]) {
                let msg = format!("Encoder config is specified in both config.h ({}) and info.json ({}). The config.h value wins.", repr(&Value::Array(encoders.clone())), repr(existing));
                let (p, l) = self.origin(config, "ENCODER_A_PINS");
                self.warning_at(&p, l, msg);
            }
            child(self.info_map(), "encoder").insert("rotary".into(), Value::Array(encoders));
        }
        if get(&self.info, &["features", "encoder"]).is_some_and(truthy) {
            child(self.info_map(), "encoder").insert("enabled".into(), json!(true));
        }
    }

    fn extract_split_encoders(&mut self, config: &Config) {
        let Some(encoders) = self.encoder_values(config, "_RIGHT") else {
            return;
        };
        if let Some(existing) = get(&self.info, &["split", "encoder", "right", "rotary"]) {
            let msg = format!("Encoder config is specified in both config.h and info.json (encoder.rotary) (Value: {}), the config.h value wins.", repr(existing));
            let (p, l) = self.origin(config, "ENCODER_A_PINS_RIGHT");
            self.warning_at(&p, l, msg);
        }
        let split = child(self.info_map(), "split");
        child(child(split, "encoder"), "right").insert("rotary".into(), Value::Array(encoders));
    }

    /// QMK's `_matrix_size`.
    fn matrix_size(&mut self) {
        if has(&self.info, &["matrix_size"]) || !has(&self.info, &["matrix_pins"]) {
            return;
        }
        let pins = self.info["matrix_pins"].clone();
        let mut size = Map::new();
        let len = |v: Option<&Value>| v.and_then(Value::as_array).map_or(0, Vec::len);
        if let Some(direct) = pins.get("direct") {
            let first = direct.as_array().and_then(|a| a.first());
            size.insert("cols".into(), json!(len(first)));
            size.insert("rows".into(), json!(len(Some(direct))));
        } else if pins.get("cols").is_some() && pins.get("rows").is_some() {
            size.insert("cols".into(), json!(len(pins.get("cols"))));
            size.insert("rows".into(), json!(len(pins.get("rows"))));
        }
        let split_enabled = get(&self.info, &["split", "enabled"]).is_some_and(truthy);
        if has(&self.info, &["split"]) && split_enabled {
            match size.get("rows").and_then(Value::as_u64) {
                Some(r) => {
                    size.insert("rows".into(), json!(r * 2));
                }
                None => {
                    self.info_map()
                        .insert("matrix_size".into(), Value::Object(size));
                    let p = self.kb_path();
                    self.crash(&p, "matrix_size: KeyError: 'rows'".into());
                    return;
                }
            }
        }
        self.info_map()
            .insert("matrix_size".into(), Value::Object(size));
    }

    fn joystick_axis_count(&mut self) {
        let Some(Value::Object(axes)) = get(&self.info, &["joystick", "axes"]).cloned() else {
            return;
        };
        let mut max = None;
        for k in axes.keys() {
            match JOYSTICK_AXES.iter().position(|a| a == k) {
                Some(i) => max = max.max(Some(i)),
                None => {
                    let p = self.kb_path();
                    self.crash(&p, format!("'{k}' is not in list"));
                    return;
                }
            }
        }
        let count = max.map_or(0, |m| m + 1);
        child(self.info_map(), "joystick").insert("axis_count".into(), json!(count));
    }

    fn matrix_masked(&mut self) {
        let required = has(&self.info, &["dip_switch", "matrix_grid"])
            || has(&self.info, &["split", "handedness", "matrix_grid"]);
        if required && !has(&self.info, &["matrix_pins", "masked"]) {
            child(self.info_map(), "matrix_pins").insert("masked".into(), json!(true));
        }
    }

    /// QMK's `_extract_led_config`: `g_led_config` from `<folder>.c` files.
    fn extract_led_config(&mut self) {
        for feature in ["rgb_matrix", "led_matrix"] {
            let enabled = get(&self.info, &["features", feature]).is_some_and(truthy);
            if !(enabled || has(&self.info, &[feature])) {
                continue;
            }
            if !has(&self.info, &[feature, "layout"]) {
                let cols = get(&self.info, &["matrix_size", "cols"]).cloned();
                let rows = get(&self.info, &["matrix_size", "rows"]).cloned();
                match (cols, rows) {
                    (Some(cols), Some(rows)) if truthy(&cols) && truthy(&rows) => {
                        for folder in keyboard_chain(&self.keyboard) {
                            let last = folder.rsplit('/').next().unwrap_or(&folder).to_string();
                            let rel = format!("keyboards/{folder}/{last}.c");
                            let raw = self.engine.led_config(&rel);
                            let result = match raw.as_ref() {
                                None | Some(Ok(None)) => continue,
                                Some(Err(e)) => Err(e.clone()),
                                Some(Ok(Some(raw))) => led_layout(raw, &cols, &rows),
                            };
                            match result {
                                Ok(layout) => {
                                    if truthy(&layout) {
                                        child(self.info_map(), feature)
                                            .insert("layout".into(), layout);
                                    }
                                }
                                Err(e) => {
                                    self.warning_at(&rel, 0, format!("led_config: {last}.c: {e}"))
                                }
                            }
                        }
                    }
                    _ => self
                        .warning("led_config: matrix size required to parse g_led_config".into()),
                }
            }
            let Some(Value::Object(f)) = self.info.get(feature) else {
                let p = self.kb_path();
                self.crash(&p, format!("KeyError: '{feature}'"));
                continue;
            };
            let layout = f.get("layout").cloned().unwrap_or(Value::Null);
            if !truthy(&layout) {
                continue;
            }
            let layout = layout.as_array().cloned().unwrap_or_default();
            let needs_count = !f.get("led_count").is_some_and(truthy);
            let needs_steps = !f.get("flag_steps").is_some_and(truthy);
            let f = child(self.info_map(), feature);
            if needs_count {
                f.insert("led_count".into(), json!(layout.len()));
            }
            if needs_steps {
                let mut flags: Vec<i64> = vec![0xFF, 0x00];
                let mut kb_flags: Vec<i64> = Vec::new();
                for led in &layout {
                    let v = led.get("flags").and_then(Value::as_i64).unwrap_or(0);
                    if !kb_flags.contains(&v) {
                        kb_flags.push(v);
                    }
                }
                if kb_flags.len() > 1 {
                    let unique: Vec<i64> = [0x05i64, 0x02]
                        .into_iter()
                        .filter(|c| kb_flags.iter().any(|f| c & f != 0))
                        .collect();
                    if unique.len() > 1 {
                        flags.extend(unique);
                    }
                }
                flags.sort_unstable_by(|a, b| b.cmp(a));
                flags.dedup();
                f.insert("flag_steps".into(), json!(flags));
            }
        }
    }

    /// QMK's `_validate`: the API schema, then the non-schema checks.
    fn validate(&mut self) {
        if self.engine.skip_schema_validation {
            return;
        }
        if let Err(e) = self
            .engine
            .schemas()
            .validate(&self.info, "qmk.api.keyboard.v1")
        {
            self.fatal = true;
            let p = self.kb_path();
            self.diags.push(Diagnostic {
                severity: Severity::Error,
                path: p,
                line: 0,
                json_path: Some(e.json_path.clone()),
                message: format!(
                    "Invalid API data: {}: {}: {}",
                    self.keyboard, e.json_path, e.message
                ),
            });
            return;
        }
        self.validate_build_target();
        if let Err(e) = self.validate_layouts() {
            let p = self.kb_path();
            self.crash(&p, e);
            return;
        }
        self.validate_keycodes();
        self.validate_encoders();
        self.validate_bootmagic();
    }

    fn validate_build_target(&mut self) {
        let files = find_info_json(self.engine, &self.keyboard);
        let own = format!("keyboards/{}/keyboard.json", self.keyboard);
        let mut count = 0;
        for f in &files {
            if f.ends_with("/keyboard.json") {
                count += 1;
                if *f != own {
                    self.error_at(
                        f,
                        0,
                        format!("Invalid keyboard.json location detected: {f}."),
                    );
                }
            }
        }
        for f in &files {
            if let Some(dir) = f.strip_suffix("/keyboard.json") {
                let info = format!("{dir}/info.json");
                if self.engine.exists(&info) {
                    self.error_at(
                        &info,
                        0,
                        format!("Invalid info.json location detected: {info}."),
                    );
                }
            }
        }
        if count == 0 {
            self.warning("Build marker \"keyboard.json\" not found.".into());
        }
    }

    fn validate_layouts(&mut self) -> Result<(), String> {
        // Borrowed out of the info for the checks, put back after.
        let layouts = match self.info_map().get_mut("layouts") {
            Some(Value::Object(l)) => std::mem::take(l),
            _ => Map::new(),
        };
        let r = self.check_layouts(&layouts);
        if let Some(Value::Object(l)) = self.info_map().get_mut("layouts") {
            *l = layouts;
        }
        r
    }

    fn check_layouts(&mut self, layouts: &Map<String, Value>) -> Result<(), String> {
        let col_num = get(&self.info, &["matrix_size", "cols"])
            .cloned()
            .unwrap_or(json!(0));
        let row_num = get(&self.info, &["matrix_size", "rows"])
            .cloned()
            .unwrap_or(json!(0));
        let aliases = self
            .info
            .get("layout_aliases")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let community = community_layouts_of(&self.info);
        let community_names: Vec<String> =
            community.iter().map(|l| format!("LAYOUT_{l}")).collect();

        if layouts.is_empty()
            || layouts
                .values()
                .all(|l| !l.get("json_layout").is_some_and(truthy))
        {
            self.error("No LAYOUTs defined! Need at least one layout defined in info.json.".into());
        }
        for (name, l) in layouts {
            if l.get("c_macro").is_some_and(truthy) {
                self.error(format!(
                    "{name}: Layout macro should not be defined within \".h\" files."
                ));
            }
        }
        let (cols, rows) = (
            col_num.as_f64().unwrap_or(0.0),
            row_num.as_f64().unwrap_or(0.0),
        );
        for (name, l) in layouts {
            for (index, key) in keys_of(l).iter().enumerate() {
                let (row, col) = matrix_of(key)
                    .ok_or_else(|| format!("{name}: key {index} has no valid matrix"))?;
                let letter = |set: &[u8], i: i64| -> Option<char> {
                    let len = set.len() as i64;
                    let i = if i < 0 { i + len } else { i };
                    (0..len).contains(&i).then(|| set[i as usize] as char)
                };
                let (Some(r), Some(c)) = (letter(ROW_LETTERS, row), letter(COL_LETTERS, col))
                else {
                    return Err("IndexError: string index out of range".into());
                };
                if (row as f64) < rows && (col as f64) < cols {
                    continue;
                }
                let key_name = key.get("label").map_or_else(|| format!("k{r}{c}"), str_of);
                if row as f64 >= rows {
                    self.error(format!("{name}: Matrix row for key {index} ({key_name}) is {row} but must be less than {}", py_num(&row_num)));
                }
                if col as f64 >= cols {
                    self.error(format!("{name}: Matrix column for key {index} ({key_name}) is {col} but must be less than {}", py_num(&col_num)));
                }
            }
        }
        for (name, l) in layouts {
            let mut seen = std::collections::HashSet::new();
            for (index, key) in keys_of(l).iter().enumerate() {
                // Python compares the matrix's repr; two ints compare the same way.
                let m = match matrix_of(key) {
                    Some(rc) => Ok(rc),
                    None => Err(repr(key.get("matrix").unwrap_or(&Value::Null))),
                };
                if !seen.insert(m) {
                    self.error(format!(
                        "{name}: Matrix location for key {index} is not unique {}",
                        repr(key)
                    ));
                }
            }
        }
        for (name, l) in layouts {
            let keys = keys_of(l);
            if keys.is_empty() {
                return Err("min() arg is an empty sequence".into());
            }
            let mut min_x: Option<Value> = None;
            let mut min_y: Option<Value> = None;
            for k in keys {
                let x = k.get("x").cloned().ok_or("KeyError: 'x'")?;
                let y = k.get("y").cloned().ok_or("KeyError: 'y'")?;
                let h2 = k.get("h").map_or(1.0, |v| v.as_f64().unwrap_or(f64::NAN)) == 2.0;
                let w125 = k.get("w").map_or(1.0, |v| v.as_f64().unwrap_or(f64::NAN)) == 1.25;
                let left = if h2 && w125 {
                    serde_json::Number::from_f64(x.as_f64().unwrap_or(0.0) - 0.25)
                        .map_or(Value::Null, Value::Number)
                } else {
                    x
                };
                if min_x.as_ref().is_none_or(|m| left.as_f64() < m.as_f64()) {
                    min_x = Some(left);
                }
                if min_y.as_ref().is_none_or(|m| y.as_f64() < m.as_f64()) {
                    min_y = Some(y);
                }
            }
            if let Some(x) = min_x.filter(|v| v.as_f64().unwrap_or(0.0) > 0.0) {
                self.warning(format!(
                    "Layout \"{name}\" is offset on X axis by {}",
                    py_num(&x)
                ));
            }
            if let Some(y) = min_y.filter(|v| v.as_f64().unwrap_or(0.0) > 0.0) {
                self.warning(format!(
                    "Layout \"{name}\" is offset on Y axis by {}",
                    py_num(&y)
                ));
            }
        }
        if layouts.len() == 1 && layouts.contains_key("LAYOUT_all") {
            self.warning(
                "\"LAYOUT_all\" should be \"LAYOUT\" unless additional layouts are provided."
                    .into(),
            );
        }
        for name in layouts.keys() {
            if community_names.contains(name) {
                continue;
            }
            if keyboard_in_layout_name(&self.keyboard, name) {
                self.warning(format!(
                    "Layout \"{name}\" should not contain name of keyboard."
                ));
            }
        }
        // QMK removes entries from the list it iterates over, which skips the
        // entry after each removed one; `layout` keeps the last one visited.
        let mut i = 0;
        let mut last_visited = String::new();
        let mut list = community.clone();
        while i < list.len() {
            let layout = list[i].clone();
            last_visited = layout.clone();
            if !self.engine.exists(&format!("layouts/default/{layout}")) {
                if let Some(pos) = list.iter().position(|l| *l == layout) {
                    list.remove(pos);
                }
                self.error(format!(
                    "Claims to support a community layout that does not exist: {layout}"
                ));
            }
            i += 1;
        }
        if list.len() != community.len() {
            self.info_map().insert(
                "community_layouts".into(),
                Value::Array(list.iter().map(|l| json!(l)).collect()),
            );
        }
        for name in &community_names {
            if !layouts.contains_key(name) && !aliases.contains_key(name) {
                self.error(format!(
                    "Claims to support community layout {last_visited} but no {name}() macro found"
                ));
            }
        }
        Ok(())
    }

    fn validate_keycodes(&mut self) {
        let Some(Value::Array(decls)) = self.info.get("keycodes").cloned() else {
            return;
        };
        for d in decls {
            let key = d.get("key").map(str_of).unwrap_or_default();
            if key.chars().count() > 7 && !d.get("aliases").is_some_and(truthy) {
                self.error(format!("Keycode {key} has no short form alias"));
            }
        }
    }

    fn validate_encoders(&mut self) {
        let len = |v: Option<&Value>| v.and_then(Value::as_array).map_or(0, Vec::len);
        let left = get(&self.info, &["encoder", "rotary"]);
        let mut count = len(left);
        if get(&self.info, &["split", "enabled"]).is_some_and(truthy) {
            count += match get(&self.info, &["split", "encoder", "right", "rotary"]) {
                Some(r) => len(Some(r)),
                None => len(left),
            };
        }
        let mut errors = Vec::new();
        let no_layouts = Map::new();
        let layouts = self
            .info
            .get("layouts")
            .and_then(Value::as_object)
            .unwrap_or(&no_layouts);
        for (name, l) in layouts {
            let mut found: Vec<f64> = Vec::new();
            let Some(keys) = l.get("layout").and_then(Value::as_array) else {
                continue;
            };
            for key in keys {
                let Some(enc) = key.get("encoder") else {
                    continue;
                };
                let e = enc.as_f64().unwrap_or(f64::NAN);
                let reason = if count == 0 {
                    Some("non-configured")
                } else if e >= count as f64 {
                    Some("out of bounds")
                } else if found.contains(&e) {
                    Some("duplicate")
                } else {
                    None
                };
                if let Some(reason) = reason {
                    errors.push(format!(
                        "Layout \"{name}\" contains {reason} encoder index {}.",
                        py_num(enc)
                    ));
                }
                found.push(e);
            }
        }
        for e in errors {
            self.error(e);
        }
    }

    fn validate_bootmagic(&mut self) {
        let num = |v: Option<&Value>| v.and_then(Value::as_i64).unwrap_or(0);
        let rows = num(get(&self.info, &["matrix_size", "rows"]));
        let cols = num(get(&self.info, &["matrix_size", "cols"]));
        // Python compares whatever is there: a null or a string raises.
        let pair = |v: Option<&Value>, d: (i64, i64)| -> Result<(i64, i64), String> {
            let Some(v) = v else { return Ok(d) };
            let a = v
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or("cannot unpack bootmagic.matrix")?;
            let n = |x: &Value| {
                x.as_f64()
                    .map(|f| f as i64)
                    .ok_or_else(|| format!("'>=' not supported for {}", repr(x)))
            };
            Ok((n(&a[0])?, n(&a[1])?))
        };
        let checked = pair(get(&self.info, &["bootmagic", "matrix"]), (0, 0)).and_then(|b| {
            pair(
                get(&self.info, &["split", "bootmagic", "matrix"]),
                (rows.div_euclid(2), cols - 1),
            )
            .map(|r| (b, r))
        });
        let ((brow, bcol), (rrow, rcol)) = match checked {
            Ok(v) => v,
            Err(e) => {
                let p = self.kb_path();
                self.crash(&p, e);
                return;
            }
        };
        let half = rows.div_euclid(2);
        if !get(&self.info, &["split", "enabled"]).is_some_and(truthy) {
            if brow >= rows {
                self.error(format!(
                    "Bootmagic row ({brow}) must be in the range 0-{}",
                    rows - 1
                ));
            }
            if bcol >= cols {
                self.error(format!(
                    "Bootmagic col ({bcol}) must be in the range 0-{}",
                    cols - 1
                ));
            }
        } else {
            if brow >= half {
                self.error(format!(
                    "Bootmagic left row ({brow}) must be in the range 0-{}",
                    half - 1
                ));
            }
            if bcol >= cols {
                self.error(format!(
                    "Bootmagic left col ({bcol}) must be in the range 0-{}",
                    cols - 1
                ));
            }
            if rrow < half || rrow >= rows {
                self.error(format!(
                    "Bootmagic right row ({rrow}) must be in the range {half}-{}",
                    rows - 1
                ));
            }
            if rcol >= cols {
                self.error(format!(
                    "Bootmagic right col ({rcol}) must be in the range 0-{}",
                    cols - 1
                ));
            }
        }
    }

    /// QMK's `_check_matrix`.
    fn check_matrix(&mut self) {
        let (Some(pins), Some(size)) = (
            self.info.get("matrix_pins").cloned(),
            self.info.get("matrix_size").cloned(),
        ) else {
            return;
        };
        let actual_cols = size.get("cols").and_then(Value::as_f64).unwrap_or(0.0);
        let actual_rows = size.get("rows").and_then(Value::as_f64).unwrap_or(0.0);
        let len = |v: Option<&Value>| v.and_then(Value::as_array).map_or(0, Vec::len);
        let (cols, rows) = if let Some(d) = pins.get("direct") {
            (len(d.as_array().and_then(|a| a.first())), len(Some(d)))
        } else if pins.get("cols").is_some() && pins.get("rows").is_some() {
            (len(pins.get("cols")), len(pins.get("rows")))
        } else if pins.get("cols").is_none() && pins.get("rows").is_none() {
            return;
        } else {
            (0, 0)
        };
        let shown = |v: Option<&Value>| v.map_or("0".to_string(), py_num);
        if cols as f64 != actual_cols && cols as f64 != actual_cols / 2.0 {
            self.error(format!(
                "MATRIX_COLS is inconsistent with the size of MATRIX_COL_PINS: {cols} != {}",
                shown(size.get("cols"))
            ));
        }
        if rows as f64 != actual_rows && rows as f64 != actual_rows / 2.0 {
            self.error(format!(
                "MATRIX_ROWS is inconsistent with the size of MATRIX_ROW_PINS: {rows} != {}",
                shown(size.get("rows"))
            ));
        }
    }
}

fn keys_of(l: &Value) -> &[Value] {
    l.get("layout")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn matrix_of(key: &Value) -> Option<(i64, i64)> {
    let m = key.get("matrix")?.as_array()?;
    if m.len() != 2 {
        return None;
    }
    Some((m[0].as_i64()?, m[1].as_i64()?))
}

/// A number as Python prints it.
fn py_num(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => py::repr_float(n.as_f64().unwrap_or_default()),
        other => str_of(other),
    }
}

/// QMK's `_keyboard_in_layout_name`.
fn keyboard_in_layout_name(keyboard: &str, layout: &str) -> bool {
    const SAFE: &[&str] = &[
        "ansi", "iso", "jp", "jis", "ortho", "wkl", "tkl", "preonic", "planck",
    ];
    let layout = remove_dims(layout, true);
    let layout = remove_dims(&layout, false);
    keyboard
        .split('/')
        .filter(|f| !SAFE.contains(f))
        .any(|f| layout.contains(f))
}

/// `re.sub(r"_split_\d+x\d+_\d+", "", s)` (split) or `re.sub(r"_\d+x\d+", "", s)`.
fn remove_dims(s: &str, split: bool) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let digits = |mut j: usize| {
        let start = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        (j > start).then_some(j)
    };
    while i < b.len() {
        let prefix = if split { "_split_" } else { "_" };
        if s[i..].starts_with(prefix) {
            let j = i + prefix.len();
            let m = digits(j)
                .filter(|&k| b.get(k) == Some(&b'x'))
                .and_then(|k| digits(k + 1))
                .and_then(|k| {
                    if split {
                        (b.get(k) == Some(&b'_')).then(|| digits(k + 1)).flatten()
                    } else {
                        Some(k)
                    }
                });
            if let Some(end) = m {
                i = end;
                continue;
            }
        }
        let c = s[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// `.replace('{','').replace('}','').strip()`.
fn braces_stripped(s: &str) -> String {
    py::strip(&s.replace(['{', '}'], "")).to_string()
}

/// Python's `s[1:-1]`.
fn inner(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 2 {
        return String::new();
    }
    chars[1..chars.len() - 1].iter().collect()
}

/// QMK's `_extract_pins`.
fn extract_pins(pins: &str) -> Value {
    Value::Array(
        pins.split(',')
            .map(|p| {
                let p = py::strip(p);
                if p.is_empty() || p == "NO_PIN" {
                    Value::Null
                } else if py::is_digit_str(p) {
                    p.parse::<i64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| json!(p))
                } else {
                    json!(p)
                }
            })
            .collect(),
    )
}

/// QMK's `_extract_2d_array`; `None` where Python raises IndexError.
fn extract_2d_array(raw: &str) -> Option<Vec<Vec<String>>> {
    let end = raw.rfind('}')?;
    let raw = &raw[..=end];
    Some(
        raw.split("},{")
            .map(|row| {
                let row = row.strip_prefix('{').unwrap_or(row);
                let row = row.strip_suffix('}').unwrap_or(row);
                row.split(',').map(str::to_string).collect()
            })
            .collect(),
    )
}

fn extract_direct_matrix(raw: &str) -> Option<Value> {
    let rows = extract_2d_array(raw)?;
    Some(Value::Array(
        rows.into_iter()
            .map(|r| {
                Value::Array(
                    r.into_iter()
                        .map(|v| {
                            if v == "NO_PIN" {
                                Value::Null
                            } else {
                                Value::from(v)
                            }
                        })
                        .collect(),
                )
            })
            .collect(),
    ))
}

fn find_line(text: &str, pred: impl Fn(&str) -> bool) -> usize {
    let mut found = 0;
    for (i, l) in text.lines().enumerate() {
        if pred(l.trim()) {
            found = i + 1;
        }
    }
    found
}

/// Best-effort line of a dotted JSON path in a file: the line of the last
/// path component's key.
fn json_line(engine: &Engine, rel: &str, json_path: &str) -> usize {
    let Some(text) = crate::engine::read_text(engine.tree(), rel).ok().flatten() else {
        return 0;
    };
    let mut line = 0;
    let mut from = 0;
    for part in json_path.split('.').filter(|p| !p.is_empty()) {
        if part.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let needle = format!("\"{part}\"");
        if let Some(pos) = text[from..].find(&needle) {
            from += pos;
            line = text[..from].matches('\n').count() + 1;
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_name_check() {
        assert!(keyboard_in_layout_name("foo/bar", "LAYOUT_bar"));
        assert!(!keyboard_in_layout_name("foo/ansi", "LAYOUT_ansi"));
        assert!(!keyboard_in_layout_name("x/split", "LAYOUT_split_3x5_2"));
        assert!(!keyboard_in_layout_name("kb/4x4", "LAYOUT_ortho_4x4"));
    }

    #[test]
    fn deep_update_merges_objects_and_replaces_the_rest() {
        let mut a = json!({"a": {"b": 1, "c": [1]}, "d": 1});
        let b = json!({"a": {"c": [2], "e": {"f": 1}}, "d": {"x": 1}});
        deep_update(obj(&mut a), b.as_object().unwrap().clone());
        assert_eq!(
            a,
            json!({"a": {"b": 1, "c": [2], "e": {"f": 1}}, "d": {"x": 1}})
        );
    }

    #[test]
    fn two_d_arrays() {
        assert_eq!(
            extract_2d_array("{A,B},{C,NO_PIN}xx").unwrap(),
            vec![vec!["A", "B"], vec!["C", "NO_PIN"]]
        );
        assert!(extract_2d_array("abc").is_none());
    }
}

//! Environment overrides: the `LLAMA_STACK_OAUTH_` variable prefix, how their values are read, and
//! the one mechanism that applies them to any section ([`overlay_env`]) and refuses misspelt ones
//! ([`check_names`]).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::config::error::ConfigError;

/// Prefix of the environment variables that override `oauth_config` keys.
pub const ENV_PREFIX: &str = "LLAMA_STACK_OAUTH_";

/// A boolean variable: `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`, any case.
pub(crate) fn parse_bool(var: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Env { var: var.into(), problem: format!("`{v}` is not a boolean (use true or false)") }),
    }
}

/// Separator between a section and its key in a variable name: `LLAMA_STACK_OAUTH_AUDIT__PATH` sets
/// `audit.path`. (The single `_` of earlier releases, `LLAMA_STACK_OAUTH_RATE_LIMITS_BACKEND`, is
/// still read.)
pub const NESTED_SEPARATOR: &str = "__";

/// One key that a variable can set: its path in the section and the names it is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvKey {
    /// Path of the key (`["audit", "path"]`).
    pub path: Vec<String>,
    /// The documented variable (`LLAMA_STACK_OAUTH_AUDIT__PATH`).
    pub var: String,
    /// The same with single underscores, read for compatibility (`None` for top-level keys).
    pub legacy_var: Option<String>,
}

/// Every key of `value` (a section serialized to JSON) under `base`: the keys of the objects named in
/// `sections` are walked into, every other value — maps and lists included — is one key, set with
/// JSON (or the shorthands of [`candidates`]).
pub(crate) fn env_keys(value: &Value, base: &[&str], sections: &[&str]) -> Vec<EnvKey> {
    let mut keys = Vec::new();
    let Value::Object(map) = value else { return keys };
    for (name, child) in map {
        let mut path: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        path.push(name.clone());
        if sections.contains(&name.as_str()) && base.is_empty() {
            let base: Vec<&str> = path.iter().map(String::as_str).collect();
            keys.extend(env_keys(child, &base, sections));
            continue;
        }
        let var = format!("{ENV_PREFIX}{}", path.join(NESTED_SEPARATOR).to_ascii_uppercase());
        let legacy = format!("{ENV_PREFIX}{}", path.join("_").to_ascii_uppercase());
        keys.push(EnvKey { path, legacy_var: (legacy != var).then_some(legacy), var });
    }
    keys
}

/// The values a variable's text may stand for, most specific first, judged by the key's default
/// value: booleans take `true`/`false`/`1`/`0`/`yes`/`no`/`on`/`off`; lists take JSON or
/// comma-separated items; maps take JSON or `key=value,key=value`; an unset optional key tries a
/// boolean, a JSON number or list, the text, then a comma-separated list; an empty text clears it.
fn candidates(var: &str, raw: &str, current: &Value) -> Result<Vec<Value>, ConfigError> {
    let text = raw.trim();
    let comma_list =
        || Value::Array(text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.into()).collect());
    let json = || serde_json::from_str::<Value>(text).ok();
    let bad = |what: &str| ConfigError::Env { var: var.into(), problem: format!("`{raw}` is not {what}") };
    Ok(match current {
        Value::Bool(_) => vec![Value::Bool(parse_bool(var, raw)?)],
        Value::Number(_) => vec![json().filter(Value::is_number).ok_or_else(|| bad("a number"))?],
        Value::String(_) => vec![Value::String(raw.to_string())],
        Value::Array(_) if text.starts_with('[') => vec![json().ok_or_else(|| bad("a JSON list"))?],
        Value::Array(_) => vec![comma_list()],
        Value::Object(_) if text.starts_with('{') => vec![json().ok_or_else(|| bad("a JSON object"))?],
        Value::Object(_) => {
            let mut map = Map::new();
            for pair in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (k, v) = pair.split_once('=').ok_or_else(|| bad("a JSON object or key=value pairs"))?;
                map.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
            }
            vec![Value::Object(map)]
        }
        Value::Null if text.is_empty() => vec![Value::Null],
        Value::Null => {
            let mut all: Vec<Value> = parse_bool(var, raw).ok().map(Value::Bool).into_iter().collect();
            all.extend(json().filter(|v| !v.is_string()));
            all.extend([Value::String(raw.to_string()), comma_list()]);
            all
        }
    })
}

fn slot<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, part| v.as_object_mut()?.get_mut(part))
}

/// `current` (the section at `base`, e.g. `["rate_limits"]`, or `[]` for `oauth_config` itself) with
/// every variable `lookup` knows laid over it: the section is serialized to JSON, each variable's
/// value put at its key (the first reading of [`candidates`] that deserializes wins), and the result
/// deserialized again, so every key the file accepts can be set and is read by the same rules.
/// Returns the new section and the keys that were set.
pub(crate) fn overlay_env<T: Serialize + DeserializeOwned + Default>(
    current: &T,
    base: &[&str],
    sections: &[&str],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(T, Vec<EnvKey>), ConfigError> {
    let internal = |problem: String| ConfigError::Env { var: ENV_PREFIX.into(), problem };
    let mut value = serde_json::to_value(current).map_err(|e| internal(e.to_string()))?;
    // The defaults tell the keys and their kinds apart (an optional key is `null` there).
    let shape = serde_json::to_value(T::default()).map_err(|e| internal(e.to_string()))?;
    let mut applied = Vec::new();
    for key in env_keys(&shape, base, sections) {
        let mut names = std::iter::once(&key.var).chain(key.legacy_var.as_ref());
        let Some((var, raw)) = names.find_map(|n| lookup(n).map(|v| (n.clone(), v))) else { continue };
        let local = &key.path[base.len()..];
        let Some(kind) = local.iter().try_fold(&shape, |v, part| v.get(part)) else { continue };
        let mut first_error = None;
        for candidate in candidates(&var, &raw, kind)? {
            if let Some(target) = slot(&mut value, local) {
                *target = candidate;
            }
            match serde_json::from_value::<T>(value.clone()) {
                Ok(_) => {
                    first_error = None;
                    break;
                }
                Err(e) => {
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        if let Some(problem) = first_error {
            return Err(ConfigError::Env { var, problem: format!("`{raw}` is not accepted ({problem})") });
        }
        applied.push(key);
    }
    let parsed = serde_json::from_value(value).map_err(|e| internal(e.to_string()))?;
    Ok((parsed, applied))
}

/// Fails on a `LLAMA_STACK_OAUTH_` variable that sets no key, naming the closest known variable:
/// a misspelt override would otherwise be ignored in silence.
pub(crate) fn check_names(names: impl IntoIterator<Item = String>, keys: &[EnvKey]) -> Result<(), ConfigError> {
    let known = || keys.iter().flat_map(|k| std::iter::once(&k.var).chain(k.legacy_var.as_ref()));
    for name in names.into_iter().filter(|n| n.starts_with(ENV_PREFIX)) {
        if known().any(|k| *k == name) {
            continue;
        }
        let closest = keys.iter().map(|k| &k.var).min_by_key(|k| edit_distance(k, &name));
        let hint = closest.map_or(String::new(), |c| format!("; did you mean {c}?"));
        return Err(ConfigError::Env { var: name, problem: format!("sets no oauth_config key{hint}") });
    }
    Ok(())
}

/// Levenshtein distance, for suggesting the variable that was meant.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

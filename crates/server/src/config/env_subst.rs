//! Llama Stack's environment substitutions in config values, so a Llama Stack `run.yaml` reads the
//! same here:
//!
//! | written                  | becomes                                                        |
//! |--------------------------|----------------------------------------------------------------|
//! | `${env.NAME}`            | the value of `NAME`; an error when it is unset or empty        |
//! | `${env.NAME:=default}`   | the value of `NAME`, or `default` when it is unset or empty    |
//! | `${env.NAME:+value}`     | `value` when `NAME` is set and non-empty, otherwise empty      |
//!
//! Substitution runs on the parsed YAML tree, string by string, never on the file's text: a variable's
//! value is always one string and cannot add keys or change the structure. As in Llama Stack, a string
//! that is *only* a substitution takes the type its result spells (`true`/`false`, a number), and one
//! that comes out empty becomes null — which is how `provider_id: ${env.OLLAMA_URL:+ollama}` turns a
//! provider off when the variable is unset.

use yaml_serde::Value;

/// A substitution that cannot be made; `key` is the path of the value that holds it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubstError {
    /// `${env.NAME}` without a default, and `NAME` is unset or empty.
    #[error("{key}: environment variable `{name}` is not set (write `${{env.{name}:=default}}` for a default)")]
    Unset { key: String, name: String },
    /// `${env.` that does not close or names no variable.
    #[error(
        "{key}: malformed substitution `{text}` (expected `${{env.NAME}}`, `${{env.NAME:=default}}` or `${{env.NAME:+value}}`)"
    )]
    Malformed { key: String, text: String },
}

/// Replaces every substitution in `value`, reading variables through `env`.
pub fn substitute(value: &mut Value, env: &impl Fn(&str) -> Option<String>) -> Result<(), SubstError> {
    walk(value, String::new(), env)
}

fn walk(value: &mut Value, key: String, env: &impl Fn(&str) -> Option<String>) -> Result<(), SubstError> {
    match value {
        Value::String(text) if text.contains("${env.") => {
            let whole = is_whole_substitution(text);
            let replaced = substitute_str(text, &key, env)?;
            *value = if whole { typed(replaced) } else { Value::String(replaced) };
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, format!("{key}[{i}]"), env)?;
            }
        }
        Value::Mapping(map) => {
            for (name, item) in map.iter_mut() {
                let name = name.as_str().map_or_else(|| format!("{name:?}"), String::from);
                let child = if key.is_empty() { name } else { format!("{key}.{name}") };
                walk(item, child, env)?;
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, key, env)?,
        _ => {}
    }
    Ok(())
}

/// Whether `text` is exactly one substitution (it then takes the type of its result).
fn is_whole_substitution(text: &str) -> bool {
    text.starts_with("${env.")
        && text.ends_with('}')
        && text.matches("${").count() == 1
        && text.matches('}').count() == 1
}

/// A whole-value substitution's result as YAML would read it: empty → null, `true`/`false`, numbers.
fn typed(text: String) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    match text.as_str() {
        "true" | "True" => return Value::Bool(true),
        "false" | "False" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(n) = text.parse::<i64>() {
        return Value::Number(n.into());
    }
    if let Ok(x) = text.parse::<f64>()
        && x.is_finite()
    {
        return Value::Number(x.into());
    }
    Value::String(text)
}

/// Replaces the substitutions of one string; the text around them is kept.
pub fn substitute_str(text: &str, key: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, SubstError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${env.") {
        out.push_str(&rest[..start]);
        let body_start = start + "${env.".len();
        let malformed = || SubstError::Malformed { key: key.to_string(), text: rest[start..].to_string() };
        let end = rest[body_start..].find('}').ok_or_else(malformed)? + body_start;
        let body = &rest[body_start..end];
        let (name, operator) = match body.find(":=").into_iter().chain(body.find(":+")).min() {
            Some(at) => (&body[..at], Some((&body[at..at + 2], &body[at + 2..]))),
            None => (body, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(malformed());
        }
        let set = env(name).filter(|v| !v.is_empty());
        match (operator, set) {
            (None, Some(value)) | (Some((":=", _)), Some(value)) => out.push_str(&value),
            (None, None) => return Err(SubstError::Unset { key: key.to_string(), name: name.to_string() }),
            (Some((":=", default)), None) => out.push_str(default),
            (Some((_, value)), Some(_)) => out.push_str(value),
            (Some(_), None) => {}
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("10.0.0.5".into()),
            "PORT" => Some("8000".into()),
            "EMPTY" => Some(String::new()),
            "FLAG" => Some("true".into()),
            _ => None,
        }
    }

    fn one(text: &str) -> Result<String, SubstError> {
        substitute_str(text, "k", &env)
    }

    #[test]
    fn the_three_forms_read_as_in_llama_stack() {
        assert_eq!(one("http://${env.HOST}:${env.PORT}/v1").unwrap(), "http://10.0.0.5:8000/v1");
        assert_eq!(one("${env.NOPE:=http://localhost:8080}/v1").unwrap(), "http://localhost:8080/v1");
        assert_eq!(one("${env.HOST:=fallback}").unwrap(), "10.0.0.5");
        assert_eq!(one("${env.EMPTY:=fallback}").unwrap(), "fallback", "an empty variable counts as unset");
        assert_eq!(one("${env.HOST:+vllm}").unwrap(), "vllm");
        assert_eq!(one("${env.NOPE:+vllm}").unwrap(), "");
        assert_eq!(one("${env.NOPE:=}").unwrap(), "");
        assert_eq!(one("no substitution here").unwrap(), "no substitution here");
    }

    #[test]
    fn an_unset_variable_without_default_and_malformed_text_name_the_key() {
        assert_eq!(one("${env.NOPE}").unwrap_err(), SubstError::Unset { key: "k".into(), name: "NOPE".into() });
        assert_eq!(one("${env.EMPTY}").unwrap_err(), SubstError::Unset { key: "k".into(), name: "EMPTY".into() });
        assert!(matches!(one("${env.HOST"), Err(SubstError::Malformed { .. })));
        assert!(matches!(one("${env.}"), Err(SubstError::Malformed { .. })));
        assert!(matches!(one("${env.A-B}"), Err(SubstError::Malformed { .. })));
    }

    #[test]
    fn whole_values_take_their_type_and_empty_ones_become_null() {
        let yaml = "a: ${env.PORT}\nb: ${env.FLAG}\nc: ${env.NOPE:+x}\nd: port ${env.PORT}\nlist:\n  - ${env.HOST}\n";
        let mut value: Value = yaml_serde::from_str(yaml).unwrap();
        substitute(&mut value, &env).unwrap();
        assert_eq!(value["a"], Value::Number(8000.into()));
        assert_eq!(value["b"], Value::Bool(true));
        assert_eq!(value["c"], Value::Null);
        assert_eq!(value["d"], Value::String("port 8000".into()));
        assert_eq!(value["list"][0], Value::String("10.0.0.5".into()));
        let mut bad: Value = yaml_serde::from_str("providers:\n  inference:\n    - x: ${env.NOPE}\n").unwrap();
        let err = substitute(&mut bad, &env).unwrap_err().to_string();
        assert!(err.starts_with("providers.inference[0].x: environment variable `NOPE`"), "{err}");
    }

    #[test]
    fn a_value_cannot_add_structure() {
        let evil = |_: &str| Some("x\nevil: 1".to_string());
        let mut value: Value = yaml_serde::from_str("a: ${env.X}\n").unwrap();
        substitute(&mut value, &evil).unwrap();
        assert_eq!(value["a"], Value::String("x\nevil: 1".into()));
        assert!(value.get("evil").is_none());
    }
}

//! `llamagate config check FILE`: validates a stack config exactly as `serve` would — the file, the
//! `LLAMA_STACK_OAUTH_*` overrides, the refusal of misspelt variables — and prints the effective
//! settings, one per line, each with where its value came from (`default`, `file`, or the variable
//! that set it). Secrets print redacted. It loads no model and opens no port, so it answers "why does
//! the server do that?" without starting one.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use llamagate_authz::OAuthConfig;
use serde_json::Value;

use crate::config::StackConfig;
use crate::gate::auth;

/// Options of `llamagate config`.
#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a stack config (with the environment's overrides) and print the effective settings
    /// with the source of each value.
    Check {
        /// The stack config (YAML).
        file: PathBuf,
    },
}

/// Runs `llamagate config …`.
pub fn run(args: ConfigArgs) -> anyhow::Result<()> {
    let ConfigCommand::Check { file } = args.command;
    for line in check(&file, |name| std::env::var(name).ok(), std::env::vars().map(|(name, _)| name))? {
        println!("{line}");
    }
    Ok(())
}

/// The report's lines for `file`, with the environment given as a lookup and a list of names.
fn check(
    file: &Path,
    env: impl Fn(&str) -> Option<String>,
    env_names: impl Iterator<Item = String>,
) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let written: Value = yaml_serde::from_str(&text).with_context(|| format!("{} is not YAML", file.display()))?;
    let mut config = StackConfig::load(file)?;
    config.validate()?;
    OAuthConfig::check_env_names(env_names)?;
    let oauth = auth::resolve_config(config.take_oauth_config()?, &env)?;

    let mut lines = vec![format!("# {}: valid; each value's source after `#`", file.display())];
    let server = serde_json::to_value(&config.server)?;
    if let Value::Object(keys) = &server {
        for (key, value) in keys {
            let source = if written["server"].get(key).is_some() { "file" } else { "default" };
            lines.push(format!("server.{key} = {value}  # {source}"));
        }
    }
    let ids: Vec<&str> = config.models.iter().map(|m| m.id.as_str()).collect();
    lines.push(format!("models = {}  # file", serde_json::to_string(&ids)?));
    // Llama Stack's sections: what they resolve to (URLs as given, keys only said to be set).
    let plan = config.inference_plan()?;
    for provider in &plan.providers {
        let key = if provider.api_key.is_some() { "set" } else { "none" };
        lines.push(format!(
            "providers.inference[{}] = {} {} api_key={key}  # file",
            provider.provider_id,
            provider.provider_type.as_str(),
            serde_json::to_string(&provider.base_urls)?,
        ));
    }
    for (key, model) in plan.local.iter().filter(|(key, _)| key.starts_with("registered_resources")) {
        lines.push(format!("{key} = {} on {}  # file", model.id, crate::config::providers::INLINE_TYPE));
    }
    for model in &plan.remote {
        lines.push(format!(
            "registered_resources.models[model_id={}] = {} on {}  # file",
            model.id, model.provider_model_id, model.provider.provider_id
        ));
    }
    for note in &plan.skipped {
        lines.push(format!("# skipped: {note}"));
    }
    let effective = serde_json::to_value(&oauth)?;
    for key in OAuthConfig::env_keys() {
        let value = key.path.iter().fold(&effective, |value, name| &value[name.as_str()]);
        let set_by = [Some(&key.var), key.legacy_var.as_ref()].into_iter().flatten().find(|var| env(var).is_some());
        let in_file = key.path.iter().try_fold(&written["oauth_config"], |value, name| value.get(name)).is_some();
        let source = match (set_by, in_file) {
            (Some(var), _) => format!("env ({var})"),
            (None, true) => "file".to_string(),
            (None, false) => "default".to_string(),
        };
        lines.push(format!("oauth_config.{} = {value}  # {source}", key.path.join(".")));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_file(dir: &Path, oauth: &str) -> PathBuf {
        let model = dir.join("model.gguf");
        std::fs::write(&model, b"GGUF").unwrap();
        let path = dir.join("stack.yaml");
        let yaml = format!(
            "server:\n  port: 9000\nmodels:\n  - id: m\n    source: {}\noauth_config:\n{oauth}",
            model.display()
        );
        std::fs::write(&path, yaml).unwrap();
        path
    }

    #[test]
    fn llama_stack_sections_are_shown_resolved_and_skipped_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.yaml");
        let yaml = "providers:\n  inference:\n    - provider_id: vllm\n      provider_type: remote::vllm\n      config:\n        \
                    base_url: [http://10.0.0.5:8000/v1]\n        api_key: ${env.LLAMAGATE_TEST_NEVER_SET:=}\n  \
                    files:\n    - provider_id: local\n      provider_type: inline::localfs\n\
                    registered_resources:\n  models:\n    - model_id: big\n      provider_id: vllm\n      \
                    provider_model_id: meta-llama/Llama-3.3-70B-Instruct\n      required_scope: model_big\n\
                    oauth_config:\n  enable_auth: false\n";
        std::fs::write(&path, yaml).unwrap();
        let lines = check(&path, |_| None, std::iter::empty()).unwrap();
        for expected in [
            "providers.inference[vllm] = remote::vllm [\"http://10.0.0.5:8000/v1\"] api_key=none  # file",
            "registered_resources.models[model_id=big] = meta-llama/Llama-3.3-70B-Instruct on vllm  # file",
            "# skipped: providers.files (1 providers): llamagate does not serve this API; skipped",
        ] {
            assert!(lines.iter().any(|l| l == expected), "{expected} not in {lines:#?}");
        }
    }

    #[test]
    fn each_value_says_where_it_came_from_and_secrets_stay_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let oauth = "  auth_server_uri: https://as.example\n  stack_uri: https://llm.example\n  \
                     client_secret: hunter2\n  audit_log_level: INFO\n";
        let file = config_file(dir.path(), oauth);
        let env = |name: &str| (name == "LLAMA_STACK_OAUTH_AUDIT__PATH").then(|| "/var/log/a.log".to_string());
        let names = || ["LLAMA_STACK_OAUTH_AUDIT__PATH".to_string(), "HOME".to_string()].into_iter();
        let lines = check(&file, env, names()).unwrap();
        let line = |key: &str| lines.iter().find(|l| l.starts_with(&format!("{key} = "))).cloned().unwrap_or_default();
        assert_eq!(line("server.port"), "server.port = 9000  # file");
        assert_eq!(line("server.host"), "server.host = \"127.0.0.1\"  # default");
        assert_eq!(
            line("oauth_config.audit.path"),
            "oauth_config.audit.path = \"/var/log/a.log\"  # env (LLAMA_STACK_OAUTH_AUDIT__PATH)"
        );
        assert_eq!(
            line("oauth_config.auth_server_uri"),
            "oauth_config.auth_server_uri = \"https://as.example\"  # file"
        );
        assert!(line("oauth_config.jwks_cache_ttl").ends_with("# default"), "{lines:#?}");
        assert!(line("oauth_config.client_secret").ends_with("# file"), "{lines:#?}");
        assert!(!lines.iter().any(|l| l.contains("hunter2")), "{lines:#?}");

        let misspelt = || ["LLAMA_STACK_OAUTH_AUDIT__PAHT".to_string()].into_iter();
        let error = check(&file, |_| None, misspelt()).unwrap_err().to_string();
        assert!(error.contains("LLAMA_STACK_OAUTH_AUDIT__PATH"), "{error}");
    }
}

//! Environment overrides: every key of `oauth_config` can be set from a variable (table-driven, and
//! the table must list every key), nested keys with `__`, and a misspelt variable stops start-up with
//! a suggestion.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::audit::AuditLogLevel;
use crate::config::{ConfigError, OAuthConfig, Secret};

/// Variable suffix (after `LLAMA_STACK_OAUTH_`), its text, and the key's JSON value afterwards.
const TABLE: &[(&str, &str, &str)] = &[
    ("ALLOW_INSECURE_HTTP", "yes", "true"),
    ("ALLOWED_ALGORITHMS", "PS256,ES384", r#"["PS256","ES384"]"#),
    ("AUDIENCE", "api://llm", r#""api://llm""#),
    ("AUDIENCES", r#"["a","b"]"#, r#"["a","b"]"#),
    ("AUDIT__BLOCK_TIMEOUT_MS", "500", "500"),
    ("AUDIT__CHECKPOINT_PATH", "/srv/anchor/audit.checkpoint", r#""/srv/anchor/audit.checkpoint""#),
    ("AUDIT__ON_FULL", "fail_closed", r#""fail_closed""#),
    ("AUDIT__PATH", "/var/log/llamagate/audit.log", r#""/var/log/llamagate/audit.log""#),
    ("AUDIT__QUEUE_CAPACITY", "1024", "1024"),
    ("AUDIT__RECORD_PROMPTS", "true", "true"),
    ("AUDIT__RETENTION_FILES", "7", "7"),
    ("AUDIT__ROTATE_DAILY", "off", "false"),
    ("AUDIT__ROTATE_MAX_BYTES", "1048576", "1048576"),
    ("AUDIT__SCHEMA", "llama-stack", r#""llama-stack""#),
    ("AUDIT__STDOUT", "1", "true"),
    ("AUDIT_LOG_LEVEL", "WARNING", r#""warn""#),
    ("AUTH_SERVER_URI", "https://as.example", r#""https://as.example""#),
    ("CLAIMS__ACCEPTED_TYP", "at+jwt,JWT", r#"["at+jwt","JWT"]"#),
    ("CLAIMS__ALLOW_MISSING_TYP", "true", "true"),
    ("CLAIMS__ALLOWED_CLIENT_IDS", "app1,app2", r#"["app1","app2"]"#),
    ("CLAIMS__CLIENT_ID", "cid", r#"["cid"]"#),
    ("CLAIMS__FORBIDDEN", "[]", "[]"),
    ("CLAIMS__REQUIRE_AUDIENCE", "false", "false"),
    ("CLAIMS__REQUIRED", "iss,exp,sub", r#"["iss","exp","sub"]"#),
    ("CLAIMS__REQUIRED_VALUES", r#"{"token_use":"access"}"#, r#"{"token_use":"access"}"#),
    ("CLAIMS__SCOPES", "scp, realm_access.roles", r#"["scp","realm_access.roles"]"#),
    ("CLAIMS__SUBJECT", "oid", r#""oid""#),
    ("CLIENT_ID", "12345", r#""12345""#),
    ("CLIENT_SECRET", "s3cret", r#""[redacted]""#),
    ("CLOCK_LEEWAY", "30", "30"),
    ("DEFAULT_SAFETY_LEVEL", "premium_user", r#""premium_user""#),
    ("DEFAULT_USER_TIER", "basic", r#""basic""#),
    ("DPOP_ENABLED", "on", "true"),
    ("DPOP_NONCE", "required", r#""required""#),
    ("DPOP_NONCE_SECRET", "0123456789abcdef0123456789abcdef", r#""[redacted]""#),
    ("DPOP_PROOF_MAX_AGE", "120", "120"),
    ("ENABLE_AUDIT_LOGGING", "no", "false"),
    ("ENABLE_AUTH", "false", "false"),
    ("ENABLE_RATE_LIMITING", "0", "false"),
    ("ENFORCE_CONTENT_SAFETY", "false", "false"),
    ("ENFORCE_MODEL_PERMISSIONS", "false", "false"),
    ("EXPECTED_TYP", "application/at+jwt", r#""application/at+jwt""#),
    ("INTROSPECTION_CACHE_TTL", "10", "10"),
    ("INTROSPECTION_ENDPOINT", "https://as.example/introspect", r#""https://as.example/introspect""#),
    ("INTROSPECTION_REQUIRE_AUDIENCE", "true", "true"),
    ("ISSUERS", "https://a.example,https://b.example", r#"["https://a.example","https://b.example"]"#),
    ("JWKS_CACHE_TTL", "600", "600"),
    ("JWKS_REFETCH_INTERVAL", "5", "5"),
    ("JWKS_URI", "https://as.example/jwks", r#""https://as.example/jwks""#),
    ("MODEL_SCOPE_OVERRIDES", r#"{"m":"model_m"}"#, r#"{"m":"model_m"}"#),
    ("PROVIDER", "okta", r#""okta""#),
    ("RATE_LIMITS__BACKEND", "redis", r#""redis""#),
    ("RATE_LIMITS__BUDGET_KEY", "subject_and_client", r#""subject_and_client""#),
    ("RATE_LIMITS__ON_BACKEND_FAILURE", "open", r#""open""#),
    ("RATE_LIMITS__REDIS_KEY_PREFIX", "prod", r#""prod""#),
    ("RATE_LIMITS__REDIS_TIMEOUT_MS", "250", "250"),
    ("RATE_LIMITS__REDIS_URL", "redis://127.0.0.1:6379/0", r#""redis://127.0.0.1:6379/0""#),
    (
        "RATE_LIMITS__SCOPE_TIERS",
        "gold_access=premium",
        r#"{"basic_access":"basic","enterprise_access":"enterprise","gold_access":"premium","premium_access":"premium"}"#,
    ),
    ("RATE_LIMITS__TIER_CLAIM", "plan", r#""plan""#),
    (
        "RATE_LIMITS__TIERS",
        r#"{"free":{"requests":1,"tokens":2}}"#,
        r#"{"requests":1,"tokens":2,"window_seconds":60,"priority":0,"default_max_tokens":null}"#,
    ),
    ("REALM", "llm", r#""llm""#),
    ("SAFETY__BLOCKED_THRESHOLD", "0.25", "0.25"),
    ("SAFETY__CATEGORIES", r#"{"S1":"hate"}"#, r#""hate""#),
    ("SAFETY__LEVELS", r#"{"open":{}}"#, r#"{"open":{"thresholds":{},"blocked":[],"unlisted_threshold":0.5}}"#),
    ("SAFETY__SCOPE_LEVELS", r#"[{"scope":"s","level":"open"}]"#, r#"[{"scope":"s","level":"open"}]"#),
    ("STACK_URI", "https://llm.example", r#""https://llm.example""#),
    ("TOKEN_VALIDATION_METHOD", "introspection", r#""introspection""#),
];

/// Where a table row's expected value is read: maps set as a whole are checked at one entry.
fn pointer(suffix: &str, path: &[String]) -> String {
    let entry = match suffix {
        "RATE_LIMITS__TIERS" => "/free",
        "SAFETY__CATEGORIES" => "/S1",
        _ => "",
    };
    format!("/{}{entry}", path.join("/"))
}

#[test]
fn every_key_can_be_set_from_the_environment() {
    let keys = OAuthConfig::env_keys();
    let listed: Vec<String> = TABLE.iter().map(|(suffix, ..)| format!("LLAMA_STACK_OAUTH_{suffix}")).collect();
    let known: Vec<String> = keys.iter().map(|k| k.var.clone()).collect();
    assert_eq!(listed, known, "the table lists every key, in the keys' order");
    for ((suffix, text, expected), key) in TABLE.iter().zip(&keys) {
        let mut cfg = OAuthConfig::default();
        cfg.apply_env_overrides(|var| (var == key.var).then(|| text.to_string())).expect(suffix);
        let value = serde_json::to_value(&cfg).expect("json");
        let got = value.pointer(&pointer(suffix, &key.path)).unwrap_or(&Value::Null);
        let expected: Value = serde_json::from_str(expected).expect("expected json");
        assert_eq!(got, &expected, "{suffix}={text}");
    }
}

#[test]
fn nested_keys_also_answer_to_their_single_underscore_names() {
    let vars: BTreeMap<&str, &str> = [
        ("LLAMA_STACK_OAUTH_RATE_LIMITS_BACKEND", "redis"),
        ("LLAMA_STACK_OAUTH_AUDIT_PATH", "/tmp/a.log"),
        ("LLAMA_STACK_OAUTH_CLIENT_SECRET", ""),
    ]
    .into_iter()
    .collect();
    let mut cfg = OAuthConfig { client_secret: Some(Secret::new("kept")), ..OAuthConfig::default() };
    cfg.apply_env_overrides(|k| vars.get(k).map(|v| v.to_string())).expect("legacy names");
    assert_eq!(cfg.rate_limits.backend, crate::ratelimit::Backend::Redis);
    assert_eq!(cfg.audit.path.as_deref(), Some(std::path::Path::new("/tmp/a.log")));
    assert_eq!(cfg.client_secret, None, "an empty value clears an optional key");
    let secrets = OAuthConfig {
        client_secret: Some(Secret::new("kept")),
        dpop_nonce_secret: Some(Secret::new("kept too")),
        ..OAuthConfig::default()
    };
    let mut cfg = secrets.clone();
    cfg.apply_env_overrides(|_| None).expect("nothing set");
    assert_eq!(cfg.client_secret, Some(Secret::new("kept")), "the redacted secret survives the round trip");
    assert_eq!(cfg, secrets, "so does the nonce secret");
    let mut names: Vec<&String> = OAuthConfig::env_keys()
        .iter()
        .flat_map(|k| [Some(&k.var), k.legacy_var.as_ref()])
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .leak()
        .iter()
        .collect();
    let total = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), total, "no two keys share a variable name");
}

#[test]
fn a_misspelt_variable_fails_with_a_suggestion() {
    let err = OAuthConfig::check_env_names(["LLAMA_STACK_OAUTH_AUTH_SERVER_URL".to_string(), "PATH".into()])
        .expect_err("misspelt");
    assert!(matches!(&err, ConfigError::Env { var, .. } if var == "LLAMA_STACK_OAUTH_AUTH_SERVER_URL"), "{err}");
    assert!(err.to_string().contains("did you mean LLAMA_STACK_OAUTH_AUTH_SERVER_URI?"), "{err}");
    let err = OAuthConfig::check_env_names(["LLAMA_STACK_OAUTH_AUDIT__PAHT".to_string()]).expect_err("nested");
    assert!(err.to_string().contains("LLAMA_STACK_OAUTH_AUDIT__PATH"), "{err}");
    let fine = ["LLAMA_STACK_OAUTH_CLAIMS__SCOPES", "LLAMA_STACK_OAUTH_RATE_LIMITS_BACKEND", "HOME"];
    assert!(OAuthConfig::check_env_names(fine.map(String::from)).is_ok());
    let err = OAuthConfig::default()
        .apply_env_overrides(|k| (k == "LLAMA_STACK_OAUTH_PROVIDER").then(|| "ping".to_string()))
        .expect_err("unknown provider");
    assert!(err.to_string().starts_with("LLAMA_STACK_OAUTH_PROVIDER: `ping` is not accepted"), "{err}");
    let err = OAuthConfig::default()
        .apply_env_overrides(|k| (k == "LLAMA_STACK_OAUTH_RATE_LIMITS__TIERS").then(|| "{oops".to_string()))
        .expect_err("bad json");
    assert!(err.to_string().contains("JSON object"), "{err}");
}

#[test]
fn audit_log_level_takes_any_case_and_python_names() {
    for (name, level) in [
        ("INFO", AuditLogLevel::Info),
        ("Warning", AuditLogLevel::Warn),
        ("warn", AuditLogLevel::Warn),
        ("CRITICAL", AuditLogLevel::Error),
        ("FATAL", AuditLogLevel::Error),
        ("DEBUG", AuditLogLevel::Debug),
        ("NOTSET", AuditLogLevel::Debug),
    ] {
        let cfg: OAuthConfig = yaml_serde::from_str(&format!("audit_log_level: {name}\n")).expect(name);
        assert_eq!(cfg.audit_log_level, level, "{name}");
    }
    let err = yaml_serde::from_str::<OAuthConfig>("audit_log_level: loud\n").expect_err("unknown level");
    assert!(err.to_string().contains("critical"), "{err}");
    assert_eq!(serde_json::to_value(AuditLogLevel::Warn).expect("json"), json!("warn"));
}

//! `oauth_config` as a whole: parsing with defaults, validation that names the key, and the
//! environment overrides' prefix pattern.

use super::*;

fn valid() -> OAuthConfig {
    OAuthConfig {
        auth_server_uri: "http://127.0.0.1:9400".into(),
        stack_uri: "http://127.0.0.1:8321".into(),
        ..OAuthConfig::default()
    }
}

#[test]
fn yaml_section_parses_with_defaults_and_rejects_unknown_keys() {
    let cfg: OAuthConfig = yaml_serde::from_str(
        "auth_server_uri: https://as.example\nstack_uri: https://llm.example\nenable_rate_limiting: false\n\
         model_scope_overrides:\n  my-model: model_custom\nclient_secret: hunter2\n",
    )
    .expect("parse");
    assert_eq!(cfg.jwks_cache_ttl, 300);
    assert_eq!(cfg.clock_leeway, 60);
    assert_eq!(cfg.allowed_algorithms, ["RS256", "ES256"]);
    assert_eq!(cfg.expected_typ, "at+jwt");
    assert!(cfg.enable_auth && !cfg.enable_rate_limiting);
    assert_eq!(cfg.effective_audience(), "https://llm.example");
    assert_eq!(cfg.model_scope_overrides["my-model"], "model_custom");
    assert!(cfg.validate().is_ok());
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("hunter2"), "secret leaked in Debug: {debug}");
    assert!(!serde_json::to_string(&cfg).expect("json").contains("hunter2"));
    let err = yaml_serde::from_str::<OAuthConfig>("auth_server_url: x\n").expect_err("typo must fail");
    assert!(err.to_string().contains("auth_server_url"), "{err}");
}

#[test]
fn validation_names_the_key() {
    type Mutation = Box<dyn Fn(&mut OAuthConfig)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("auth_server_uri", Box::new(|c| c.auth_server_uri.clear())),
        ("stack_uri", Box::new(|c| c.stack_uri = "not a url".into())),
        ("auth_server_uri", Box::new(|c| c.auth_server_uri = "http://as.example.com".into())),
        ("allowed_algorithms", Box::new(|c| c.allowed_algorithms = vec!["HS256".into()])),
        ("allowed_algorithms", Box::new(|c| c.allowed_algorithms = vec!["none".into()])),
        ("allowed_algorithms", Box::new(|c| c.allowed_algorithms.clear())),
        ("jwks_cache_ttl", Box::new(|c| c.jwks_cache_ttl = 0)),
        ("clock_leeway", Box::new(|c| c.clock_leeway = 3_600)),
        ("expected_typ", Box::new(|c| c.expected_typ.clear())),
        ("realm", Box::new(|c| c.realm = "a\"b".into())),
        ("client_id", Box::new(|c| c.token_validation_method = TokenValidationMethod::Introspection)),
        ("dpop_nonce", Box::new(|c| c.dpop_nonce = DpopNonceMode::Required)),
        (
            "dpop_nonce_secret",
            Box::new(|c| {
                c.dpop_enabled = true;
                c.dpop_nonce_secret = Some(Secret::new("short"));
            }),
        ),
        (
            "rate_limits.redis_url",
            Box::new(|c| {
                c.dpop_enabled = true;
                c.enable_rate_limiting = false;
                c.rate_limits.backend = Backend::Redis;
            }),
        ),
        (
            "model_scope_overrides",
            Box::new(|c| {
                c.model_scope_overrides.insert("m".into(), "two words".into());
            }),
        ),
    ];
    for (key, mutate) in cases {
        let mut cfg = valid();
        mutate(&mut cfg);
        match cfg.validate() {
            Err(e @ ConfigError::Invalid { key: k, .. }) => {
                assert_eq!(k, key, "{e}");
                assert!(e.to_string().starts_with(&format!("oauth_config.{key}:")), "{e}");
            }
            other => panic!("{key}: expected error, got {other:?}"),
        }
    }
    let mut off = OAuthConfig { enable_auth: false, ..OAuthConfig::default() };
    assert!(off.validate().is_ok());
    off.allow_insecure_http = true;
    let mut lan = valid();
    lan.auth_server_uri = "http://keycloak:8080/realms/x".into();
    lan.allow_insecure_http = true;
    assert!(lan.validate().is_ok());
}

#[test]
fn env_overrides_follow_the_prefix_pattern() {
    let vars: BTreeMap<&str, &str> = [
        ("LLAMA_STACK_OAUTH_AUTH_SERVER_URI", "https://as.other"),
        ("LLAMA_STACK_OAUTH_STACK_URI", "https://me.example"),
        ("LLAMA_STACK_OAUTH_ENABLE_AUTH", "false"),
        ("LLAMA_STACK_OAUTH_ENABLE_RATE_LIMITING", "0"),
        ("LLAMA_STACK_OAUTH_JWKS_CACHE_TTL", "120"),
        ("LLAMA_STACK_OAUTH_TOKEN_VALIDATION_METHOD", "introspection"),
        ("LLAMA_STACK_OAUTH_ALLOWED_ALGORITHMS", "ES256, PS256"),
        ("LLAMA_STACK_OAUTH_MODEL_SCOPE_OVERRIDES", "a=s1, b=s2"),
        ("LLAMA_STACK_OAUTH_AUDIENCE", ""),
        ("LLAMA_STACK_OAUTH_CLIENT_SECRET", "shh"),
    ]
    .into_iter()
    .collect();
    let mut cfg = valid();
    cfg.audience = Some("x".into());
    cfg.apply_env_overrides(|k| vars.get(k).map(|v| v.to_string())).expect("overrides");
    assert_eq!(cfg.auth_server_uri, "https://as.other");
    assert_eq!(cfg.stack_uri, "https://me.example");
    assert!(!cfg.enable_auth && !cfg.enable_rate_limiting);
    assert_eq!(cfg.jwks_cache_ttl, 120);
    assert_eq!(cfg.token_validation_method, TokenValidationMethod::Introspection);
    assert_eq!(cfg.allowed_algorithms, ["ES256", "PS256"]);
    assert_eq!(cfg.model_scope_overrides.len(), 2);
    assert_eq!(cfg.audience, None);
    assert_eq!(cfg.client_secret, Some(Secret::new("shh")));

    let err = cfg
        .apply_env_overrides(|k| (k == "LLAMA_STACK_OAUTH_ENABLE_AUTH").then(|| "maybe".to_string()))
        .expect_err("bad bool");
    assert!(err.to_string().starts_with("LLAMA_STACK_OAUTH_ENABLE_AUTH:"), "{err}");
    let err = cfg
        .apply_env_overrides(|k| (k == "LLAMA_STACK_OAUTH_CLOCK_LEEWAY").then(|| "1m".to_string()))
        .expect_err("bad number");
    assert!(err.to_string().contains("LLAMA_STACK_OAUTH_CLOCK_LEEWAY"), "{err}");
}

//! `provider`, `claims`, `issuers` and `audiences` as configuration: parsing, presets overridden key
//! by key, and validation errors that name the key.

use crate::config::{ClaimsConfig, ConfigError, OAuthConfig, Provider};

/// A loopback issuer and resource: valid as it stands.
fn valid() -> OAuthConfig {
    yaml_serde::from_str("{auth_server_uri: 'http://127.0.0.1:9400', stack_uri: 'http://127.0.0.1:8321'}")
        .expect("yaml")
}

#[test]
fn no_provider_and_no_claims_keys_mean_rfc9068() {
    let rules = valid().claim_rules();
    assert_eq!(rules, Provider::Generic.preset("at+jwt"));
    assert_eq!(rules.accepted_typ, ["at+jwt"]);
    assert!(!rules.allow_missing_typ && rules.require_audience);
    assert_eq!(rules.required, ["iss", "aud", "exp", "iat", "sub", "client_id", "jti"]);
    assert_eq!(
        (rules.client_id.as_slice(), rules.scopes.as_slice()),
        (&["client_id".to_string()][..], &["scope".to_string()][..])
    );
    let custom_typ = OAuthConfig { expected_typ: "application/at+jwt".into(), ..valid() };
    assert_eq!(custom_typ.claim_rules().accepted_typ, ["application/at+jwt"]);
}

#[test]
fn a_preset_is_overridden_key_by_key() {
    let cfg: OAuthConfig = yaml_serde::from_str(
        "auth_server_uri: http://127.0.0.1:9400/realms/llama\nstack_uri: http://127.0.0.1:8321\n\
         provider: keycloak\naudiences: [llamagate]\nissuers: [https://sso.example/realms/llama]\n\
         claims:\n  scopes: [scope, resource_access.llamagate.roles]\n  required: [iss, aud, exp, sub, jti]\n",
    )
    .expect("parse");
    cfg.validate().expect("valid");
    let rules = cfg.claim_rules();
    assert_eq!(rules.scopes, ["scope", "resource_access.llamagate.roles"]);
    assert_eq!(rules.required, ["iss", "aud", "exp", "sub", "jti"]);
    assert_eq!(rules.accepted_typ, ["at+jwt", "JWT"], "kept from the preset");
    assert_eq!(rules.required_values["typ"], "Bearer", "kept from the preset");
    assert_eq!(rules.client_id, ["client_id", "azp", "cid", "appid"]);
    assert_eq!((rules.audiences.as_slice(), rules.issuers.len()), (&["llamagate".to_string()][..], 1));
    let mut google = OAuthConfig { provider: Provider::Google, issuers: vec!["https://x.example".into()], ..valid() };
    google.claims.allowed_client_ids = vec!["1122".into()];
    google.validate().expect("google with its callers listed");
    assert_eq!(
        google.claim_rules().issuers,
        ["https://accounts.google.com", "accounts.google.com", "https://x.example"]
    );
    for (name, provider) in [("okta", Provider::Okta), ("entra", Provider::Entra), ("auth0", Provider::Auth0)] {
        let parsed: OAuthConfig = yaml_serde::from_str(&format!("provider: {name}\n")).expect("provider");
        assert_eq!(parsed.provider, provider);
    }
    let err = yaml_serde::from_str::<OAuthConfig>("claims:\n  scope_claims: [scp]\n").expect_err("unknown key");
    assert!(err.to_string().contains("scope_claims"), "{err}");
    assert!(yaml_serde::from_str::<OAuthConfig>("provider: ping\n").is_err());
}

#[test]
fn claim_rule_validation_names_the_key() {
    type Mutation = Box<dyn Fn(&mut OAuthConfig)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("claims.allowed_client_ids", Box::new(|c| c.provider = Provider::Cognito)),
        ("claims.allowed_client_ids", Box::new(|c| c.provider = Provider::Google)),
        (
            "claims.required",
            Box::new(|c| {
                c.claims = ClaimsConfig {
                    require_audience: Some(false),
                    allowed_client_ids: vec!["a".into()],
                    ..Default::default()
                }
            }),
        ),
        ("claims.accepted_typ", Box::new(|c| c.claims.accepted_typ = Some(Vec::new()))),
        ("claims.client_id", Box::new(|c| c.claims.client_id = Some(Vec::new()))),
        ("claims.scopes", Box::new(|c| c.claims.scopes = Some(vec![" ".into()]))),
        ("claims.subject", Box::new(|c| c.claims.subject = Some(String::new()))),
        ("claims.forbidden", Box::new(|c| c.claims.forbidden = Some(vec!["jti".into()]))),
        (
            "claims.required_values",
            Box::new(|c| c.claims.required_values = Some([("token_use".to_string(), String::new())].into())),
        ),
        ("issuers", Box::new(|c| c.issuers = vec![String::new()])),
        ("audiences", Box::new(|c| c.audiences = vec![String::new()])),
    ];
    for (key, mutate) in cases {
        let mut cfg = valid();
        mutate(&mut cfg);
        let err = cfg.validate().expect_err(key);
        let named = matches!(&err, ConfigError::Invalid { key: k, .. } if *k == key);
        assert!(named && err.to_string().starts_with(&format!("oauth_config.{key}:")), "{key}: {err}");
    }
    let cognito = OAuthConfig {
        provider: Provider::Cognito,
        claims: ClaimsConfig { allowed_client_ids: vec!["app".into()], ..Default::default() },
        ..valid()
    };
    assert!(cognito.validate().is_ok());
    let typless = OAuthConfig {
        claims: ClaimsConfig { accepted_typ: Some(Vec::new()), allow_missing_typ: Some(true), ..Default::default() },
        ..valid()
    };
    assert!(typless.validate().is_ok(), "no typ at all is a choice, not an error");
}

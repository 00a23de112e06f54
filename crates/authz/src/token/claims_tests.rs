//! The claim rules on plain claim sets (no signatures): lookups, scopes, clients, presence and values.

use super::*;
use crate::config::Provider;
use serde_json::json;

fn claims(v: Value) -> Map<String, Value> {
    v.as_object().expect("object").clone()
}

#[test]
fn lookup_prefers_the_exact_name_then_walks_dotted_paths() {
    let c = claims(json!({"https://x.example/roles": ["a"], "realm_access": {"roles": ["r"]}, "n": 1}));
    assert_eq!(lookup(&c, "https://x.example/roles"), Some(&json!(["a"])));
    assert_eq!(lookup(&c, "realm_access.roles"), Some(&json!(["r"])));
    assert_eq!(lookup(&c, "realm_access.missing"), None);
    assert_eq!(lookup(&c, "n.deeper"), None);
}

#[test]
fn scopes_come_from_strings_and_arrays_and_scope_must_be_a_string() {
    let sources: Vec<String> = ["scope", "scp", "permissions", "realm_access.roles"].map(String::from).to_vec();
    let c = claims(json!({"scope": "a b", "scp": ["c"], "permissions": ["d", "has space"],
        "realm_access": {"roles": ["e"]}}));
    let got = scopes(&c, &sources).expect("scopes");
    assert_eq!(got.to_string(), "a b c d e");
    let c = claims(json!({"scp": "x y"}));
    assert_eq!(scopes(&c, &sources).expect("string scp").to_string(), "x y");
    assert_eq!(scopes(&claims(json!({"scope": ["a"]})), &sources), Err(TokenError::BadClaim("scope")));
    assert_eq!(scopes(&claims(json!({"scp": [1]})), &sources), Err(TokenError::BadClaim("scp")));
    assert_eq!(scopes(&claims(json!({"roles": 5})), &["roles".into()]), Err(TokenError::BadClaim("roles")));
}

#[test]
fn the_first_present_client_claim_wins() {
    let rules = Provider::Okta.preset("at+jwt");
    assert_eq!(client_id(&claims(json!({"cid": "c", "appid": "a"})), &rules), Ok("c".into()));
    assert_eq!(client_id(&claims(json!({"azp": "", "appid": "a"})), &rules), Ok("a".into()));
    assert_eq!(client_id(&claims(json!({"azp": 3})), &rules), Err(TokenError::BadClaim("azp")));
    assert_eq!(client_id(&claims(json!({})), &rules), Err(TokenError::MissingClaim("client_id")));
}

#[test]
fn presence_values_forbidden_claims_and_allowed_clients_are_enforced() {
    let mut rules = Provider::Cognito.preset("at+jwt");
    rules.allowed_client_ids = vec!["app".into()];
    let ok = json!({"iss": "i", "exp": 1, "sub": "s", "client_id": "app", "token_use": "access", "scope": "a"});
    let mapped = apply_rules(&claims(ok.clone()), &rules).expect("valid");
    assert_eq!((mapped.subject.as_str(), mapped.client_id.as_str(), mapped.token_id), ("s", "app", None));
    let edit = |k: &str, v: Value| {
        let mut c = claims(ok.clone());
        c.insert(k.into(), v);
        c
    };
    assert_eq!(apply_rules(&edit("token_use", json!("id")), &rules), Err(TokenError::WrongClaimValue("token_use")));
    assert_eq!(apply_rules(&edit("token_use", json!(null)), &rules), Err(TokenError::MissingClaim("token_use")));
    assert_eq!(apply_rules(&edit("client_id", json!("other")), &rules), Err(TokenError::ClientNotAllowed));
    assert_eq!(apply_rules(&edit("nonce", json!("n")), &rules), Err(TokenError::ForbiddenClaim("nonce")));
    assert_eq!(apply_rules(&edit("sub", json!("")), &rules), Err(TokenError::MissingClaim("sub")));
    assert_eq!(TokenError::ForbiddenClaim("nonce").reason(), "forbidden_claim");
    assert!(std::ptr::eq(intern("custom_claim"), intern("custom_claim")), "interned once");
}

//! The OpenAPI document against the route table it is built from, and against the copies committed
//! under `openapi/`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use llamagate_server::http::openapi::{BEARER, document as document_for, openapi_path};
use llamagate_server::http::router::{ROUTES, catalog};

fn document() -> utoipa::openapi::OpenApi {
    document_for(&catalog())
}

fn committed(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi").join(name)
}

/// The committed copies are what the code generates; `UPDATE_OPENAPI=1` rewrites them instead.
#[test]
fn committed_openapi_documents_are_current() {
    let doc = document();
    let generated = [
        ("llamagate.json", format!("{}\n", doc.to_pretty_json().unwrap())),
        ("llamagate.yaml", doc.to_yaml().unwrap()),
    ];
    let update = std::env::var_os("UPDATE_OPENAPI").is_some();
    for (name, text) in generated {
        let path = committed(name);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "{} is stale: regenerate it with `UPDATE_OPENAPI=1 cargo test -p llamagate-server --test it \
             openapi` and commit the result",
            path.display()
        );
    }
}

/// The document lists exactly the routes the router serves, with the same methods.
#[test]
fn every_openapi_route_is_documented() {
    let doc = serde_json::to_value(document()).unwrap();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(|m| (m.to_uppercase(), path.clone())))
        .collect();
    let served: BTreeSet<(String, String)> =
        ROUTES.iter().map(|r| (r.spec.method.to_string(), openapi_path(r.spec.path))).collect();
    assert_eq!(
        documented, served,
        "every row of http::router::ROUTES needs a `#[utoipa::path]` on its handler, listed in `ApiDoc`'s paths(...)"
    );
}

/// Client generators name methods after operation ids; two equal ids would collide.
#[test]
fn openapi_operation_ids_are_unique() {
    let doc = serde_json::to_value(document()).unwrap();
    let ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|operation| operation["operationId"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "{ids:?}");
}

#[test]
fn public_routes_need_no_token_and_protected_ones_do() {
    let doc = serde_json::to_value(document()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["components"]["securitySchemes"][BEARER]["scheme"], "bearer");
    assert_eq!(doc["security"], serde_json::json!([{ BEARER: [] }]), "the literal in #[openapi] matches BEARER");
    let health = &doc["paths"]["/v1/health"]["get"];
    assert_eq!(health["security"], serde_json::json!([]));
    let chat = &doc["paths"]["/v1/chat/completions"]["post"];
    assert!(chat.get("security").is_none(), "inherits the document-wide bearer requirement");
    assert_eq!(chat["responses"]["401"]["$ref"], "#/components/responses/Unauthorized");
    let busy = chat["responses"]["503"]["description"].as_str().unwrap();
    assert!(busy.contains("engine queue is full") && busy.contains("authorization server's keys"), "{busy}");
    assert!(chat["responses"]["503"]["headers"].get("Retry-After").is_some());
    let models = &doc["paths"]["/v1/models"]["get"];
    assert_eq!(models["responses"]["503"]["$ref"], "#/components/responses/IdentityUnavailable");
}

//! The floor under the gate benchmark: the same HTTP stack (axum on hyper, Tokio's multi-thread
//! runtime, the binary's allocator) answering `GET /v1/models` with a constant body and nothing else — no token,
//! no permission check, no audit. `benches/run-gate-wrk.sh` measures it beside the gate, so the
//! gate's own cost is the difference, and a latency bound below this floor is a bound on the
//! machine's loopback, not on the gate.
//!
//! usage: `cargo run --release -p llamagate-server --example http_floor` (prints the address).

use axum::Router;
use axum::routing::get;

#[global_allocator]
static GLOBAL: llamagate_server::allocator::SplitAllocator = llamagate_server::allocator::SplitAllocator;

/// A body of the same size as the gate's `/v1/models` answer for the bundled model.
const BODY: &str = r#"{"data":[{"identifier":"smollm2-135m-instruct","provider_resource_id":"smollm2-135m-instruct","provider_id":"llamagate","type":"model","metadata":{"context_length":1024},"model_type":"llm"}]}"#;

fn main() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let app = Router::new().route("/v1/models", get(|| async { ([("content-type", "application/json")], BODY) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app).await
    })
}

//! What auditing adds to a request: the cost of [`AuditLog::record`] on the request path (build a
//! typical record and queue it) and the writer's sustained throughput (records sealed into the hash
//! chain and appended to a file per second).
//!
//! `cargo bench -p llamagate-authz --bench audit`

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use llamagate_authz::audit::{AuditConfig, Outcome};
use llamagate_authz::config::AuditLogLevel;
use llamagate_authz::{AuditEvent, AuditLog, AuditRecord};

fn typical_record() -> AuditRecord {
    let mut record = AuditRecord::new(AuditEvent::InferenceResponse, Outcome::Allowed);
    record.request_id = Some("req-5f0c2b8a9e7d4c1b8a6f3e2d1c0b9a87".into());
    record.route = Some("POST /v1/chat/completions".into());
    record.status = Some(200);
    record.subject = Some("user-1234".into());
    record.client_id = Some("smollm-client".into());
    record.scopes = Some(vec!["model_smollm2_135m".into(), "premium_access".into()]);
    record.tier = Some("premium".into());
    record.issuer = Some("https://auth.example.com".into());
    record.model = Some("smollm2-135m-instruct".into());
    record.prompt_tokens = Some(42);
    record.completion_tokens = Some(64);
    record.finish_reason = Some("stop".into());
    record.latency_ms = Some(812);
    record
}

fn bench_audit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = AuditConfig { path: Some(dir.path().join("audit.log")), ..AuditConfig::default() };
    let log = AuditLog::start(&config, AuditLogLevel::Info).expect("audit log");

    // The request path's share: one record built and queued. The writer drains concurrently, as in
    // the server; `flush` after each batch keeps the queue from filling across samples.
    let mut group = c.benchmark_group("audit");
    group.bench_function("record (build + queue)", |b| {
        b.iter_custom(|iterations| {
            let start = Instant::now();
            for _ in 0..iterations {
                log.record(typical_record()).expect("queued");
            }
            let elapsed = start.elapsed();
            log.flush();
            elapsed
        })
    });

    // The writer's side: queue-to-disk throughput, including hashing and the file append.
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    group.bench_function("10k records written and flushed", |b| {
        b.iter(|| {
            for _ in 0..10_000 {
                log.record(typical_record()).expect("queued");
            }
            log.flush();
        })
    });
    group.finish();
    assert_eq!(log.stats().dropped, 0);
}

criterion_group!(benches, bench_audit);
criterion_main!(benches);

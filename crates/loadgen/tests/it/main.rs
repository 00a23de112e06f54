//! The load tool's integration tests, in one test binary (one link instead of one per file), a module per
//! area; `support` is the fake endpoint most of them run against.

mod arrivals;
mod misbehaving_tenants;
mod real_server;
mod report_outputs;
mod status_counts;
mod streaming;
mod support;

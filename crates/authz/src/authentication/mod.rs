//! Authentication as the server calls it: from a request's header bytes to a `Principal`, or to the
//! answer that says why not.
//!
//! - [`credentials`]: reading the `Authorization` and `DPoP` headers, as pure functions over bytes;
//! - [`authenticator`]: the whole sequence, in order ([`Authenticator`](authenticator::Authenticator));
//! - [`challenge`]: RFC 6750 errors and their `WWW-Authenticate` challenges;
//! - [`metadata`]: the RFC 9728 protected-resource metadata those challenges point clients to.

pub mod authenticator;
pub mod challenge;
pub mod credentials;
pub mod metadata;

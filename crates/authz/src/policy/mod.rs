//! What a known caller may do: which models its scopes unlock ([`permissions`]) and which classifier
//! scores it may receive content with ([`safety`]).

pub mod permissions;
pub mod safety;

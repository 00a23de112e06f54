//! Running requests on a loaded model: the public [`engine`] entry point ([`Model`](engine::Model)), the
//! [`scheduler`] that steps concurrent [`sequence`]s together (reusing prompt prefixes through
//! [`prefix_cache`]), [`sampling`] (with the [`logprobs`] callers can ask for), the [`generation`] stream a caller reads, and [`scoring`] sessions
//! that read next-token logits instead of generating (with which [`tool_choice`] picks the function a
//! `required` tool choice calls).

pub(crate) mod constraint;
pub(crate) mod engine;
pub(crate) mod generation;
pub(crate) mod logprobs;
pub(crate) mod prefix_cache;
pub(crate) mod prompt_tokenizer;
pub(crate) mod sampling;
pub(crate) mod scheduler;
pub(crate) mod scoring;
pub(crate) mod sequence;
pub(crate) mod tool_choice;

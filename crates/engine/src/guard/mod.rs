//! Llama Guard shields: the hazard [`categories`], the classifier [`prompt`] ([`LlamaGuard`]) and the
//! [`scores`] read from the guard model's next-token probabilities.

pub(crate) mod categories;
pub(crate) mod prompt;
pub(crate) mod scores;

pub use categories::{CATEGORIES, GuardCategory, categories_for_model, category_by_code};
pub use prompt::{LlamaGuard, normalize_conversation};
pub use scores::{CategoryScore, GuardScores, GuardVocab, score_continuations};

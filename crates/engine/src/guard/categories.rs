//! The Llama Guard 3 hazard categories and which guard model knows which. A leaf of its own: the
//! prompt lists them and the scores are reported per category, so both read this and neither has to
//! read the other for it.

/// One Llama Guard hazard category: its code in the model's answer and the name the prompt and the
/// moderation API use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuardCategory {
    /// `S1` … `S14`.
    pub code: &'static str,
    /// Llama Stack's name (also the moderation category key), e.g. `Violent Crimes`.
    pub name: &'static str,
}

const fn category(code: &'static str, name: &'static str) -> GuardCategory {
    GuardCategory { code, name }
}

/// Every Llama Guard 3 category, in prompt order, with Llama Stack's names
/// (`docs/reference/llama-stack-api.md` §e.3).
pub const CATEGORIES: [GuardCategory; 14] = [
    category("S1", "Violent Crimes"),
    category("S2", "Non-Violent Crimes"),
    category("S3", "Sex Crimes"),
    category("S4", "Child Exploitation"),
    category("S5", "Defamation"),
    category("S6", "Specialized Advice"),
    category("S7", "Privacy"),
    category("S8", "Intellectual Property"),
    category("S9", "Indiscriminate Weapons"),
    category("S10", "Hate"),
    category("S11", "Self-Harm"),
    category("S12", "Sexual Content"),
    category("S13", "Elections"),
    category("S14", "Code Interpreter Abuse"),
];

/// Guard models whose model card lists only S1–S13 (no Code Interpreter Abuse), by Hugging Face name.
const THIRTEEN_CATEGORY_MODELS: [&str; 3] = ["Llama-Guard-3-1B", "Llama-Guard-3-11B-Vision", "Llama-Guard-4-12B"];

/// The categories a guard model was trained on, recognised from its id with or without the
/// `meta-llama/` prefix; unknown ids (local names, other hubs' spellings) get all fourteen, as Llama
/// Stack does.
pub fn categories_for_model(model_id: &str) -> &'static [GuardCategory] {
    let name = model_id.strip_prefix("meta-llama/").unwrap_or(model_id);
    if THIRTEEN_CATEGORY_MODELS.contains(&name) { &CATEGORIES[..13] } else { &CATEGORIES }
}

/// The category with this code (`S1` … `S14`).
pub fn category_by_code(code: &str) -> Option<&'static GuardCategory> {
    CATEGORIES.iter().find(|c| c.code == code)
}

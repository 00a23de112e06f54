//! [`GuardDouble`]: a TEST-ONLY stand-in for a Llama Guard model that returns fixed scores.
//!
//! End-to-end tests of content safety need scores they control: the same text must be refused at one
//! safety level and allowed at another, and no Llama Guard weights can be downloaded here (the default
//! model standing in as a guard gives scores nobody chose, and takes seconds per check on a small
//! CPU). A shield with `scores_file: <json>` answers from that file instead of running its model:
//!
//! ```json
//! {"rules": [
//!   {"contains": "storm the castle", "scores": {"S1": 0.45}},
//!   {"contains": "grim tale", "judged": "assistant", "scores": {"S10": 0.9}}
//! ]}
//! ```
//!
//! The first rule whose `contains` occurs in the conversation's text (every turn) and whose `judged`
//! role, when given, is the role of the judged (last) turn supplies the per-code joint scores; codes the
//! shield excludes score 0, P(unsafe) is their sum, and no matching rule means safe (all zeros).
//! `judged: assistant` lets a test flag the model's output without knowing what the model will write.
//!
//! Because it would let a config silently replace real classification, a `scores_file` stops start-up
//! unless the environment says `LLAMAGATE_ALLOW_TEST_GUARD=1`; the server then logs a warning.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use llamagate_engine::{CategoryScore, ChatMessage, GuardCategory, GuardScores, category_by_code};
use serde::Deserialize;

/// The environment variable that must be `1` for a `scores_file` to be accepted.
pub const ALLOW_ENV: &str = "LLAMAGATE_ALLOW_TEST_GUARD";

/// The scores file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardDouble {
    rules: Vec<Rule>,
}

/// One rule of the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    /// Text that must occur somewhere in the conversation.
    contains: String,
    /// The role the judged (last) turn must have; any when absent.
    #[serde(default)]
    judged: Option<String>,
    /// Code (`S1` …) → joint probability P(unsafe because of this code).
    scores: BTreeMap<String, f64>,
}

impl GuardDouble {
    /// Reads and checks a scores file; `key` names it in errors. Refused unless [`ALLOW_ENV`] is `1`.
    pub fn load(path: &Path, key: &str, allow: Option<String>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            allow.as_deref() == Some("1"),
            "{key}: a test-only guard double (fixed scores, no classification); set {ALLOW_ENV}=1 to use it, \
             never in production"
        );
        let text = std::fs::read_to_string(path).with_context(|| format!("{key}: cannot read {}", path.display()))?;
        let double: Self = serde_json::from_str(&text).with_context(|| format!("{key}: invalid scores file"))?;
        for (i, rule) in double.rules.iter().enumerate() {
            if let Some(code) = rule.scores.keys().find(|code| category_by_code(code).is_none()) {
                anyhow::bail!("{key}: rules[{i}]: unknown category `{code}` (expected S1 … S14)");
            }
            let total: f64 = rule.scores.values().sum();
            anyhow::ensure!(
                rule.scores.values().all(|p| (0.0..=1.0).contains(p)) && total <= 1.0,
                "{key}: rules[{i}]: scores must be probabilities summing to at most 1 (the codes are alternatives)"
            );
        }
        tracing::warn!(%key, "TEST-ONLY guard double: this shield returns fixed scores from a file");
        Ok(double)
    }

    /// The scores of the first matching rule, over `categories` (the shield's prompt categories).
    pub fn score(&self, categories: &[GuardCategory], conversation: &[ChatMessage]) -> GuardScores {
        let judged = conversation.last().map(|m| m.role.as_str());
        let text: String = conversation.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n");
        let rule = self
            .rules
            .iter()
            .find(|r| text.contains(&r.contains) && r.judged.as_deref().is_none_or(|role| Some(role) == judged));
        let joint = |code: &str| rule.and_then(|r| r.scores.get(code)).copied().unwrap_or(0.0);
        let unsafe_probability: f64 = categories.iter().map(|c| joint(c.code)).sum::<f64>().min(1.0);
        let categories = categories
            .iter()
            .map(|&category| {
                let probability = joint(category.code);
                let given_unsafe = if unsafe_probability > 0.0 { probability / unsafe_probability } else { 0.0 };
                CategoryScore { category, given_unsafe, probability }
            })
            .collect();
        GuardScores { unsafe_probability, categories }
    }
}

#[cfg(test)]
mod tests {
    use llamagate_engine::categories_for_model;

    use super::*;

    fn write(json: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), json).unwrap();
        file
    }

    #[test]
    fn refused_without_the_explicit_environment_switch() {
        let file = write(r#"{"rules": []}"#);
        for allow in [None, Some("true".to_string()), Some("0".to_string())] {
            let err = GuardDouble::load(file.path(), "shields[0].scores_file", allow).unwrap_err().to_string();
            assert!(err.starts_with("shields[0].scores_file: a test-only guard double"), "{err}");
        }
        GuardDouble::load(file.path(), "k", Some("1".into())).unwrap();
    }

    #[test]
    fn bad_codes_and_scores_are_refused() {
        for json in [
            r#"{"rules": [{"contains": "x", "scores": {"S15": 0.1}}]}"#,
            r#"{"rules": [{"contains": "x", "scores": {"S1": 0.6, "S2": 0.6}}]}"#,
            r#"{"rules": [{"contains": "x", "scores": {"S1": -0.1}}]}"#,
            r#"{"rules": [{"contains": "x", "scores": {}, "typo": 1}]}"#,
        ] {
            assert!(GuardDouble::load(write(json).path(), "k", Some("1".into())).is_err(), "{json}");
        }
    }

    #[test]
    fn the_first_matching_rule_gives_the_scores_and_excluded_codes_score_zero() {
        let file = write(
            r#"{"rules": [
                {"contains": "tale", "judged": "assistant", "scores": {"S10": 0.9}},
                {"contains": "castle", "scores": {"S1": 0.3, "S9": 0.2}}
            ]}"#,
        );
        let double = GuardDouble::load(file.path(), "k", Some("1".into())).unwrap();
        let all = categories_for_model("any");
        let user = [ChatMessage::new("user", "a tale of the castle")];
        let scores = double.score(all, &user);
        assert_eq!(scores.probability("S1"), 0.3);
        assert_eq!(scores.probability("S9"), 0.2);
        assert_eq!(scores.unsafe_probability, 0.5);
        assert_eq!(scores.most_likely().unwrap().category.code, "S1");
        let answered = [user[0].clone(), ChatMessage::new("assistant", "once upon a time")];
        assert_eq!(double.score(all, &answered).probability("S10"), 0.9);
        let without_s9: Vec<_> = all.iter().filter(|c| c.code != "S9").copied().collect();
        assert_eq!(double.score(&without_s9, &user).unsafe_probability, 0.3);
        let safe = double.score(all, &[ChatMessage::new("user", "bread")]);
        assert!(safe.unsafe_probability == 0.0 && safe.categories.iter().all(|c| c.probability == 0.0));
    }
}

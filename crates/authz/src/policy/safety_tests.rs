//! Safety levels against controlled scores: every level and category at and just past its limit,
//! the code → category map, scope selection and configuration errors.

use super::*;
use ContentCategory::*;

fn policy() -> SafetyPolicy {
    SafetyPolicy::new(SafetyConfig::default(), BASIC_USER).unwrap()
}

fn at(level: &str, category: ContentCategory, score: f64) -> SafetyDecision {
    let p = policy();
    decide(&BTreeMap::from([(category, score)]), p.level(level).unwrap(), DEFAULT_BLOCKED_THRESHOLD)
}

/// A category's limit at a level and how it is enforced; `None`: allowed at any score.
type Limit = Option<(f64, ViolationKind)>;

/// (level, category, limit).
const TABLE: [(&str, ContentCategory, Limit); 15] = [
    (BASIC_USER, Violence, Some((0.3, ViolationKind::Threshold))),
    (BASIC_USER, Hate, Some((0.2, ViolationKind::Threshold))),
    (BASIC_USER, Sexual, Some((0.2, ViolationKind::Threshold))),
    (BASIC_USER, Illegal, Some((DEFAULT_BLOCKED_THRESHOLD, ViolationKind::Blocked))),
    (BASIC_USER, Harmful, Some((DEFAULT_BLOCKED_THRESHOLD, ViolationKind::Blocked))),
    (PREMIUM_USER, Violence, Some((0.5, ViolationKind::Threshold))),
    (PREMIUM_USER, Hate, Some((0.4, ViolationKind::Threshold))),
    (PREMIUM_USER, Sexual, Some((0.4, ViolationKind::Threshold))),
    (PREMIUM_USER, Illegal, Some((DEFAULT_BLOCKED_THRESHOLD, ViolationKind::Blocked))),
    (PREMIUM_USER, Harmful, Some((DEFAULT_UNLISTED_THRESHOLD, ViolationKind::Unlisted))),
    (RESEARCH_USER, Violence, Some((0.8, ViolationKind::Threshold))),
    (RESEARCH_USER, Hate, Some((0.7, ViolationKind::Threshold))),
    (RESEARCH_USER, Sexual, Some((0.7, ViolationKind::Threshold))),
    (RESEARCH_USER, Illegal, Some((DEFAULT_UNLISTED_THRESHOLD, ViolationKind::Unlisted))),
    (RESEARCH_USER, Harmful, Some((DEFAULT_UNLISTED_THRESHOLD, ViolationKind::Unlisted))),
];

#[test]
fn every_level_and_category_refuses_just_past_its_limit() {
    for (level, category, limit) in TABLE {
        match limit {
            Some((limit, kind)) => {
                let at_limit = at(level, category, limit);
                assert!(at_limit.allowed, "{level} {category:?} at {limit}: {at_limit:?}");
                let past = at(level, category, limit + 0.01);
                assert!(!past.allowed, "{level} {category:?} at {limit} + 0.01");
                assert_eq!(
                    past.violated,
                    [SafetyViolation { category, score: limit + 0.01, limit, kind }],
                    "{level} {category:?}"
                );
                // A little below the limit passes too, so the limit is not looser than the table says.
                assert!(at(level, category, limit - 0.01).allowed, "{level} {category:?}");
            }
            None => assert!(at(level, category, 1.0).allowed, "{level} {category:?} must never be refused"),
        }
    }
}

#[test]
fn the_same_scores_give_different_decisions_per_level() {
    let p = policy();
    // Violence 0.6 (S1) and hate 0.45 (S10): basic and premium refuse, research allows.
    let scores = [("S1", 0.6), ("S10", 0.45)];
    let basic = p.decide(scores, p.level(BASIC_USER).unwrap());
    let premium = p.decide(scores, p.level(PREMIUM_USER).unwrap());
    let research = p.decide(scores, p.level(RESEARCH_USER).unwrap());
    let cats = |d: &SafetyDecision| d.violated.iter().map(|v| v.category).collect::<Vec<_>>();
    assert_eq!(cats(&basic), [Violence, Hate]);
    assert_eq!(cats(&premium), [Violence, Hate]);
    assert!(research.allowed);
    // Violence 0.45: only basic refuses.
    let mid = [("S1", 0.45)];
    assert!(!p.decide(mid, p.level(BASIC_USER).unwrap()).allowed);
    assert!(p.decide(mid, p.level(PREMIUM_USER).unwrap()).allowed);
    // Illegal (S2) 0.3: basic and premium block it, research allows it.
    let crime = [("S2", 0.3)];
    assert_eq!(p.decide(crime, p.level(PREMIUM_USER).unwrap()).violated[0].kind, ViolationKind::Blocked);
    assert!(!p.decide(crime, p.level(BASIC_USER).unwrap()).allowed);
    assert!(p.decide(crime, p.level(RESEARCH_USER).unwrap()).allowed);
    // Harmful (S11 self-harm) 0.3: only basic blocks it.
    let harm = [("S11", 0.3)];
    assert!(!p.decide(harm, p.level(BASIC_USER).unwrap()).allowed);
    assert!(p.decide(harm, p.level(PREMIUM_USER).unwrap()).allowed);
}

#[test]
fn the_default_code_map_is_the_documented_one() {
    let expected = [
        ("S1", Violence),
        ("S2", Illegal),
        ("S3", Illegal),
        ("S4", Illegal),
        ("S5", Harmful),
        ("S6", Harmful),
        ("S7", Harmful),
        ("S8", Illegal),
        ("S9", Illegal),
        ("S10", Hate),
        ("S11", Harmful),
        ("S12", Sexual),
        ("S13", Harmful),
        ("S14", Harmful),
    ];
    let map = default_category_map();
    assert_eq!(map.len(), 14);
    for (code, category) in expected {
        assert_eq!(map[code], category, "{code}");
        // And the map is what decisions use: each code alone lands in its category.
        assert_eq!(policy().category_scores([(code, 0.5)]), BTreeMap::from([(category, 0.5)]), "{code}");
    }
}

#[test]
fn codes_of_one_category_add_up() {
    let p = policy();
    // S5 and S6 are both harmful: 0.06 each passes alone at basic, together (0.12) they are blocked.
    assert!(p.decide([("S5", 0.06)], p.level(BASIC_USER).unwrap()).allowed);
    let both = p.decide([("S5", 0.06), ("S6", 0.06)], p.level(BASIC_USER).unwrap());
    assert_eq!(both.violated.len(), 1);
    assert_eq!(both.violated[0].category, Harmful);
    assert!((both.violated[0].score - 0.12).abs() < 1e-12);
    assert!(p.category_scores([("S99", 1.0)]).is_empty(), "unmapped codes are ignored");
}

#[test]
fn a_thresholded_category_that_is_also_blocked_uses_the_stricter_limit() {
    let level = SafetyLevel {
        thresholds: BTreeMap::from([(Violence, 0.5)]),
        blocked: vec![Violence],
        unlisted_threshold: DEFAULT_UNLISTED_THRESHOLD,
    };
    let d = decide(&BTreeMap::from([(Violence, 0.2)]), &level, 0.1);
    assert_eq!(d.violated[0].kind, ViolationKind::Blocked);
    assert!(decide(&BTreeMap::from([(Violence, 0.2)]), &level, 0.9).allowed);
}

#[test]
fn scopes_pick_the_level() {
    let p = policy();
    assert_eq!(p.level_name(&Scopes::parse("model_x research_access")), RESEARCH_USER);
    assert_eq!(p.level_name(&Scopes::parse("premium_access")), PREMIUM_USER);
    assert_eq!(p.level_name(&Scopes::parse("premium_access research_access")), RESEARCH_USER, "first rule wins");
    assert_eq!(p.level_name(&Scopes::parse("model_x research")), BASIC_USER);
    let premium_default = SafetyPolicy::new(SafetyConfig::default(), PREMIUM_USER).unwrap();
    assert_eq!(premium_default.level_name(&Scopes::parse("")), PREMIUM_USER);
}

#[test]
fn the_section_merges_codes_and_replaces_tables() {
    let yaml = "categories: {S6: illegal}\nlevels:\n  strict: {thresholds: {violence: 0.1}, blocked: [illegal]}\nscope_levels: [{scope: kids, level: strict}]\nblocked_threshold: 0.05\n";
    let config: SafetyConfig = yaml_serde::from_str(yaml).unwrap();
    assert_eq!(config.categories["S6"], Illegal);
    assert_eq!(config.categories["S1"], Violence, "other codes keep their defaults");
    assert_eq!(config.levels.keys().collect::<Vec<_>>(), ["strict"]);
    let p = SafetyPolicy::new(config, "strict").unwrap();
    assert_eq!(p.level_name(&Scopes::parse("kids")), "strict");
    assert!(!p.decide([("S6", 0.06)], p.level("strict").unwrap()).allowed);
    assert!(yaml_serde::from_str::<SafetyConfig>("levels: {a: {threshold: {}}}\n").is_err());
    assert!(yaml_serde::from_str::<SafetyConfig>("categories: {S1: gore}\n").is_err());
}

#[test]
fn invalid_tables_are_refused_naming_the_key() {
    let err = |config: SafetyConfig, default: &str| SafetyPolicy::new(config, default).unwrap_err().to_string();
    assert!(err(SafetyConfig::default(), "standard").starts_with("oauth_config.default_safety_level:"));
    let mut bad = SafetyConfig::default();
    bad.levels.get_mut(BASIC_USER).unwrap().thresholds.insert(Hate, 1.5);
    assert!(err(bad, BASIC_USER).starts_with("oauth_config.safety.levels: level `basic_user`"));
    let mut bad = SafetyConfig::default();
    bad.categories.insert("S15".into(), Hate);
    assert!(err(bad, BASIC_USER).starts_with("oauth_config.safety.categories"));
    let mut bad = SafetyConfig::default();
    bad.scope_levels.push(ScopeLevel { scope: "x".into(), level: "gold".into() });
    assert!(err(bad, BASIC_USER).starts_with("oauth_config.safety.scope_levels"));
    let bad = SafetyConfig { blocked_threshold: -0.1, ..SafetyConfig::default() };
    assert!(err(bad, BASIC_USER).starts_with("oauth_config.safety.blocked_threshold"));
}

#[test]
fn without_a_token_the_default_level_applies_and_refusals_name_their_categories() {
    let p = policy();
    assert_eq!(p.level_name_for(None), BASIC_USER);
    assert_eq!(p.level_name_for(Some(&Scopes::parse("research_access"))), RESEARCH_USER);
    // Violence 0.45 and S9 (illegal) 0.15: basic refuses both, premium only the blocked illegal, research neither.
    let scores = [("S1", 0.45), ("S9", 0.15)];
    let names = |level: &str| p.decide(scores, p.level(level).unwrap()).violated_names();
    assert_eq!(names(BASIC_USER), ["violence", "illegal"]);
    assert_eq!(names(PREMIUM_USER), ["illegal"]);
    assert!(names(RESEARCH_USER).is_empty());
}

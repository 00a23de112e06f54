//! The Llama Guard prompt is Llama Stack's, byte for byte: `fixtures/guard-prompts/llama-stack-0.7.3.json`
//! holds the prompts Llama Stack 0.7.3's own safety provider builds (its `run_shield` and `run_moderation`
//! run by `tests/guard-prompt/llama_stack_prompts.py`, which `scripts/test.sh` re-runs against the pinned
//! wheel to prove the fixture), for the 1B, 8B, Guard 4 and unknown guard ids, with and without excluded
//! categories, including a conversation that needs normalising and text that spells the template's markers.

use crate::support::*;
use llamagate_engine::{ChatMessage, LlamaGuard, normalize_conversation};

#[test]
fn every_prompt_is_byte_identical_to_llama_stacks_provider() {
    let document = read_json(fixtures().join("guard-prompts/llama-stack-0.7.3.json"));
    let cases = document["cases"].as_array().unwrap();
    assert!(cases.len() >= 15, "the fixture lost cases: {}", cases.len());
    for case in cases {
        let model = case["guard_model"].as_str().unwrap();
        let excluded: Vec<String> =
            case["excluded_categories"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
        let turns: Vec<ChatMessage> = messages(&case["messages"]);
        // run-shield normalises the conversation first; a moderation input is one user turn as given.
        let conversation = match case["entry"].as_str().unwrap() {
            "run_shield" => normalize_conversation(turns).unwrap(),
            "run_moderation" => turns,
            other => panic!("unknown entry point {other}"),
        };
        let ours = LlamaGuard::new(model, &excluded).unwrap().prompt(&conversation).unwrap();
        let theirs = case["prompt"].as_str().unwrap();
        assert_eq!(ours, theirs, "guard {model}, excluded {excluded:?}, entry {}", case["entry"]);
    }
}

//! OpenAI-style request bodies: parsing, the WAF copy, canary injection and token counting
//! never panic, the WAF copy never contains a prompt string, and the canary note added to
//! Responses-API instructions is taken out of their echo again exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_ingress::openai::ApiRequest;

const CANARY: &str = "pcn-0011223344556677";

fuzz_target!(|data: &[u8]| {
    let extra = vec!["query".to_string()];
    if let Ok(mut r) = ApiRequest::parse(data, &extra) {
        let copy = r.without_prompts(&extra);
        let again = ApiRequest::parse(&copy, &extra).expect("the WAF copy is JSON");
        assert!(again.prompts.iter().all(|p| p.text.is_empty()));
        let _ = palisade_ingress::tokens::prompt_tokens("gpt-4o", &r.prompts);
        let mut responses = r.clone();
        r.with_canary(CANARY);
        let _ = r.to_bytes();
        let before = responses.body["instructions"].as_str().unwrap_or("").to_string();
        if responses.with_instructions_canary(CANARY) && !before.contains(CANARY) {
            // The canary is random per request, so a client's own text never holds it;
            // taking the note out of the echo gives back exactly what the client sent.
            let ins = responses.body["instructions"].as_str().expect("a string");
            assert!(ins.contains(CANARY));
            assert_eq!(palisade_ingress::openai::strip_canary_note(ins, CANARY), before);
        }
    }
});

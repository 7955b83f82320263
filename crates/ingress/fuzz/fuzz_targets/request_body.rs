//! OpenAI-style request bodies: parsing, the WAF copy, canary injection and token counting
//! never panic, the WAF copy never contains a prompt string, and the canary note added to
//! Responses-API instructions can always be taken out of their echo again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_ingress::openai::ApiRequest;

fuzz_target!(|data: &[u8]| {
    let extra = vec!["query".to_string()];
    if let Ok(mut r) = ApiRequest::parse(data, &extra) {
        let copy = r.without_prompts(&extra);
        let again = ApiRequest::parse(&copy, &extra).expect("the WAF copy is JSON");
        assert!(again.prompts.iter().all(|p| p.text.is_empty()));
        let _ = palisade_ingress::tokens::prompt_tokens("gpt-4o", &r.prompts);
        let mut responses = r.clone();
        r.with_canary("pcn-0011223344556677");
        let _ = r.to_bytes();
        if responses.with_instructions_canary("pcn-0011223344556677") {
            let ins = responses.body["instructions"].as_str().expect("a string");
            assert!(!palisade_ingress::openai::strip_canary_note(ins, "pcn-0011223344556677")
                .contains("Confidential marker pcn-0011223344556677"));
        }
    }
});

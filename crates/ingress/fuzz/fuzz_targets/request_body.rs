//! OpenAI-style request bodies: parsing, the WAF copy, canary injection and token counting
//! never panic, and the WAF copy never contains a prompt string.
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
        r.with_canary("pcn-0011223344556677");
        let _ = r.to_bytes();
    }
});

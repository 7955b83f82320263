//! Inspection of an admitted request: the WAF (on everything but the prompt text, unless
//! the route says otherwise), the prompt guard (on every prompt field), then the canary
//! injected into the body and the output filters the answer will go through.

use super::Exchange;
use crate::config::Route;
use crate::events::detection;
use crate::filter::{FilterAction, FilterSet};
use crate::openai::ApiRequest;
use crate::proxy::endpoints::form_or_xml;
use crate::refusal::Refusal;
use bytes::Bytes;
use http::header;
use palisade_events::DetectionAction;
use palisade_policy::model::GuardAction;

/// Runs the route's WAF, if any, on the request (`raw` is its body as read; `api` as parsed,
/// `ctype` its declared `Content-Type`), recording what matched; refuses what it blocks.
pub(super) fn waf(
    x: &mut Exchange,
    route: &Route,
    parts: &http::request::Parts,
    host: &str,
    body: (&Bytes, Option<&ApiRequest>, Option<&str>),
    remote_addr: &str,
) -> Result<(), Refusal> {
    let (raw, api, ctype) = body;
    // The WAF, on everything but the prompt text.
    let Some(waf) = &route.waf else {
        return Ok(());
    };
    let waf_body: Vec<u8> = match (api, route.waf_inspect_prompts) {
        (Some(a), false) => a.without_prompts(&route.prompt_fields),
        _ => raw.to_vec(),
    };
    // The rules parse a body as JSON only when it is declared `application/json`, and
    // backends read JSON declared as anything, or as nothing. A body the gateway read as
    // JSON, or one not declared as a form or XML, is shown to the rules as JSON (one that
    // is not JSON then fails their body parsing and is refused).
    let json_view = !waf_body.is_empty() && (api.is_some() || !form_or_xml(ctype));
    let mut hv: Vec<(&[u8], &[u8])> = parts
        .headers
        .iter()
        .filter(|(k, _)| !(json_view && *k == header::CONTENT_TYPE))
        .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes()))
        .collect();
    if json_view {
        hv.push((b"content-type", b"application/json"));
    }
    if parts.headers.get(header::HOST).is_none() {
        hv.push((b"Host", host.as_bytes()));
    }
    let uri = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let proto = match parts.version {
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let o = waf.check(&crate::waf::WafInput {
        method: parts.method.as_str(),
        uri: uri.as_bytes(),
        protocol: proto,
        headers: &hv,
        body: &waf_body,
        remote_addr,
    });
    if !o.rule_ids.is_empty() || o.blocked.is_some() {
        let block = o.blocked.is_some() && !route.audit;
        x.log.audit |= o.blocked.is_some() && route.audit;
        x.log.detections.push(detection(
            "crs",
            if block {
                DetectionAction::Block
            } else {
                DetectionAction::Log
            },
            Some(o.score as f64),
            o.rule_ids.iter().map(|i| i.to_string()).collect(),
        ));
        if let (true, Some(status)) = (block, o.blocked) {
            return Err(Refusal::new(
                status,
                "invalid_request_error",
                "waf_blocked",
                "The request was blocked by the web application firewall.",
            ));
        }
    }
    Ok(())
}

/// Runs the route's prompt guard, if any, on every prompt of `api`, recording a finding
/// at or past its threshold; refuses what it blocks.
pub(super) fn guard(
    x: &mut Exchange,
    route: &Route,
    api: Option<&ApiRequest>,
) -> Result<(), Refusal> {
    // The prompt guard, on every prompt field (direct and indirect injection).
    let (Some(g), Some(a)) = (&route.guard, api) else {
        return Ok(());
    };
    let mut best = crate::guard::PromptScore::default();
    for text in a.guard_texts() {
        let s = x.shared.scorer.score(&text);
        if s.score > best.score {
            best = s;
        }
    }
    if best.score >= g.threshold && best.score > 0.0 {
        let block = g.action == GuardAction::Block && !route.audit;
        x.log.audit |= g.action == GuardAction::Block && route.audit;
        let act = if route.audit {
            DetectionAction::Log
        } else {
            guard_action(g.action)
        };
        x.log.detections.push(detection(
            "prompt-guard",
            act,
            Some(f64::from(best.score)),
            best.signals.clone(),
        ));
        if block {
            return Err(Refusal::new(
                400,
                "invalid_request_error",
                "prompt_injection_detected",
                "The request was refused by the prompt guard.",
            ));
        }
    }
    Ok(())
}

/// The output filters for the answer and the body to send: `raw`, or the parsed body with
/// a fresh canary injected where the route asks for one (all actions `Log` on an audited
/// route).
pub(super) fn canary(
    route: &Route,
    api: Option<&mut ApiRequest>,
    op: Option<&str>,
    raw: &Bytes,
) -> (FilterSet, Bytes) {
    // The canary and the body to send.
    let mut filters = FilterSet {
        detectors: route.filters.detectors.clone(),
        canary: None,
    };
    let mut out_body = raw.clone();
    if let (Some(action), Some(a)) = (route.filters.canary, api) {
        let c = new_canary();
        let injected = match op {
            Some("responses") => a.with_instructions_canary(&c),
            Some("messages") => a.with_system_canary(&c),
            _ => a.with_canary(&c),
        };
        if injected {
            out_body = Bytes::from(a.to_bytes());
            filters.canary = Some((c, action));
        }
    }
    if route.audit {
        for (_, a) in filters.detectors.iter_mut() {
            *a = FilterAction::Log;
        }
        if let Some((_, a)) = filters.canary.as_mut() {
            *a = FilterAction::Log;
        }
    }
    (filters, out_body)
}

fn guard_action(a: GuardAction) -> DetectionAction {
    match a {
        GuardAction::Block => DetectionAction::Block,
        GuardAction::Flag => DetectionAction::Flag,
        GuardAction::Log => DetectionAction::Log,
        GuardAction::Redact => DetectionAction::Redact,
    }
}

/// A fresh canary token.
fn new_canary() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("pcn-{hex}")
}

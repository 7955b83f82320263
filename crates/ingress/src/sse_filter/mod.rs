//! Output filtering of a Server-Sent-Events response, as pure bytes-in, bytes-out code (so it
//! can be fuzzed and property-tested without a network): the stream is split into events,
//! each JSON event's text is routed to the [`StreamScanner`] of its *lane* — one
//! chat/completions choice, one tool call of a choice, one Responses-API text part, or one
//! Anthropic content block — so a secret or canary spread over many deltas is still seen
//! whole, and the event is sent on with the filtered text. Text held back at the end of a
//! lane goes out as one more delta shaped like the lane's events. The backend's `usage` and
//! the completion text are picked up on the way.
//!
//! Which events carry text is the business of [`chat`] (`choices[].delta.content`,
//! `choices[].text`, and the reasoning and refusal texts beside them), [`tools`] (`choices[].delta.tool_calls[].function.arguments` and the
//! legacy `function_call`), [`responses`] (`response.output_text.delta` and friends, plus
//! the full texts the `.done` events and the final response repeat) and [`anthropic`]
//! (Messages-API `content_block_delta` events).

mod anthropic;
mod chat;
mod responses;
mod tools;

use crate::filter::{FilterHit, FilterSet, Release, StreamScanner};
use crate::openai::Usage;
use crate::sse::{SseEvent, SseParser};
use serde_json::Value;
use std::collections::BTreeMap;

/// Largest streamed completion text kept to count tokens when no `usage` comes.
const MAX_COMPLETION_TEXT: usize = 256 << 10;

/// One stream of text scanned as a whole.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum LaneKey {
    /// A chat/completions choice, by `index`.
    Choice(u64),
    /// A Responses-API text part: its event family (`response.output_text`, …), output
    /// index and content (or summary) index.
    Part(&'static str, u64, u64),
    /// The arguments of a chat/completions tool call: choice index, tool-call index
    /// (`None`: the legacy `function_call`).
    Tool(u64, Option<u64>),
    /// An Anthropic Messages content block, by `index`.
    Block(u64),
    /// Another text of a chat choice's delta (`reasoning_content`, `reasoning`,
    /// `refusal`): choice index and field.
    Side(u64, &'static str),
}

#[derive(Debug)]
struct Lane {
    scanner: StreamScanner,
    /// An event of the lane, the shape of the event that flushes it.
    template: Value,
    /// The SSE `event:` name of the lane's events.
    event: Option<String>,
}

/// Filters one SSE response.
#[derive(Debug)]
pub struct SseFilter {
    parser: SseParser,
    filters: FilterSet,
    lanes: BTreeMap<LaneKey, Lane>,
    /// Findings of lanes already closed and of whole texts.
    hits: Vec<FilterHit>,
    usage: Option<Usage>,
    completion_text: String,
    /// Anthropic Messages events were seen (a cut stream ends with their error event).
    anthropic: bool,
}

impl SseFilter {
    /// A filter at the start of a response.
    pub fn new(filters: FilterSet) -> Self {
        SseFilter {
            parser: SseParser::new(),
            filters,
            lanes: BTreeMap::new(),
            hits: Vec::new(),
            usage: None,
            completion_text: String::new(),
            anthropic: false,
        }
    }

    /// Adds bytes from the backend; returns the bytes to send on. `Err` names the finding
    /// (or the framing error) that stops the stream: send nothing more.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<u8>, String> {
        let framing = |e: crate::sse::SseError| format!("sse: {e}");
        let mut events = self.parser.push(data).map_err(framing)?;
        let mut out = Vec::with_capacity(data.len() + 64);
        while !events.is_empty() {
            for e in events {
                self.event(e, &mut out)?;
            }
            // An event the parser could not read after these is reported now.
            events = self.parser.push(&[]).map_err(framing)?;
        }
        Ok(out)
    }

    /// End of the backend's stream: an unterminated last event is filtered like the others,
    /// then every lane's held-back text is sent.
    pub fn finish(&mut self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        if !self.parser.remainder().iter().all(u8::is_ascii_whitespace) {
            out = self.push(b"\n\n")?;
        }
        self.flush_lanes(&mut out)?;
        Ok(out)
    }

    /// Findings so far.
    pub fn hits(&self) -> Vec<FilterHit> {
        self.hits
            .iter()
            .cloned()
            .chain(self.lanes.values().flat_map(|l| l.scanner.hits().to_vec()))
            .collect()
    }

    /// The `usage` the backend reported, if any.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Completion text seen (up to 256 KiB), for counting tokens when no `usage` comes.
    pub fn completion_text(&self) -> &str {
        &self.completion_text
    }

    fn event(&mut self, mut e: SseEvent, out: &mut Vec<u8>) -> Result<(), String> {
        if e.data.trim() == "[DONE]" {
            self.flush_lanes(out)?;
            out.extend(e.to_wire());
            return Ok(());
        }
        let Ok(mut v) = serde_json::from_str::<Value>(&e.data) else {
            // Not JSON: the data is filtered as a text of its own.
            e.data = self.scan_whole(&e.data)?;
            out.extend(e.to_wire());
            return Ok(());
        };
        // Anthropic reports input tokens in `message_start.message` and output tokens in
        // `message_delta`: later counts complete earlier ones.
        let usage = Usage::from_value(&v)
            .or_else(|| v.get("response").and_then(Usage::from_value))
            .or_else(|| v.get("message").and_then(Usage::from_value));
        if let Some(u) = usage {
            let old = self.usage.unwrap_or_default();
            self.usage = Some(Usage {
                prompt_tokens: u.prompt_tokens.or(old.prompt_tokens),
                completion_tokens: u.completion_tokens.or(old.completion_tokens),
            });
        }
        let kind = v.get("type").and_then(Value::as_str).map(str::to_string);
        match kind {
            Some(k) if k.starts_with("response.") => {
                responses::event(self, &k, e.event.as_deref(), &mut v, out)?
            }
            Some(k) if anthropic::is_event(&k) => {
                self.anthropic = true;
                anthropic::event(self, &k, e.event.as_deref(), &mut v, out)?
            }
            _ => chat::event(self, &mut v, out)?,
        }
        e.data = serde_json::to_string(&v).unwrap_or_default();
        out.extend(e.to_wire());
        Ok(())
    }

    /// Opens `key`'s lane (shaped like `template`) if it is not open yet.
    fn open(&mut self, key: &LaneKey, template: impl FnOnce() -> Value, event: Option<&str>) {
        if !self.lanes.contains_key(key) {
            let lane = Lane {
                scanner: StreamScanner::new(self.filters.clone()),
                template: template(),
                event: event.map(str::to_string),
            };
            self.lanes.insert(key.clone(), lane);
        }
    }

    /// Sends `text` through `key`'s (open) lane; `end`: the lane's text is complete.
    fn pass(&mut self, key: &LaneKey, text: &str, end: bool) -> Result<String, String> {
        if self.completion_text.len() < MAX_COMPLETION_TEXT {
            self.completion_text.push_str(text);
        }
        if self.filters.is_empty() {
            return Ok(text.to_string());
        }
        let Some(lane) = self.lanes.get_mut(key) else {
            return Ok(text.to_string());
        };
        let mut t = release(lane.scanner.push(text.as_bytes()))?;
        if end {
            t.extend(release(lane.scanner.finish())?);
        }
        Ok(String::from_utf8_lossy(&t).into_owned())
    }

    /// A complete text (not a delta) filtered on its own. Findings are recorded once per
    /// kind: the Responses API repeats the whole text several times.
    fn scan_whole(&mut self, text: &str) -> Result<String, String> {
        if self.filters.is_empty() || text.is_empty() {
            return Ok(text.to_string());
        }
        let (r, hits) = crate::filter::scan_whole(&self.filters, text);
        let known = self.hits();
        for h in hits {
            if !known.iter().any(|k| k.name == h.name) {
                self.hits.push(h);
            }
        }
        r
    }

    /// Closes `key`'s lane: its held-back text goes out as one more delta event.
    fn close(&mut self, key: &LaneKey, out: &mut Vec<u8>) -> Result<(), String> {
        let Some(mut lane) = self.lanes.remove(key) else {
            return Ok(());
        };
        let r = release(lane.scanner.finish());
        self.hits.extend(lane.scanner.hits().iter().cloned());
        let t = r?;
        if !t.is_empty() {
            out.extend(flush_event(key, &lane, &String::from_utf8_lossy(&t)));
        }
        Ok(())
    }

    /// Sends what every lane still holds.
    fn flush_lanes(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        for (key, lane) in self.lanes.iter_mut() {
            let t = release(lane.scanner.finish())?;
            if !t.is_empty() {
                out.extend(flush_event(key, lane, &String::from_utf8_lossy(&t)));
            }
        }
        Ok(())
    }
}

/// The event carrying a lane's last text, shaped like the lane's own events.
fn flush_event(key: &LaneKey, lane: &Lane, text: &str) -> Vec<u8> {
    let data = match key {
        LaneKey::Choice(idx) => chat::flush_chunk(&lane.template, *idx, text),
        LaneKey::Part(..) => responses::flush_delta(&lane.template, text),
        LaneKey::Tool(choice, call) => tools::flush_chunk(&lane.template, *choice, *call, text),
        LaneKey::Block(_) => anthropic::flush_delta(&lane.template, text),
        LaneKey::Side(idx, field) => chat::flush_side(&lane.template, *idx, field, text),
    };
    SseEvent {
        event: lane.event.clone(),
        data: data.to_string(),
        ..Default::default()
    }
    .to_wire()
}

pub(crate) fn release(r: Release) -> Result<Vec<u8>, String> {
    match r {
        Release::Text(t) => Ok(t),
        Release::Blocked(n) => Err(n),
    }
}

impl SseFilter {
    /// The SSE event that tells the client the stream was cut, in its API's shape.
    pub fn blocked_event(&self) -> Vec<u8> {
        if self.anthropic {
            anthropic::blocked_event()
        } else {
            blocked_event()
        }
    }

    /// The SSE event that tells the client the backend went silent and the stream was
    /// ended (the stream idle timeout), in its API's shape.
    pub fn stalled_event(&self) -> Vec<u8> {
        const MESSAGE: &str = "The model backend stopped sending; the stream was ended.";
        if self.anthropic {
            anthropic::error_event("api_error", MESSAGE)
        } else {
            openai_error_event("server_error", "upstream_idle_timeout", MESSAGE)
        }
    }
}

/// The SSE event that tells an OpenAI client the stream was cut.
pub fn blocked_event() -> Vec<u8> {
    openai_error_event(
        "output_filter",
        "output_blocked",
        "The response was stopped by the gateway's output filter.",
    )
}

/// An OpenAI-style error event (the `openai` client raises `APIError` on it).
fn openai_error_event(kind: &str, code: &str, message: &str) -> Vec<u8> {
    let data = serde_json::json!({"error": {
        "message": message,
        "type": kind,
        "param": null,
        "code": code,
    }});
    SseEvent {
        data: data.to_string(),
        ..Default::default()
    }
    .to_wire()
}

#[cfg(test)]
mod anthropic_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tool_tests;

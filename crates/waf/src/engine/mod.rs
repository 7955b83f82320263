//! Transactions: one request (and its response) checked phase by phase.

mod collect;
mod data;
mod eval;
mod expand;
mod tcache;

use crate::actions::{BodyProcessor, Disruptive};
use crate::body;
use crate::ruleset::{EngineMode, Ruleset};
use crate::variables::Target;
use data::Data;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A small, fast hasher for the transformation cache's integer keys (not DoS-relevant:
/// keys are slot and chain numbers the engine assigns, not attacker-chosen strings).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(n)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub(crate) type BuildFx = BuildHasherDefault<Fx>;

/// A request as the engine sees it. Header names and values are bytes as received.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The request target as sent (`/path?query`).
    pub uri: &'a [u8],
    /// `HTTP/1.1`.
    pub protocol: &'a str,
    /// Headers in order.
    pub headers: &'a [(&'a [u8], &'a [u8])],
    /// The (de-chunked) body.
    pub body: &'a [u8],
    /// Client address.
    pub remote_addr: &'a str,
}

/// A response as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// Status code.
    pub status: u16,
    /// `HTTP/1.1`.
    pub protocol: &'a str,
    /// Headers in order.
    pub headers: &'a [(&'a [u8], &'a [u8])],
    /// The body.
    pub body: &'a [u8],
}

/// Why the transaction must stop: a disruptive action of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    /// The rule that decided.
    pub rule_id: u32,
    /// HTTP status to answer with (403 unless the rule says otherwise).
    pub status: u16,
    /// `deny`, `drop` or `redirect`.
    pub action: &'static str,
}

/// A rule that matched and logs (not `nolog`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRule {
    /// Rule id.
    pub id: u32,
    /// Phase (1–5).
    pub phase: u8,
    /// Expanded `msg`.
    pub msg: String,
    /// Expanded `logdata`.
    pub data: String,
    /// 0 (emergency) … 7 (debug), if set.
    pub severity: Option<u8>,
    /// Tags.
    pub tags: Vec<String>,
    /// The operator (`rx`, `detectSQLi`, …).
    pub operator: &'static str,
    /// `ARGS:q` etc. of the last value that matched.
    pub matched_var_name: String,
    /// Whether the rule's action was disruptive (and applied).
    pub disruptive: bool,
}

/// The audit record of a transaction, for the events store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Whether the request was interrupted.
    pub blocked: bool,
    /// The interruption.
    pub interruption: Option<Interruption>,
    /// Logged rules in order.
    pub rules: Vec<MatchedRule>,
    /// `tx.blocking_inbound_anomaly_score` (CRS), 0 if unset.
    pub inbound_score: i64,
    /// `tx.blocking_outbound_anomaly_score` (CRS), 0 if unset.
    pub outbound_score: i64,
}

/// Per-transaction state that rules change.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// TX, by lower-case name.
    pub(crate) tx: HashMap<String, Vec<u8>, BuildFx>,
    pub(crate) matched_var: Vec<u8>,
    pub(crate) matched_var_name: Vec<u8>,
    pub(crate) matched_vars: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) removed: Vec<bool>,
    pub(crate) removed_targets: HashMap<usize, Vec<Target>, BuildFx>,
    pub(crate) engine: Option<EngineMode>,
    pub(crate) body_processor: Option<BodyProcessor>,
    pub(crate) body_access: Option<bool>,
    pub(crate) force_body_variable: bool,
    pub(crate) cache: tcache::TCache,
    pub(crate) interruption: Option<Interruption>,
    pub(crate) allow: Option<crate::actions::AllowScope>,
    pub(crate) allow_phase: u8,
    pub(crate) log: Vec<MatchedRule>,
    pub(crate) highest_severity: Option<u8>,
}

/// One request/response checked against a [`Ruleset`].
#[derive(Debug)]
pub struct Transaction<'r> {
    pub(crate) rs: &'r Ruleset,
    pub(crate) data: Data,
    pub(crate) st: State,
    phase_done: u8,
    /// The candidate list's allocation, reused by every rule (always empty here).
    pub(crate) cand_buf: Vec<collect::Cand<'static>>,
}

impl<'r> Transaction<'r> {
    /// A new transaction.
    pub fn new(rs: &'r Ruleset) -> Self {
        Transaction {
            rs,
            data: Data::default(),
            st: State {
                // CRS sets a few dozen TX variables per request: sized once, not regrown.
                tx: HashMap::with_capacity_and_hasher(64, BuildFx::default()),
                ..State::default()
            },
            phase_done: 0,
            cand_buf: Vec::new(),
        }
    }

    /// Runs phases 1 and 2 over a request; returns the interruption, if any.
    pub fn process_request(&mut self, req: &Request<'_>) -> Option<&Interruption> {
        self.data.remote_addr = req.remote_addr.as_bytes().to_vec();
        self.process_request_headers(req.method, req.uri, req.protocol, req.headers);
        self.process_request_body(req.body);
        self.st.interruption.as_ref()
    }

    /// Phase 1: the request line and headers.
    pub fn process_request_headers(
        &mut self,
        method: &str,
        uri: &[u8],
        protocol: &str,
        headers: &[(&[u8], &[u8])],
    ) -> Option<&Interruption> {
        let sep = self.rs.config.argument_separator;
        self.data
            .set_request(method.as_bytes(), uri, protocol.as_bytes(), headers, sep);
        self.data.server_port = b"80".to_vec();
        self.data.unique_id = b"palisade".to_vec();
        let ct = self
            .data
            .header("content-type")
            .map(|v| v.to_ascii_lowercase());
        if let Some(ct) = ct {
            if ct.starts_with(b"application/x-www-form-urlencoded") {
                self.st.body_processor = Some(BodyProcessor::UrlEncoded);
            } else if ct.starts_with(b"multipart/form-data") {
                self.st.body_processor = Some(BodyProcessor::Multipart);
            }
        }
        self.run_phase(1);
        self.st.interruption.as_ref()
    }

    /// Phase 2: the request body (parsed by the selected body processor).
    pub fn process_request_body(&mut self, raw: &[u8]) -> Option<&Interruption> {
        let cfg = &self.rs.config;
        let access = self.st.body_access.unwrap_or(cfg.request_body_access);
        if access && self.st.interruption.is_none() {
            let mut b = raw;
            if b.len() > cfg.request_body_limit {
                if cfg.request_body_limit_reject && self.mode() == EngineMode::On {
                    self.st.interruption = Some(Interruption {
                        rule_id: 0,
                        status: 413,
                        action: "deny",
                    });
                    return self.st.interruption.as_ref();
                }
                b = &b[..cfg.request_body_limit];
            }
            self.data.body = b.to_vec();
            self.data.body_len = b.len();
            self.data.body_seen = true;
            if let Some(p) = self.st.body_processor {
                if !b.is_empty() {
                    let ct = self.data.header("content-type").unwrap_or(b"").to_vec();
                    self.data.parsed =
                        body::process(p, b, &ct, cfg.argument_separator, cfg.json_depth_limit);
                }
            }
        }
        self.run_phase(2);
        self.st.interruption.as_ref()
    }

    /// Phases 3 and 4: the response.
    pub fn process_response(&mut self, resp: &Response<'_>) -> Option<&Interruption> {
        self.data.response_status = resp.status.to_string().into_bytes();
        self.data.response_protocol = resp.protocol.as_bytes().to_vec();
        self.data.response_headers = resp
            .headers
            .iter()
            .map(|(k, v)| body::Kv::new(k, v))
            .collect();
        self.run_phase(3);
        if self.rs.config.response_body_access {
            let ct = self
                .data
                .response_headers
                .iter()
                .find(|h| h.key.eq_ignore_ascii_case(b"content-type"))
                .map(|h| h.value.to_ascii_lowercase())
                .unwrap_or_default();
            let mime = ct.split(|&c| c == b';').next().unwrap_or(b"").trim_ascii();
            if self
                .rs
                .config
                .response_mime_types
                .iter()
                .any(|m| m.as_bytes() == mime)
            {
                let n = resp.body.len().min(self.rs.config.response_body_limit);
                self.data.response_body = resp.body[..n].to_vec();
            }
        }
        self.run_phase(4);
        self.st.interruption.as_ref()
    }

    /// Phase 5 (logging rules).
    pub fn process_logging(&mut self) {
        self.run_phase(5);
    }

    /// The interruption, if a disruptive rule matched.
    pub fn interruption(&self) -> Option<&Interruption> {
        self.st.interruption.as_ref()
    }

    /// Rules that matched and log, in order.
    pub fn matched_rules(&self) -> &[MatchedRule] {
        &self.st.log
    }

    /// A transaction variable (`tx.name`, lower-case).
    pub fn tx_var(&self, name: &str) -> Option<&[u8]> {
        self.st
            .tx
            .get(&name.to_ascii_lowercase())
            .map(Vec::as_slice)
    }

    /// The audit record for the events store.
    pub fn audit_record(&self) -> AuditRecord {
        let score = |n: &str| self.tx_var(n).map(crate::operators::parse_int).unwrap_or(0);
        AuditRecord {
            blocked: self.st.interruption.is_some(),
            interruption: self.st.interruption.clone(),
            rules: self.st.log.clone(),
            inbound_score: score("blocking_inbound_anomaly_score"),
            outbound_score: score("blocking_outbound_anomaly_score"),
        }
    }

    pub(crate) fn mode(&self) -> EngineMode {
        self.st.engine.unwrap_or(self.rs.config.engine)
    }

    fn run_phase(&mut self, phase: u8) {
        if phase <= self.phase_done {
            return;
        }
        self.phase_done = phase;
        self.st.cache.new_phase();
        if self.mode() == EngineMode::Off {
            return;
        }
        if phase < 5 && self.st.interruption.is_some() {
            return;
        }
        match self.st.allow {
            Some(crate::actions::AllowScope::All) if phase < 5 => return,
            Some(crate::actions::AllowScope::Request) if phase <= 2 => return,
            _ => {}
        }
        let steps = &self.rs.phases[usize::from(phase - 1)];
        let mut i = 0;
        while i < steps.len() {
            let crate::ruleset::Step::Rule(idx) = steps[i] else {
                i += 1;
                continue;
            };
            if self.st.removed.get(idx).copied().unwrap_or(false) {
                i += 1;
                continue;
            }
            let rule = &self.rs.rules[idx];
            if !self.eval_chain(idx) {
                i += 1;
                continue;
            }
            let disruptive = match rule.actions.disruptive {
                Some(Disruptive::Block) => rule.block_as,
                Some(d) => d,
                None => Disruptive::Pass,
            };
            let enforce = self.mode() == EngineMode::On;
            self.run_actions(idx, enforce && is_blocking(disruptive));
            match disruptive {
                Disruptive::Deny | Disruptive::Drop | Disruptive::Redirect if enforce => {
                    let action = match disruptive {
                        Disruptive::Deny => "deny",
                        Disruptive::Drop => "drop",
                        _ => "redirect",
                    };
                    self.st.interruption = Some(Interruption {
                        rule_id: rule.id,
                        status: rule.actions.status.unwrap_or(403),
                        action,
                    });
                    if phase < 5 {
                        return;
                    }
                }
                Disruptive::Allow(scope) if enforce => {
                    self.st.allow = Some(scope);
                    self.st.allow_phase = phase;
                    return;
                }
                _ => {}
            }
            if let Some(m) = &rule.actions.skip_after {
                match self.rs.markers[usize::from(phase - 1)].get(m.as_str()) {
                    Some(&p) if p > i => i = p,
                    _ => i = steps.len(),
                }
            } else if rule.actions.skip > 0 {
                let mut left = rule.actions.skip;
                while left > 0 && i + 1 < steps.len() {
                    i += 1;
                    if matches!(steps[i], crate::ruleset::Step::Rule(_)) {
                        left -= 1;
                    }
                }
            }
            i += 1;
        }
    }
}

fn is_blocking(d: Disruptive) -> bool {
    matches!(
        d,
        Disruptive::Deny | Disruptive::Drop | Disruptive::Redirect
    )
}

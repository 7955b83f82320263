//! Palisade's web application firewall engine: a SecLang (ModSecurity rule language) parser
//! and evaluator that runs the OWASP Core Rule Set unmodified.
//!
//! The crate is pure and synchronous (no async runtime, no network): rule files are read
//! once and compiled into an immutable, shareable [`Ruleset`]; each request is then checked
//! by a [`Transaction`] phase by phase (request headers, request body, response headers,
//! response body, logging). The [`runner`] module replays CRS's YAML regression tests
//! in-process. See `docs/waf.md` for the supported SecLang subset and how regexes that need
//! look-around are handled.

mod actions;
mod body;
pub mod detect;
mod engine;
mod error;
mod event;
mod macros;
mod operators;
mod parser;
mod ruleset;
pub mod runner;
mod transforms;
mod variables;

pub use engine::{AuditRecord, Interruption, MatchedRule, Request, Response, Transaction};
pub use error::{LoadError, Warning};
pub use ruleset::{EngineMode, Ruleset, RulesetBuilder};
pub use transforms::apply_named as apply_transformation;

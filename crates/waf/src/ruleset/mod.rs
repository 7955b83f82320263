//! The immutable, compiled rule set and the builder that reads SecLang into it.

mod directives;
pub(crate) mod literals;
pub(crate) mod prefilter;
pub(crate) mod rule;

use crate::actions::{Actions, Disruptive};
use crate::detect::{InjectionDetector, LibInjection};
use crate::error::{LoadError, Warning};
use crate::parser::{self, Directive};
use crate::transforms::Transform;
use rule::Rule;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// `SecRuleEngine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineMode {
    /// Rules run and disruptive actions apply.
    On,
    /// Rules are not run.
    Off,
    /// Rules run and log, but nothing is blocked.
    DetectionOnly,
}

impl EngineMode {
    pub(crate) fn parse(s: &str) -> Result<EngineMode, String> {
        match s.to_ascii_lowercase().as_str() {
            "on" => Ok(EngineMode::On),
            "off" => Ok(EngineMode::Off),
            "detectiononly" => Ok(EngineMode::DetectionOnly),
            _ => Err(format!("expects On, Off or DetectionOnly, got {s:?}")),
        }
    }
}

/// Engine settings from `Sec*` directives.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) engine: EngineMode,
    pub(crate) request_body_access: bool,
    pub(crate) response_body_access: bool,
    pub(crate) request_body_limit: usize,
    pub(crate) request_body_no_files_limit: usize,
    pub(crate) request_body_limit_reject: bool,
    pub(crate) response_body_limit: usize,
    pub(crate) response_mime_types: Vec<String>,
    pub(crate) arguments_limit: usize,
    pub(crate) json_depth_limit: usize,
    pub(crate) argument_separator: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            engine: EngineMode::On,
            request_body_access: true,
            response_body_access: false,
            request_body_limit: 13_107_200,
            request_body_no_files_limit: 1_048_576,
            request_body_limit_reject: true,
            response_body_limit: 524_288,
            response_mime_types: vec!["text/plain".into(), "text/html".into()],
            arguments_limit: 1000,
            json_depth_limit: 512,
            argument_separator: b'&',
        }
    }
}

/// A position in a phase's rule list.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    Rule(usize),
    Marker,
}

/// Compiled rules, shared by all transactions (`Send + Sync`, immutable).
#[derive(Debug)]
pub struct Ruleset {
    pub(crate) rules: Vec<Rule>,
    /// Steps of phases 1–5 (index 0 is phase 1).
    pub(crate) phases: [Vec<Step>; 5],
    /// Per phase: marker name → step index (looked up for every `skipAfter` taken, so with
    /// the engine's fast hasher).
    pub(crate) markers: [HashMap<Arc<str>, usize, crate::engine::BuildFx>; 5],
    pub(crate) by_id: HashMap<u32, usize>,
    pub(crate) config: Config,
    pub(crate) detector: Arc<dyn InjectionDetector>,
    pub(crate) transform_chains: usize,
    pub(crate) component_signatures: Vec<String>,
    /// Transformation chains as a trie (`Rule::transform_key` is a node).
    pub(crate) tnodes: Vec<prefilter::TNode>,
    /// Per trie node: the literal prefilter of the `@rx` rules ending there.
    pub(crate) prefilters: Vec<Option<prefilter::NodePrefilter>>,
}

impl Ruleset {
    /// Loads files in order (each may `Include` others) with default settings.
    pub fn from_files<P: AsRef<Path>>(files: &[P]) -> Result<Ruleset, LoadError> {
        let mut b = RulesetBuilder::new();
        for f in files {
            b.load_file(f.as_ref())?;
        }
        b.build()
    }

    /// Parses rules from a string (named `name` in errors).
    pub fn from_str(name: &str, text: &str) -> Result<Ruleset, LoadError> {
        let mut b = RulesetBuilder::new();
        b.load_str(name, text)?;
        b.build()
    }

    /// Number of rules (chains count once).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// `SecRuleEngine`.
    pub fn engine_mode(&self) -> EngineMode {
        self.config.engine
    }

    /// `SecComponentSignature` values.
    pub fn component_signatures(&self) -> &[String] {
        &self.component_signatures
    }

    /// Whether a rule with this id is loaded.
    pub fn has_rule(&self, id: u32) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Where rule `id` was defined (file and line).
    pub fn rule_location(&self, id: u32) -> Option<(&Path, usize)> {
        let r = &self.rules[*self.by_id.get(&id)?];
        Some((&r.file, r.line))
    }

    /// Distinct transformation chains (the unit of the per-transaction cache).
    pub fn transformation_chains(&self) -> usize {
        self.transform_chains
    }

    /// How many `@rx` rule links have a literal prefilter (their regex runs only on values
    /// that contain one of their required literals).
    pub fn prefiltered_regex_count(&self) -> usize {
        self.rules
            .iter()
            .flat_map(|r| r.links())
            .filter(|r| r.prefilter.is_some())
            .count()
    }

    /// How many `@rx` patterns needed the backtracking fallback.
    pub fn fallback_regex_count(&self) -> usize {
        self.rules
            .iter()
            .flat_map(|r| r.links())
            .filter(|r| matches!(&r.op.kind, crate::operators::OpKind::Rx(x) if x.is_fallback()))
            .count()
    }
}

pub(crate) enum Item {
    Rule(Box<Rule>),
    Marker(Arc<str>),
}

/// Reads SecLang directives into a [`Ruleset`].
#[derive(Debug)]
pub struct RulesetBuilder {
    pub(crate) items: Vec<ItemBox>,
    pub(crate) defaults: [Option<Actions>; 5],
    pub(crate) open_chain: Option<(Rule, Directive)>,
    pub(crate) config: Config,
    pub(crate) warnings: Vec<Warning>,
    pub(crate) detector: Arc<dyn InjectionDetector>,
    pub(crate) component_signatures: Vec<String>,
    pub(crate) literal_prefilter: bool,
}

/// `Item` with Debug (rules are large).
pub(crate) struct ItemBox(pub(crate) Item);

impl std::fmt::Debug for ItemBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Item::Rule(r) => write!(f, "Rule({})", r.id),
            Item::Marker(m) => write!(f, "Marker({m})"),
        }
    }
}

impl Default for RulesetBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RulesetBuilder {
    /// A builder with ModSecurity's defaults (engine On, request body access On).
    pub fn new() -> Self {
        RulesetBuilder {
            items: Vec::new(),
            defaults: Default::default(),
            open_chain: None,
            config: Config::default(),
            warnings: Vec::new(),
            detector: Arc::new(LibInjection),
            component_signatures: Vec::new(),
            literal_prefilter: true,
        }
    }

    /// Turns the literal prefilter of `@rx` rules on (the default) or off. Results are
    /// the same either way; off is for measuring what it saves.
    pub fn literal_prefilter(mut self, on: bool) -> Self {
        self.literal_prefilter = on;
        self
    }

    /// Uses another SQLi/XSS detector.
    pub fn detector(mut self, d: Arc<dyn InjectionDetector>) -> Self {
        self.detector = d;
        self
    }

    /// Reads a file (and what it includes).
    pub fn load_file(&mut self, path: &Path) -> Result<(), LoadError> {
        for d in parser::read_file(path)? {
            self.directive(&d)?;
        }
        Ok(())
    }

    /// Reads every `*.conf` file of a directory, sorted by name.
    pub fn load_dir(&mut self, dir: &Path) -> Result<(), LoadError> {
        let files = parser::glob(&dir.join("*.conf")).map_err(|m| LoadError::Io {
            path: dir.to_path_buf(),
            message: m,
        })?;
        if files.is_empty() {
            return Err(LoadError::Io {
                path: dir.to_path_buf(),
                message: "no *.conf files".into(),
            });
        }
        for f in files {
            self.load_file(&f)?;
        }
        Ok(())
    }

    /// Reads directives from a string; `name` is used in errors and to resolve paths.
    pub fn load_str(&mut self, name: &str, text: &str) -> Result<(), LoadError> {
        for d in parser::read_text(Path::new(name), text)? {
            self.directive(&d)?;
        }
        Ok(())
    }

    /// Warnings so far (unknown harmless directives, unsupported operators).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    pub(crate) fn warn(&mut self, d: &Directive, message: String) {
        self.warnings.push(Warning {
            file: d.file.to_path_buf(),
            line: d.line,
            directive: d.name.clone(),
            message,
        });
    }

    /// Compiles into an immutable ruleset.
    pub fn build(mut self) -> Result<Ruleset, LoadError> {
        if let Some((_, d)) = self.open_chain.take() {
            return Err(d.error("the last rule of a chain has `chain` (nothing follows it)"));
        }
        let mut rules = Vec::new();
        let mut phases: [Vec<Step>; 5] = Default::default();
        let mut markers: [HashMap<Arc<str>, usize, crate::engine::BuildFx>; 5] = Default::default();
        let mut by_id = HashMap::new();
        let mut chains: HashMap<Vec<Transform>, u32> = HashMap::new();
        for ItemBox(item) in self.items {
            match item {
                Item::Marker(m) => {
                    for p in 0..5 {
                        markers[p].insert(m.clone(), phases[p].len());
                        phases[p].push(Step::Marker);
                    }
                }
                Item::Rule(r) => {
                    let mut r = *r;
                    r.links_mut(&mut |l| {
                        let n = chains.len() as u32;
                        chains.entry(l.actions.transforms.clone()).or_insert(n);
                    });
                    let idx = rules.len();
                    if r.id != 0 {
                        by_id.insert(r.id, idx);
                    }
                    phases[usize::from(r.phase - 1)].push(Step::Rule(idx));
                    rules.push(r);
                }
            }
        }
        let tnodes = prefilter::build_trie(&mut rules);
        let prefilters = if self.literal_prefilter {
            prefilter::build_prefilters(&mut rules, tnodes.len())
        } else {
            Vec::new()
        };
        Ok(Ruleset {
            tnodes,
            prefilters,
            rules,
            phases,
            markers,
            by_id,
            config: self.config,
            detector: self.detector,
            transform_chains: chains.len(),
            component_signatures: self.component_signatures,
        })
    }

    /// `SecDefaultAction` of a phase, if set.
    pub(crate) fn default_for(&self, phase: u8) -> Option<&Actions> {
        self.defaults[usize::from(phase - 1)].as_ref()
    }

    pub(crate) fn block_as(&self, phase: u8) -> Disruptive {
        self.default_for(phase)
            .and_then(|d| d.disruptive)
            .unwrap_or(Disruptive::Pass)
    }
}

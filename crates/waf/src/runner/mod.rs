//! Runs OWASP CRS regression tests (the go-ftw YAML format) in-process: each test's
//! request goes through a [`Transaction`](crate::Transaction), the rules that fired are
//! compared with `expect_ids` / `no_expect_ids` (and `status`, `match_regex` when given).

mod http;
mod yaml;

use crate::{Response, Ruleset, RulesetBuilder, Transaction};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// `crs-setup.conf`.
    pub setup: PathBuf,
    /// The directory of `*.conf` rule files.
    pub rules: PathBuf,
    /// The directory of YAML tests (searched recursively).
    pub tests: PathBuf,
    /// Paranoia level (sets `tx.blocking_paranoia_level`), if given.
    pub paranoia: Option<u8>,
    /// The overrides file (harness directives and skipped tests).
    pub overrides: Option<PathBuf>,
    /// Only tests whose name (`RULE-ID`) starts with this.
    pub filter: Option<String>,
}

/// One failed test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `RULEID-TESTID`.
    pub test: String,
    /// What differed.
    pub reason: String,
}

/// The result of a run.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Passed test names.
    pub passed: Vec<String>,
    /// Failures.
    pub failed: Vec<Failure>,
    /// Skipped by the overrides file: name and reason.
    pub skipped: Vec<(String, String)>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for x in &self.failed {
            writeln!(f, "FAIL {}: {}", x.test, x.reason)?;
        }
        write!(
            f,
            "{} passed, {} failed ({} skipped by overrides)",
            self.passed.len(),
            self.failed.len(),
            self.skipped.len()
        )
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The rules did not load.
    #[error(transparent)]
    Load(#[from] crate::LoadError),
    /// A file could not be read or parsed.
    #[error("{0}")]
    Input(String),
}

/// Loads the rules as the CRS test harness does: setup, the overrides' directives, the
/// paranoia level, then the rule files.
pub fn load_ruleset(cfg: &RunnerConfig) -> Result<Ruleset, RunnerError> {
    let ov = load_overrides(cfg.overrides.as_deref())?;
    let mut b = RulesetBuilder::new();
    b.load_file(&cfg.setup)?;
    if !ov.directives.trim().is_empty() {
        let name = cfg
            .overrides
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        b.load_str(&name, &ov.directives)?;
    }
    if let Some(p) = cfg.paranoia {
        b.load_str(
            "--paranoia",
            &format!(
                "SecAction \"id:8999001,phase:1,pass,nolog,setvar:tx.blocking_paranoia_level={p},setvar:tx.detection_paranoia_level={p}\""
            ),
        )?;
    }
    b.load_dir(&cfg.rules)?;
    Ok(b.build()?)
}

fn load_overrides(p: Option<&Path>) -> Result<yaml::Overrides, RunnerError> {
    let Some(p) = p else {
        return Ok(yaml::Overrides::default());
    };
    let text = std::fs::read_to_string(p)
        .map_err(|e| RunnerError::Input(format!("{}: {e}", p.display())))?;
    serde_saphyr::from_str(&text).map_err(|e| RunnerError::Input(format!("{}: {e}", p.display())))
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            yaml_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
    Ok(())
}

/// Runs every test under `cfg.tests`.
pub fn run(cfg: &RunnerConfig) -> Result<Outcome, RunnerError> {
    let rs = load_ruleset(cfg)?;
    let ov = load_overrides(cfg.overrides.as_deref())?;
    let skip: HashMap<&str, &str> = ov
        .tests
        .iter()
        .map(|e| (e.test.as_str(), e.reason.as_str()))
        .collect();
    let mut files = Vec::new();
    yaml_files(&cfg.tests, &mut files)
        .map_err(|e| RunnerError::Input(format!("{}: {e}", cfg.tests.display())))?;
    files.sort();
    let mut out = Outcome::default();
    for f in files {
        let text = std::fs::read_to_string(&f)
            .map_err(|e| RunnerError::Input(format!("{}: {e}", f.display())))?;
        let tf: yaml::TestFile = match serde_saphyr::from_str(&text) {
            Ok(t) => t,
            Err(e) => {
                out.failed.push(Failure {
                    test: f.display().to_string(),
                    reason: format!("cannot parse: {e}"),
                });
                continue;
            }
        };
        let rule = tf.rule_id.as_ref().map(|r| r.0.clone()).unwrap_or_else(|| {
            f.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        for (n, t) in tf.tests.iter().enumerate() {
            let id = t
                .test_id
                .as_ref()
                .map(|i| format!("{rule}-{}", i.0))
                .or_else(|| t.test_title.as_ref().map(|x| x.0.clone()))
                .unwrap_or_else(|| format!("{rule}-{}", n + 1));
            if cfg.filter.as_deref().is_some_and(|fl| !id.starts_with(fl)) {
                continue;
            }
            if let Some(reason) = skip.get(id.as_str()) {
                out.skipped.push((id, reason.to_string()));
                continue;
            }
            match run_test(&rs, t) {
                Ok(()) => out.passed.push(id),
                Err(reason) => out.failed.push(Failure { test: id, reason }),
            }
        }
    }
    Ok(out)
}

fn run_test(rs: &Ruleset, t: &yaml::TestCase) -> Result<(), String> {
    for s in &t.stages {
        let s = s.stage.as_deref().unwrap_or(s);
        run_stage(rs, s)?;
    }
    Ok(())
}

fn run_stage(rs: &Ruleset, s: &yaml::Stage) -> Result<(), String> {
    let req = http::from_input(&s.input)?;
    let headers: Vec<(&[u8], &[u8])> = req
        .headers
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    let mut tx = Transaction::new(rs);
    tx.process_request(&crate::Request {
        method: &req.method,
        uri: &req.uri,
        protocol: &req.version,
        headers: &headers,
        body: &req.body,
        remote_addr: "127.0.0.1",
    });
    let resp = http::backend(&req);
    let rh: Vec<(&[u8], &[u8])> = resp
        .headers
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    if tx.interruption().is_none() {
        tx.process_response(&Response {
            status: resp.status,
            protocol: "HTTP/1.1",
            headers: &rh,
            body: &resp.body,
        });
    }
    tx.process_logging();
    let fired: BTreeSet<u32> = tx.matched_rules().iter().map(|m| m.id).collect();
    let status = tx.interruption().map(|i| i.status).unwrap_or(resp.status);
    let mut problems = Vec::new();
    if let Some(log) = &s.output.log {
        let missing: Vec<u32> = log
            .expect_ids
            .iter()
            .copied()
            .filter(|i| !fired.contains(i))
            .collect();
        if !missing.is_empty() {
            problems.push(format!("expected {missing:?} to fire"));
        }
        let extra: Vec<u32> = log
            .no_expect_ids
            .iter()
            .copied()
            .filter(|i| fired.contains(i))
            .collect();
        if !extra.is_empty() {
            problems.push(format!("expected {extra:?} not to fire"));
        }
        let log_text = log_lines(&tx);
        if let Some(re) = &log.match_regex {
            let r = regex::Regex::new(&re.0).map_err(|e| e.to_string())?;
            if !r.is_match(&log_text) {
                problems.push(format!("log does not match /{}/", re.0));
            }
        }
        if let Some(re) = &log.no_match_regex {
            let r = regex::Regex::new(&re.0).map_err(|e| e.to_string())?;
            if r.is_match(&log_text) {
                problems.push(format!("log matches /{}/", re.0));
            }
        }
    }
    if let Some(st) = &s.output.status {
        if !st.0.is_empty() && !st.0.contains(&status) {
            problems.push(format!("status {status}, expected {:?}", st.0));
        }
    }
    if s.output.expect_error == Some(true) {
        problems.push("expects the request to fail at the HTTP level".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{} (fired: {:?})", problems.join("; "), fired))
    }
}

/// ModSecurity-style log lines, for `match_regex`.
fn log_lines(tx: &Transaction<'_>) -> String {
    let mut s = String::new();
    for m in tx.matched_rules() {
        s.push_str(&format!(
            "[id \"{}\"] [msg \"{}\"] [data \"{}\"] [severity \"{}\"] [matched \"{}\"]",
            m.id,
            log_escape(&m.msg),
            log_escape(&m.data),
            m.severity.map(|x| x.to_string()).unwrap_or_default(),
            m.matched_var_name
        ));
        for t in &m.tags {
            s.push_str(&format!(" [tag \"{t}\"]"));
        }
        s.push('\n');
    }
    s
}

/// Control characters as `\xHH`, as ModSecurity writes them to its log.
fn log_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

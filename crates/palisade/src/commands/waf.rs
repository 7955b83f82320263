//! `palisade waf test --setup FILE --rules DIR --tests DIR [--paranoia N] [--overrides FILE]`:
//! runs OWASP CRS regression tests through the WAF engine in-process and prints
//! `N passed, N failed` plus the failures.

use palisade_waf::runner::{self, RunnerConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: WafCommand,
}

#[derive(clap::Subcommand)]
enum WafCommand {
    /// Run CRS's YAML regression tests against the rules.
    Test(TestArgs),
}

#[derive(clap::Args)]
struct TestArgs {
    /// crs-setup.conf (read first).
    #[arg(long)]
    setup: PathBuf,
    /// Directory of rule files (`*.conf`, read in name order).
    #[arg(long)]
    rules: PathBuf,
    /// Directory of YAML regression tests (searched recursively).
    #[arg(long)]
    tests: PathBuf,
    /// Paranoia level 1–4.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=4))]
    paranoia: Option<u8>,
    /// Harness directives and tests skipped with reasons (e.g. crates/waf/overrides.yaml).
    #[arg(long)]
    overrides: Option<PathBuf>,
    /// Only tests whose name (RULEID-TESTID) starts with this.
    #[arg(long)]
    filter: Option<String>,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    match a.command {
        WafCommand::Test(t) => test(t),
    }
}

fn test(t: TestArgs) -> anyhow::Result<ExitCode> {
    let cfg = RunnerConfig {
        setup: t.setup,
        rules: t.rules,
        tests: t.tests,
        paranoia: t.paranoia,
        overrides: t.overrides,
        filter: t.filter,
    };
    let out = match runner::run(&cfg) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    println!("{out}");
    Ok(if out.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

//! Applying rulesets with the `nft` binary: one script, one atomic transaction.

use std::io::Write;
use std::process::{Command, Stdio};

/// Why a ruleset was not applied.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` could not be started.
    #[error("cannot run nft: {0}")]
    Spawn(std::io::Error),
    /// `nft` rejected the transaction; nothing of it was applied.
    #[error("nft rejected the ruleset (previous ruleset stays in force): {0}")]
    Rejected(String),
}

/// Runs `nft -f -` with `script` (inside network namespace `netns` when given).
pub fn apply(script: &str, netns: Option<&str>) -> Result<(), NftError> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "nft", "-f", "-"]);
            c
        }
        None => {
            let mut c = Command::new("nft");
            c.args(["-f", "-"]);
            c
        }
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Rejected(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Runs `nft ARGS` (in `netns` when given) and returns its stdout.
pub fn run(args: &[&str], netns: Option<&str>) -> Result<String, NftError> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "nft"]);
            c
        }
        None => Command::new("nft"),
    };
    let out = cmd.args(args).output().map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NftError::Rejected(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

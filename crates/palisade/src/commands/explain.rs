//! `palisade explain PATH... --from NS/POD --to NS/POD|IP|FQDN --port N`, or
//! `palisade explain --member HOST:PORT ...` to ask a running `palisade up` (its admin API)
//! what it enforces now, with the generation and federation revision that decided.

use super::analyze::parse_protocol;
use super::{load_engine, Output, PostureArg};
use palisade_policy::{Endpoint, Flow, HttpRequest, Protocol};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Files or folders of manifests.
    #[arg(required_unless_present = "member")]
    paths: Vec<PathBuf>,
    /// Ask a running `palisade up` at this admin address instead of reading manifests.
    #[arg(long, conflicts_with = "paths")]
    member: Option<String>,
    /// With `--member`: a file holding the member's admin token (sent as
    /// `Authorization: Bearer <token>`).
    #[arg(long, value_name = "FILE", requires = "member")]
    admin_token_file: Option<PathBuf>,
    /// Source: NAMESPACE/POD or an IP.
    #[arg(long)]
    from: String,
    /// Destination: NAMESPACE/POD, an IP, or an FQDN.
    #[arg(long)]
    to: String,
    /// Destination port.
    #[arg(long)]
    port: u16,
    /// Protocol.
    #[arg(long, value_parser = parse_protocol, default_value = "TCP")]
    protocol: Protocol,
    /// For an FQDN destination: the IP it resolved to.
    #[arg(long)]
    ip: Option<IpAddr>,
    /// HTTP method (L7 rules).
    #[arg(long)]
    method: Option<String>,
    /// HTTP path (L7 rules).
    #[arg(long)]
    path: Option<String>,
    /// HTTP header `Name: value` (repeatable).
    #[arg(long)]
    header: Vec<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: Output,
    /// Default posture, overriding the PalisadeConfig's.
    #[arg(long, value_enum)]
    default_posture: Option<PostureArg>,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    if let Some(addr) = &a.member {
        return explain_member(addr, &a);
    }
    let Some((_, engine)) = load_engine(&a.paths, a.default_posture) else {
        return Ok(ExitCode::from(1));
    };
    let src = match engine.parse_endpoint(&a.from, None, false) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: --from: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let dst = match engine.parse_endpoint(&a.to, a.ip, true) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: --to: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let headers: Vec<(&str, &str)> = a
        .header
        .iter()
        .filter_map(|h| h.split_once(':').map(|(k, v)| (k.trim(), v.trim())))
        .collect();
    let http = (a.method.is_some() || a.path.is_some()).then(|| HttpRequest {
        method: a.method.as_deref().unwrap_or("GET"),
        path: a.path.as_deref().unwrap_or("/"),
        host: match dst {
            Endpoint::Fqdn { name, .. } => Some(name),
            _ => None,
        },
        headers: &headers,
    });
    let flow = Flow {
        src,
        dst,
        port: a.port,
        protocol: a.protocol,
        http,
    };
    let ex = engine.explain(&flow);
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&ex)?),
        Output::Table => {
            let verdict = match ex.verdict {
                palisade_policy::Action::Allow => "ALLOWED",
                palisade_policy::Action::Deny => "DENIED",
                palisade_policy::Action::Audit => "ALLOWED (audit: would be denied)",
            };
            println!(
                "{verdict}: {} -> {} port {}/{}",
                a.from, a.to, a.port, a.protocol
            );
            for s in &ex.steps {
                let pass = if s.audit_pass { " (audit pass)" } else { "" };
                println!("  {:?} {:?}{pass}: {}", s.direction, s.stage, s.text);
            }
            println!("{}", ex.summary);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--member`: the running member's verdict, stamped with what it enforces.
fn explain_member(addr: &str, a: &Args) -> anyhow::Result<ExitCode> {
    let mut query = vec![
        ("from", a.from.clone()),
        ("to", a.to.clone()),
        ("port", a.port.to_string()),
        ("protocol", a.protocol.to_string()),
    ];
    for (k, v) in [
        ("ip", a.ip.map(|i| i.to_string())),
        ("method", a.method.clone()),
        ("path", a.path.clone()),
    ] {
        if let Some(v) = v {
            query.push((k, v));
        }
    }
    let token = match &a.admin_token_file {
        Some(f) => match std::fs::read_to_string(f) {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
            Ok(_) => {
                eprintln!("error: --admin-token-file {}: empty", f.display());
                return Ok(ExitCode::from(1));
            }
            Err(e) => {
                eprintln!("error: --admin-token-file {}: {e}", f.display());
                return Ok(ExitCode::from(1));
            }
        },
        None => None,
    };
    // What the member answers is printed escaped and cut: it is another cluster's words.
    let shown = |s: &str| {
        let s = super::printable(s);
        match s.char_indices().nth(500) {
            Some((i, _)) => format!("{}… ({} more bytes)", &s[..i], s.len() - i),
            None => s.into_owned(),
        }
    };
    let (status, body) =
        match super::admin_client::get(addr, "/api/v1/explain", &query, token.as_deref()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: --member {addr}: {e}");
                return Ok(ExitCode::from(1));
            }
        };
    let v: serde_json::Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(_) => {
            eprintln!(
                "error: --member {addr}: HTTP {status}: {}",
                shown(body.trim())
            );
            return Ok(ExitCode::from(1));
        }
    };
    if status != 200 {
        let msg = v["error"]["message"].as_str().unwrap_or("request failed");
        eprintln!("error: --member {addr}: HTTP {status}: {}", shown(msg));
        return Ok(ExitCode::from(1));
    }
    let stamp = match v["federationRevision"].as_u64() {
        Some(r) => format!("federation revision {r}"),
        None => "federation revision none".to_string(),
    };
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        Output::Table => {
            let ex = &v["explanation"];
            let verdict = match ex["verdict"].as_str() {
                Some("allow") => "ALLOWED",
                Some("deny") => "DENIED",
                Some("audit") => "ALLOWED (audit: would be denied)",
                _ => "UNKNOWN",
            };
            println!(
                "{verdict}: {} -> {} port {}/{}",
                a.from, a.to, a.port, a.protocol
            );
            for s in ex["steps"].as_array().into_iter().flatten() {
                println!(
                    "  {} {}: {}",
                    shown(s["direction"].as_str().unwrap_or("")),
                    shown(s["stage"].as_str().unwrap_or("")),
                    shown(s["text"].as_str().unwrap_or(""))
                );
            }
            println!("{}", shown(ex["summary"].as_str().unwrap_or("")));
            println!("{stamp} (generation {})", v["generation"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `palisade explain PATH... --from NS/POD --to NS/POD|IP|FQDN --port N`

use super::analyze::parse_protocol;
use super::{load_engine, Output, PostureArg};
use palisade_policy::{Endpoint, Flow, HttpRequest, Protocol};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Files or folders of manifests.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
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

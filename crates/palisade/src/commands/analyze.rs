//! `palisade analyze PATH... [--port N] [--protocol P] [--output table|json]`

use super::{load_engine, Output, PostureArg};
use palisade_policy::{Engine, Matrix, Protocol};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Files or folders of manifests.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Ports to probe (repeatable); default: every port any pod declares.
    #[arg(long)]
    port: Vec<u16>,
    /// Protocol of the probed ports (TCP, UDP, SCTP).
    #[arg(long, value_parser = parse_protocol)]
    protocol: Option<Protocol>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    output: Output,
    /// Default posture, overriding the PalisadeConfig's.
    #[arg(long, value_enum)]
    default_posture: Option<PostureArg>,
    /// Include the exposure summary in JSON output.
    #[arg(long)]
    exposure: bool,
}

pub(crate) fn parse_protocol(s: &str) -> Result<Protocol, String> {
    Protocol::parse(s).ok_or_else(|| format!("{s:?} is not TCP, UDP or SCTP"))
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    let Some((_, engine)) = load_engine(&a.paths, a.default_posture) else {
        return Ok(ExitCode::from(1));
    };
    let probes: Vec<(u16, Protocol)> = if a.port.is_empty() {
        engine
            .declared_ports()
            .into_iter()
            .filter(|(_, p)| a.protocol.is_none_or(|want| want == *p))
            .collect()
    } else {
        a.port
            .iter()
            .map(|p| (*p, a.protocol.unwrap_or(Protocol::TCP)))
            .collect()
    };
    let pods = engine.sorted_pods();
    let matrices: Vec<Matrix> = probes
        .iter()
        .map(|(port, proto)| engine.matrix(&pods, *port, *proto))
        .collect();
    match a.output {
        Output::Json => {
            let mut v = json!({ "probes": matrices.iter().map(|m| matrix_json(&engine, m)).collect::<Vec<_>>() });
            if a.exposure {
                v["exposure"] = serde_json::to_value(engine.exposure(&matrices))?;
            }
            println!("{}", serde_json::to_string(&v)?);
        }
        Output::Table => {
            for m in &matrices {
                print_table(&engine, m);
            }
            print_exposure(&engine, &matrices);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn matrix_json(engine: &Engine, m: &Matrix) -> Value {
    let names: Vec<String> = m
        .pods
        .iter()
        .map(|p| engine.pods()[*p as usize].key())
        .collect();
    let mut rows = Map::new();
    for (i, from) in names.iter().enumerate() {
        let mut row = Map::new();
        for (j, to) in names.iter().enumerate() {
            row.insert(to.clone(), Value::Bool(m.get(i, j)));
        }
        rows.insert(from.clone(), Value::Object(row));
    }
    json!({ "port": m.port, "protocol": m.protocol.as_str(), "matrix": rows })
}

fn print_table(engine: &Engine, m: &Matrix) {
    let names: Vec<String> = m
        .pods
        .iter()
        .map(|p| engine.pods()[*p as usize].key())
        .collect();
    let allowed = m.allowed.iter().filter(|b| **b).count();
    println!(
        "{}/{}: {allowed} of {} pod pairs allowed (rows: from, columns: to; . allowed, X denied)",
        m.port,
        m.protocol,
        m.allowed.len()
    );
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    print!("{:width$} ", "");
    for j in 0..names.len() {
        print!("{:>3}", j % 1000);
    }
    println!();
    for (i, n) in names.iter().enumerate() {
        print!("{n:width$} ");
        for j in 0..names.len() {
            print!("{:>3}", if m.get(i, j) { "." } else { "X" });
        }
        println!("   {i}");
    }
    println!();
}

fn print_exposure(engine: &Engine, matrices: &[Matrix]) {
    let e = engine.exposure(matrices);
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    println!("Exposure");
    println!(
        "  reachable from every other namespace: {}",
        list(&e.reachable_from_all_namespaces)
    );
    println!(
        "  unrestricted egress:                  {}",
        list(&e.unrestricted_egress)
    );
    println!(
        "  namespaces without any policy:        {}",
        list(&e.namespaces_without_policy)
    );
}

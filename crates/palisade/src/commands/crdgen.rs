//! `palisade crdgen [--output-dir DIR]`: the CRDs of Palisade's kinds, generated from the
//! Rust types. Without a folder, every CRD goes to stdout as one multi-document YAML.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Write one file per CRD into this folder (e.g. deploy/crds) instead of stdout.
    #[arg(long, short = 'o')]
    output_dir: Option<PathBuf>,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    let crds = palisade_k8s::crd::generate().map_err(anyhow::Error::msg)?;
    match a.output_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for c in &crds {
                let path = dir.join(&c.file_name);
                std::fs::write(&path, &c.yaml)?;
                eprintln!("wrote {}", path.display());
            }
        }
        None => {
            for (i, c) in crds.iter().enumerate() {
                if i > 0 {
                    println!("---");
                }
                print!("{}", c.yaml);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `palisade ca init`: the CA the egress gateway mints interception certificates with.
//! Name the files in the config (`spec.ca.certFile`, `spec.ca.keyFile`) and give clients
//! `ca.crt` to trust.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Write a new CA certificate (`ca.crt`) and private key (`ca.key`, mode 0600).
    Init {
        /// Folder to write into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "Palisade egress CA")]
        name: String,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    let Command::Init { out, name, force } = a.command;
    let (cert, key) = palisade_egress::tls::generate_ca(&name)?;
    std::fs::create_dir_all(&out)?;
    for (file, text, mode) in [("ca.crt", &cert, 0o644), ("ca.key", &key, 0o600)] {
        let path = out.join(file);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).mode(mode);
        if force {
            opts.create(true).truncate(true);
        } else {
            opts.create_new(true);
        }
        let mut f = opts
            .open(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e} (--force replaces)", path.display()))?;
        f.write_all(text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

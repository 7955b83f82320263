//! `palisade detect replay FILE.jsonl [--config FILE]`: runs the detectors over recorded
//! events on event time and prints the alerts as JSON lines.

use palisade_detect::{DetectConfig, Detector};
use palisade_events::Event;
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: DetectCommand,
}

#[derive(clap::Subcommand)]
enum DetectCommand {
    /// Run the detectors over recorded events (JSON lines) and print alerts as JSON lines.
    Replay(ReplayArgs),
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Events in the EVENTS.md schema, one JSON object per line (`-` for stdin).
    file: PathBuf,
    /// Detector thresholds (JSON, see docs/detect.md); defaults when absent.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    match a.command {
        DetectCommand::Replay(r) => replay(r),
    }
}

fn replay(a: ReplayArgs) -> anyhow::Result<ExitCode> {
    let cfg = match &a.config {
        None => DetectConfig::default(),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            match DetectConfig::from_json(&text) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: {e}", p.display());
                    return Ok(ExitCode::from(1));
                }
            }
        }
    };
    let reader: Box<dyn BufRead> = if a.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(&a.file)
            .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut events: Vec<Event> = Vec::new();
    let mut skipped = 0usize;
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        match Event::from_json_line(&text) {
            Ok(e) => events.push(e),
            Err(e) => {
                skipped += 1;
                if skipped <= 20 {
                    eprintln!("warning: {}:{}: skipped: {e}", a.file.display(), i + 1);
                }
            }
        }
    }
    // Time order; ties keep the file's order.
    events.sort_by_key(|e| e.time);
    let mut det = Detector::new(cfg);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut alerts = 0usize;
    let mut buf = Vec::with_capacity(1024);
    for e in &events {
        for alert in det.observe(e) {
            buf.clear();
            alert.write_json_line(&mut buf);
            out.write_all(&buf)?;
            alerts += 1;
        }
    }
    for alert in det.finish() {
        buf.clear();
        alert.write_json_line(&mut buf);
        out.write_all(&buf)?;
        alerts += 1;
    }
    out.flush()?;
    if skipped > 0 {
        eprintln!(
            "warning: skipped {skipped} unparseable line(s) of {}",
            a.file.display()
        );
    }
    eprintln!("{} event(s) replayed, {alerts} alert(s)", events.len());
    Ok(ExitCode::SUCCESS)
}

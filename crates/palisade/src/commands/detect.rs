//! `palisade detect replay FILE.jsonl [--config FILE]`: runs the detectors over recorded
//! events on event time and prints the alerts as JSON lines.

use palisade_detect::{DetectConfig, Detector};
use palisade_events::Event;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
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

/// How far out of time order events may be and still be replayed in order (5 minutes).
const REORDER_US: i64 = 300 * 1_000_000;

/// An event waiting in the reorder buffer; the heap pops the earliest (then first read).
struct Queued {
    seq: u64,
    event: Event,
}

impl Queued {
    fn key(&self) -> (i64, u64) {
        (self.event.time.as_micros(), self.seq)
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
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
    let mut det = Detector::new(cfg);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut alerts = 0usize;
    let mut buf = Vec::with_capacity(1024);
    let mut emit = |list: Vec<Event>, out: &mut BufWriter<_>| -> std::io::Result<()> {
        for alert in list {
            buf.clear();
            alert.write_json_line(&mut buf);
            out.write_all(&buf)?;
            alerts += 1;
        }
        Ok(())
    };
    // Events are replayed in time order through a reorder buffer, so the file is streamed
    // rather than held in memory; ties keep the file's order.
    let mut queue: BinaryHeap<Queued> = BinaryHeap::new();
    let (mut newest, mut seq, mut replayed, mut skipped) = (i64::MIN, 0u64, 0usize, 0usize);
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
        let text = String::from_utf8_lossy(&line);
        if text.trim().is_empty() {
            continue;
        }
        match Event::from_json_line(&text) {
            Ok(e) => {
                newest = newest.max(e.time.as_micros());
                seq += 1;
                queue.push(Queued { seq, event: e });
            }
            Err(e) => {
                skipped += 1;
                if skipped <= 20 {
                    eprintln!("warning: {}:{}: skipped: {e}", a.file.display(), i + 1);
                }
            }
        }
        while queue
            .peek()
            .is_some_and(|q| q.event.time.as_micros() <= newest.saturating_sub(REORDER_US))
        {
            if let Some(q) = queue.pop() {
                replayed += 1;
                emit(det.observe(&q.event), &mut out)?;
            }
        }
    }
    while let Some(q) = queue.pop() {
        replayed += 1;
        emit(det.observe(&q.event), &mut out)?;
    }
    emit(det.finish(), &mut out)?;
    out.flush()?;
    if skipped > 0 {
        eprintln!(
            "warning: skipped {skipped} unparseable line(s) of {}",
            a.file.display()
        );
    }
    if det.evicted() > 0 {
        eprintln!(
            "warning: more workloads and consumers than maxSubjects: {} of the quietest were evicted (their baselines restarted)",
            det.evicted()
        );
    }
    eprintln!("{replayed} event(s) replayed, {alerts} alert(s)");
    Ok(ExitCode::SUCCESS)
}

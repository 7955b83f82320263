//! `palisade guard train [--data FILE] [--model FILE]` trains the prompt-injection
//! classifier and writes its model file; `palisade guard eval FILE.jsonl [--model FILE]
//! [--output json]` prints precision, recall, F1, false-positive rate and latency per
//! prompt of the guard (the built-in model unless `--model` is given).

use super::Output;
use palisade_guard::train::{self, TrainOptions};
use palisade_guard::Guard;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: GuardCommand,
}

#[derive(clap::Subcommand)]
enum GuardCommand {
    /// Train the classifier from labelled JSONL and write the model file.
    Train(TrainArgs),
    /// Evaluate the guard on labelled JSONL (`{"text":…,"label":"injection"|"benign"}`).
    Eval(EvalArgs),
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Training data (JSONL).
    #[arg(long, default_value = "../shared/data/prompt-injection/train.jsonl")]
    data: PathBuf,
    /// Where to write the model.
    #[arg(long, default_value = "crates/guard/model/guard.model")]
    model: PathBuf,
    /// log2 of the hashed feature table size.
    #[arg(long, default_value_t = TrainOptions::default().bits, value_parser = clap::value_parser!(u32).range(8..=24))]
    bits: u32,
    /// Seed of the validation split and example order.
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    seed: u64,
    /// Output format of the training report.
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// Labelled prompts (JSONL).
    file: PathBuf,
    /// A model file instead of the built-in one.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

pub(crate) fn run(a: Args) -> anyhow::Result<ExitCode> {
    match a.command {
        GuardCommand::Train(t) => train(t),
        GuardCommand::Eval(e) => eval(e),
    }
}

fn train(t: TrainArgs) -> anyhow::Result<ExitCode> {
    let examples = palisade_guard::read_jsonl(&t.data)?;
    let opts = TrainOptions {
        bits: t.bits,
        seed: t.seed,
        ..TrainOptions::default()
    };
    let (bytes, report) = train::train(&examples, &opts)?;
    std::fs::write(&t.model, &bytes).map_err(|e| anyhow::anyhow!("{}: {e}", t.model.display()))?;
    if t.output == Output::Json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} training and {} validation examples",
        report.train_examples, report.validation_examples
    );
    println!("lambda    epochs  threshold  precision  recall  f1      fpr");
    for r in &report.trials {
        println!(
            "{:<9.0e} {:<7} {:<10.3} {:<10.4} {:<7.4} {:<7.4} {:.4}",
            r.lambda, r.epochs, r.threshold, r.precision, r.recall, r.f1, r.false_positive_rate
        );
    }
    let c = &report.chosen;
    println!(
        "chosen: lambda {:e}, {} epochs, threshold {:.3}; retrained on all {} examples and the generated ones; wrote {} ({} bytes)",
        c.lambda,
        c.epochs,
        c.threshold,
        examples.len(),
        t.model.display(),
        report.model_bytes
    );
    Ok(ExitCode::SUCCESS)
}

fn eval(e: EvalArgs) -> anyhow::Result<ExitCode> {
    let guard = match &e.model {
        Some(p) => Guard::load(p)?,
        None => Guard::builtin(),
    };
    let examples = palisade_guard::read_jsonl(&e.file)?;
    let r = palisade_guard::evaluate(&guard, &examples);
    if e.output == Output::Json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("prompts              {}", r.prompts);
    println!("precision            {:.4}", r.precision);
    println!("recall               {:.4}", r.recall);
    println!("f1                   {:.4}", r.f1);
    println!("false positive rate  {:.4}", r.false_positive_rate);
    println!(
        "confusion            tp {} fp {} tn {} fn {}",
        r.true_positives, r.false_positives, r.true_negatives, r.false_negatives
    );
    println!(
        "latency per prompt   p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        r.p50_us, r.p99_us, r.max_us
    );
    Ok(ExitCode::SUCCESS)
}

//! `mqbench`: the load generator's command line. Parses the workload, starts a tokio runtime
//! of `--threads` workers, runs the workload until its window ends (or Ctrl-C) and prints the
//! summary: as text on stdout, or with `--json` as one JSON object on stdout and the text on
//! stderr. Live lines go to stderr once a second.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::Parser;
use ferrocket_bench::cli::{Cli, Command};
use ferrocket_bench::control::Stop;
use ferrocket_bench::run::run;

/// Requests and answers allocate many small, short-lived buffers: mimalloc serves them from
/// per-thread free lists, cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match main_with(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mqbench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr at `error` unless `RUST_LOG` says otherwise: the client's info and warn
/// lines (one per failed send or pull) would drown the live lines, and the first failure of
/// each kind is printed anyway.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn main_with(cli: Cli) -> Result<()> {
    let run_args = match &cli.command {
        Command::Produce(args) => &args.run,
        Command::Consume(args) => &args.run,
        Command::E2e(args) => &args.run,
    };
    let (threads, json) = (run_args.threads.max(1), run_args.json);
    let runtime = ferrocket::runtime(Some(threads))?;
    let summary = runtime.block_on(async move {
        let env = ferrocket::production_env()?;
        let stop = Arc::new(Stop::default());
        let interrupted = Arc::new(AtomicBool::new(false));
        let on_interrupt = {
            let (stop, interrupted) = (stop.clone(), interrupted.clone());
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    interrupted.store(true, Ordering::SeqCst);
                    stop.stop();
                }
            })
        };
        let result = run(&env, cli.command, threads, stop).await;
        on_interrupt.abort();
        let mut summary = result?;
        summary.interrupted = interrupted.load(Ordering::SeqCst);
        anyhow::Ok(summary)
    })?;
    let mut stdout = std::io::stdout().lock();
    if json {
        // The text is a copy for the reader of the log; stdout carries the JSON.
        let _ = write!(std::io::stderr().lock(), "{}", summary.render());
        let json = serde_json::to_string(&summary).context("the summary is plain data")?;
        writeln!(stdout, "{json}")
    } else {
        write!(stdout, "{}", summary.render())
    }
    .context("cannot write the summary to stdout")?;
    Ok(())
}

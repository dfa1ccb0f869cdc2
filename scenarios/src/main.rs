//! `scenarios`: sweeps simulation scenarios over seeds.
//!
//! ```text
//! scenarios [--scenario NAME]... [--swarm | --swarm-only] [--seeds A..B] [--check-determinism] [--verbose]
//! ```
//!
//! Without `--scenario` every named scenario runs (none with `--swarm-only`); `--swarm`
//! adds a plan drawn from each seed. Exits non-zero when any
//! seed fails and prints, for each failure, the command that replays it with full tracing.
//! Only the simulated build (`RUSTFLAGS="--cfg madsim"`) can run scenarios.

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    sweep::main()
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "scenarios run only in the simulated build:\n  \
         RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo run -p ferrocket-scenarios -- --help"
    );
    std::process::ExitCode::from(2)
}

#[cfg(madsim)]
mod sweep {
    use std::ops::Range;
    use std::process::ExitCode;

    use clap::Parser;
    use ferrocket_scenarios::runner::{Summary, run_seed};
    use ferrocket_scenarios::story::{InjectedBug, Story};
    use ferrocket_scenarios::{catalog, swarm};
    use indicatif::{ProgressBar, ProgressStyle};

    #[derive(Debug, Parser)]
    #[command(
        name = "scenarios",
        about = "Sweeps ferrocket's simulation scenarios over seeds"
    )]
    struct Args {
        /// A named scenario to run (repeatable); see --list.
        #[arg(long = "scenario")]
        scenarios: Vec<String>,
        /// Also run a swarm plan drawn from each seed.
        #[arg(long)]
        swarm: bool,
        /// Run only the swarm plans.
        #[arg(long, conflicts_with = "scenarios")]
        swarm_only: bool,
        /// Seeds to run, `A..B` (B excluded) or a single seed.
        #[arg(long, default_value = "0..10", value_parser = parse_seeds)]
        seeds: Range<u64>,
        /// Run each seed twice and compare (madsim's determinism check).
        #[arg(long)]
        check_determinism: bool,
        /// Switch on a deliberate bug: `ack-sync-flush-before-sync`.
        #[arg(long, value_parser = parse_bug)]
        inject_bug: Option<InjectedBug>,
        /// Trace the runs (RUST_LOG filters; info by default) and print each plan.
        #[arg(long)]
        verbose: bool,
        /// List the named scenarios and exit.
        #[arg(long)]
        list: bool,
    }

    fn parse_seeds(text: &str) -> Result<Range<u64>, String> {
        let parse = |s: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|e| format!("seed {s:?}: {e}"))
        };
        match text.split_once("..") {
            Some((a, b)) => {
                let range = parse(a)?..parse(b)?;
                if range.is_empty() {
                    return Err(format!("empty seed range {text}"));
                }
                Ok(range)
            }
            None => parse(text).map(|seed| seed..seed + 1),
        }
    }

    fn parse_bug(text: &str) -> Result<InjectedBug, String> {
        match text {
            "ack-sync-flush-before-sync" => Ok(InjectedBug::AckSyncFlushBeforeSync),
            other => Err(format!(
                "unknown bug {other:?}; known: ack-sync-flush-before-sync"
            )),
        }
    }

    fn replay_command(args: &Args, scenario: &str, seed: u64) -> String {
        let which = if scenario.starts_with("swarm") {
            "--swarm-only".to_owned()
        } else {
            format!("--scenario {scenario}")
        };
        let bug = args
            .inject_bug
            .map(|_| " --inject-bug ack-sync-flush-before-sync")
            .unwrap_or_default();
        format!(
            "RUST_LOG=info RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo run -p ferrocket-scenarios -- {which} --seeds {seed}{bug} --verbose"
        )
    }

    pub fn main() -> ExitCode {
        let args = Args::parse();
        if args.list {
            for name in catalog::NAMES {
                println!("{name}");
            }
            return ExitCode::SUCCESS;
        }
        if args.verbose {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .try_init();
        }
        let mut named: Vec<String> = args.scenarios.clone();
        if named.is_empty() && !args.swarm_only {
            named = catalog::NAMES.iter().map(|s| (*s).to_owned()).collect();
        }
        let swarm = args.swarm || args.swarm_only;
        for name in &named {
            if catalog::story(name).is_none() {
                eprintln!("unknown scenario {name:?}; --list shows them");
                return ExitCode::from(2);
            }
        }
        let per_seed = named.len() + usize::from(swarm);
        let total = (args.seeds.end - args.seeds.start) * per_seed as u64;
        let progress = ProgressBar::new(total);
        progress.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} seeds·scenarios {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        if args.verbose || std::env::var_os("CI").is_some() {
            progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let mut summary = Summary::default();
        let mut failures = Vec::new();
        for seed in args.seeds.clone() {
            let mut stories: Vec<Story> = named
                .iter()
                .filter_map(|name| catalog::story(name))
                .collect();
            if swarm {
                stories.push(swarm::plan(seed));
            }
            for mut story in stories {
                story.bug = args.inject_bug;
                let single_run = args.seeds.end - args.seeds.start == 1;
                if args.verbose || (single_run && story.name.starts_with("swarm")) {
                    eprintln!("seed {seed}: {story:#?}");
                } else if story.name.starts_with("swarm") {
                    progress.set_message(format!("seed {seed} {}", story.name));
                }
                let outcome = run_seed(&story, seed, args.check_determinism);
                summary.add(&outcome);
                if !outcome.passed() {
                    progress.suspend(|| {
                        eprintln!(
                            "FAILED {} seed {seed}:\n  {}\n  replay: {}",
                            outcome.scenario,
                            outcome.failures.join("\n  "),
                            replay_command(&args, &outcome.scenario, seed)
                        )
                    });
                    failures.push((outcome.scenario.clone(), seed));
                }
                progress.inc(1);
            }
        }
        progress.finish_and_clear();
        println!("{}", summary.table());
        println!(
            "scenario result: {} passed; {} failed",
            total as usize - failures.len(),
            failures.len()
        );
        if failures.is_empty() {
            println!("all {total} runs passed");
            ExitCode::SUCCESS
        } else {
            println!("{} of {total} runs failed:", failures.len());
            for (scenario, seed) in &failures {
                println!("  {}", replay_command(&args, scenario, *seed));
            }
            ExitCode::FAILURE
        }
    }
}

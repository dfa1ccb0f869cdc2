//! The seed runner: plays scenarios over a range of seeds, each in a fresh madsim runtime,
//! and sums up what happened — seeds run, faults injected by kind, messages sent,
//! acknowledged and consumed, failures with the exact command that replays each.
//!
//! A seed fails when a checker reports a violation, an invariant check panics, or the run
//! exceeds its simulated-time limit. With determinism checking on, each seed runs twice
//! through madsim's `check_determinism` (the log of random draws and timer events must
//! match) before it is judged.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::time::Duration;

use madsim::Config;
use madsim::runtime::Runtime;

use crate::story::{self, RunReport, Story};

/// Simulated time after which a run counts as hung.
pub const TIME_LIMIT: Duration = Duration::from_secs(900);

/// How one seed of one scenario went.
#[derive(Debug)]
pub struct SeedOutcome {
    /// The scenario's name (a swarm plan names its fault kinds).
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// The run's report, unless it panicked.
    pub report: Option<RunReport>,
    /// Why it failed: checker violations, or the panic message.
    pub failures: Vec<String>,
}

impl SeedOutcome {
    /// Whether the seed passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The story the determinism check's plain `fn` runs (madsim takes a `fn() -> F`, which
/// cannot capture).
static DETERMINISM_STORY: Mutex<Option<Story>> = Mutex::new(None);

/// Held for a whole determinism check.
static DETERMINISM_CHECK: Mutex<()> = Mutex::new(());

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Plays `story` with `seed` in a fresh runtime; with `check_determinism`, twice, comparing.
pub fn run_seed(story: &Story, seed: u64, check_determinism: bool) -> SeedOutcome {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if check_determinism {
            // One check at a time: the story travels through a static.
            let _one_at_a_time = DETERMINISM_CHECK.lock().unwrap_or_else(|p| p.into_inner());
            *DETERMINISM_STORY.lock().unwrap_or_else(|p| p.into_inner()) = Some(story.clone());
            Runtime::check_determinism(seed, Config::default(), || async {
                let story = DETERMINISM_STORY
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .expect("set before the check");
                let report = story::run(&story).await;
                (report.violations.clone(), format!("{:?}", report.faults))
            });
        }
        let mut runtime = Runtime::with_seed_and_config(seed, Config::default());
        runtime.set_time_limit(TIME_LIMIT);
        runtime.block_on(story::run(story))
    }));
    match outcome {
        Ok(report) => SeedOutcome {
            scenario: story.name.clone(),
            seed,
            failures: report.violations.clone(),
            report: Some(report),
        },
        Err(payload) => SeedOutcome {
            scenario: story.name.clone(),
            seed,
            report: None,
            failures: vec![format!("panicked: {}", panic_message(payload.as_ref()))],
        },
    }
}

/// Totals over a sweep.
#[derive(Debug, Default)]
pub struct Summary {
    /// Seeds run, per scenario.
    pub runs: BTreeMap<String, u64>,
    /// Failed seeds, per scenario.
    pub failed: BTreeMap<String, u64>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Messages sent.
    pub sent: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages delivered to consumers (with redeliveries).
    pub consumed: u64,
}

impl Summary {
    /// Adds one seed's outcome.
    pub fn add(&mut self, outcome: &SeedOutcome) {
        let family = outcome
            .scenario
            .split('[')
            .next()
            .unwrap_or(&outcome.scenario)
            .to_owned();
        *self.runs.entry(family.clone()).or_default() += 1;
        if !outcome.passed() {
            *self.failed.entry(family).or_default() += 1;
        }
        if let Some(report) = &outcome.report {
            for (kind, count) in &report.faults {
                *self.faults.entry((*kind).to_owned()).or_default() += count;
            }
            self.sent += report.history.sends.len() as u64;
            self.acked += report.history.acked_count() as u64;
            self.consumed += report.history.deliveries.len() as u64;
        }
    }

    /// The summary table, in Markdown.
    pub fn table(&self) -> String {
        let mut out = String::from("| scenario | seeds | failed |\n|---|---:|---:|\n");
        for (scenario, runs) in &self.runs {
            let failed = self.failed.get(scenario).copied().unwrap_or(0);
            out.push_str(&format!("| {scenario} | {runs} | {failed} |\n"));
        }
        out.push_str("\n| fault | injected |\n|---|---:|\n");
        for (kind, count) in &self.faults {
            out.push_str(&format!("| {kind} | {count} |\n"));
        }
        out.push_str(&format!(
            "\nmessages: {} sent, {} acknowledged, {} consumed\n",
            self.sent, self.acked, self.consumed
        ));
        out
    }

    /// Whether any seed failed.
    pub fn any_failed(&self) -> bool {
        self.failed.values().any(|n| *n > 0)
    }
}

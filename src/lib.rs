//! ferrocket: the binaries (`mqnamesrv`, `mqbroker`, ...) — thin wrappers that parse the
//! command line and Java-properties config files, bind the engine to tokio and memory-mapped
//! files, and run until SIGINT/SIGTERM — and the ready-to-use Rust client ([`client`]).

pub mod client;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use ferrocket_engine::Env;
use ferrocket_engine::config::{PropertiesConfig, apply_properties, parse_properties};
use ferrocket_engine::rng::Rng;

/// Starts structured logging to stderr; `RUST_LOG` overrides the default `info` level.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Reads a Java properties file.
pub fn read_properties_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    parse_properties(&text).with_context(|| format!("config file {}", path.display()))
}

/// Applies properties to configs; unknown keys are reported on stderr (Java ignores them
/// silently, which hides typos).
pub fn apply_config(
    configs: &mut [&mut dyn PropertiesConfig],
    properties: &BTreeMap<String, String>,
    source: &str,
) -> Result<()> {
    let unknown = apply_properties(configs, properties).with_context(|| source.to_owned())?;
    for key in unknown {
        tracing::warn!(%key, source, "unknown config key ignored");
        eprintln!("warning: unknown config key `{key}` in {source} ignored");
    }
    Ok(())
}

/// The process's async runtime with `worker_threads` workers (`None`: one per core). One
/// worker makes a current-thread runtime: tasks run in the order they were woken, so the
/// answers to the requests that arrived in one read are written in one write, with no
/// wake-ups across threads — the cheapest setting where the server shares a small machine
/// with its clients.
pub fn runtime(worker_threads: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let mut builder = match worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(0) => anyhow::bail!("the runtime needs at least one worker thread"),
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

/// The production environment: tokio sockets and clock, memory-mapped files under `/`, and
/// randomness seeded from the system.
pub fn production_env() -> Result<Env> {
    let disk = ferrocket_disk::MmapDisk::shared("/").context("cannot open the filesystem")?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id());
    Ok(Env {
        clock: ferrocket_net::SystemClock::shared(),
        net: ferrocket_net::TokioNet::shared(),
        disk,
        rng: Arc::new(Rng::from_seed(seed)),
    })
}

/// Turns a path (absolute, or relative to the working directory) into the form the
/// production disk takes: relative to `/`.
pub fn disk_path(path: &str) -> Result<String> {
    let absolute: PathBuf = if Path::new(path).is_absolute() {
        PathBuf::from(path)
    } else {
        std::env::current_dir()
            .context("cannot read the working directory")?
            .join(path)
    };
    let text = absolute
        .to_str()
        .with_context(|| format!("path {} is not UTF-8", absolute.display()))?;
    Ok(text.trim_start_matches('/').to_owned())
}

/// The user's home directory (`user.home`), for Java's default store locations.
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Waits for SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(all(unix, not(madsim)))]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    // Fixed polling order: tokio's random order draws from an RNG outside the
                    // simulator's control and would make simulated runs irreproducible.
                    biased;
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(all(unix, not(madsim))))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The machine's memory in bytes (`MemTotal` of /proc/meminfo), or 8 GiB when unknown; the
/// store sizes its hot-data window from it.
pub fn total_memory() -> u64 {
    const FALLBACK: u64 = 8 << 30;
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(FALLBACK, |kb| kb * 1024)
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use tokio::runtime::RuntimeFlavor;

    use super::runtime;

    #[test]
    fn one_worker_is_a_current_thread_runtime_and_more_are_multi_threaded() {
        let flavor = |threads| {
            runtime(threads)
                .expect("the runtime starts")
                .handle()
                .runtime_flavor()
        };
        assert_eq!(flavor(Some(1)), RuntimeFlavor::CurrentThread);
        assert_eq!(flavor(Some(2)), RuntimeFlavor::MultiThread);
        assert_eq!(flavor(None), RuntimeFlavor::MultiThread);
        let error = runtime(Some(0)).expect_err("no runtime without a worker");
        assert!(error.to_string().contains("at least one worker"), "{error}");
    }
}

//! Running the real binaries (`mqnamesrv`, `mqbroker`) and real client scripts as
//! processes: finding them, picking free loopback ports, waiting until a server listens,
//! and killing everything when a test ends — on success and on panic alike.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to start listening.
pub const STARTUP_MAX: Duration = Duration::from_secs(20);

/// The workspace root (where `cargo` runs and `target/` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package sits inside the workspace")
        .to_path_buf()
}

/// A binary of the root package built for the same target directory and profile as the
/// running test (`cargo build --bins` first; the test package cannot build them itself).
pub fn binary(name: &str) -> PathBuf {
    // Tests run as <target>/[<triple>/]<profile>/deps/<test>-<hash>.
    let own_profile_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()));
    let profile = own_profile_dir
        .as_deref()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "debug".into());
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| workspace_root().join(dir))
        .unwrap_or_else(|| workspace_root().join("target"));
    let mut candidates = vec![target_dir.join(&profile).join(name)];
    candidates.extend(own_profile_dir.map(|dir| dir.join(name)));
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!("{name} not found (looked at {candidates:?}); build it first with `cargo build --bins`")
        })
}

/// A loopback address with a port that is free now, for a server started next.
///
/// The port comes from below the kernel's ephemeral range, where the tests' own outgoing
/// connections take their local ports: a port drawn from that range (by binding port 0) could
/// be taken by a client's connection between the draw and the server's bind, and the server
/// would then fail to start. Each port is handed out once per process, from an offset of the
/// process's own, so parallel tests never draw the same one, and it is bound once to check
/// that nothing else holds it. Where the ephemeral range leaves no room below it, port 0 is
/// bound instead.
pub fn free_loopback_addr() -> SocketAddr {
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let ports = server_ports();
    if !ports.is_empty() {
        let span = u32::from(ports.end - ports.start);
        let next =
            NEXT.get_or_init(|| AtomicU32::new(std::process::id().wrapping_mul(7919) % span));
        for _ in 0..span {
            let port = ports.start + (next.fetch_add(1, Ordering::Relaxed) % span) as u16;
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
                return listener
                    .local_addr()
                    .expect("a bound listener has an address");
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a loopback port can be bound")
}

/// The ports [`free_loopback_addr`] hands out: from 10000 up to the start of the kernel's
/// ephemeral range (`ip_local_port_range`, 32768 by default), empty where that range starts
/// lower.
fn server_ports() -> std::ops::Range<u16> {
    const LOWEST: u16 = 10_000;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    LOWEST..ephemeral_start.max(LOWEST)
}

/// A child process killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Waits up to `max` for the process to exit; `None` if it is still running.
    pub fn wait_max(&mut self, max: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + max;
        loop {
            if let Some(status) = self.0.try_wait().expect("the child can be waited on") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Asks the process to stop (SIGTERM) and waits up to `max` for it.
    pub fn terminate(&mut self, max: Duration) -> Option<ExitStatus> {
        // std has no portable SIGTERM; the `kill` command sends it.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        self.wait_max(max)
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Opens `path` for a child's stdout and stderr.
pub fn output_file(path: &Path) -> (Stdio, Stdio) {
    let file = File::create(path).expect("the temp dir is writable");
    let copy = file.try_clone().expect("a file handle can be cloned");
    (Stdio::from(file), Stdio::from(copy))
}

/// The text of a log file, or a note saying why it could not be read.
pub fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| format!("<{}: {error}>", path.display()))
}

/// A server binary running as a process, logging to a file. Killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    /// The process.
    pub process: ChildGuard,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts `binary` with `args` and `envs` (HOME among them, so nothing lands in the real
    /// home), logging to `log`, and waits until `addr` accepts connections.
    pub fn start(
        binary: &Path,
        args: &[String],
        envs: &[(&str, &Path)],
        addr: SocketAddr,
        log: PathBuf,
    ) -> Self {
        let (stdout, stderr) = output_file(&log);
        let mut command = Command::new(binary);
        command
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", binary.display()));
        let mut server = Self {
            process: ChildGuard(child),
            addr,
            log,
        };
        server.wait_until_listening();
        server
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + STARTUP_MAX;
        loop {
            if let Some(status) = self
                .process
                .0
                .try_wait()
                .expect("the server can be waited on")
            {
                panic!("{} exited with {status}:\n{}", self.addr, self.log_text());
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nothing listened on {} within {STARTUP_MAX:?}:\n{}",
                self.addr,
                self.log_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        read_text(&self.log)
    }
}

/// `mqnamesrv` on a free loopback port with its home (kvConfig) under `home`.
pub fn start_namesrv(home: &Path) -> ServerProcess {
    let addr = free_loopback_addr();
    ServerProcess::start(
        &binary("mqnamesrv"),
        &[
            "--listenPort".into(),
            addr.port().to_string(),
            "--bindAddress".into(),
            "127.0.0.1".into(),
        ],
        &[("HOME", home)],
        addr,
        home.join("mqnamesrv.log"),
    )
}

/// `mqbroker` named `broker-a` on `port` (a free one when `None`), registering with
/// `namesrv`, its store under `home/store`, with extra `broker.conf` lines.
pub fn start_broker(
    home: &Path,
    namesrv: SocketAddr,
    port: Option<u16>,
    extra_conf: &str,
) -> ServerProcess {
    let port = port.unwrap_or_else(|| free_loopback_addr().port());
    let addr: SocketAddr = format!("127.0.0.1:{port}")
        .parse()
        .expect("loopback address");
    let conf = home.join("broker.conf");
    std::fs::write(
        &conf,
        format!(
            "brokerClusterName=DefaultCluster\nbrokerName=broker-a\nbrokerId=0\n\
             brokerIP1=127.0.0.1\nbrokerIP2=127.0.0.1\nbindAddress=127.0.0.1\n\
             listenPort={port}\nstorePathRootDir={}\nnamesrvAddr={namesrv}\n{extra_conf}\n",
            home.join("store").display()
        ),
    )
    .expect("the broker config can be written");
    ServerProcess::start(
        &binary("mqbroker"),
        &["-c".into(), conf.display().to_string()],
        &[("HOME", home)],
        addr,
        home.join(format!("mqbroker-{}.log", std::process::id())),
    )
}

/// The interpreter of the real-client virtualenv (`FERROCKET_PYTHON`), or `None` after
/// saying the test is skipped. Under `CI=true` a missing interpreter is a failure.
pub fn python_or_skip() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("FERROCKET_PYTHON") {
        return Some(PathBuf::from(python));
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "FERROCKET_PYTHON is unset under CI: run scripts/client-env.sh and export \
         FERROCKET_PYTHON as the interpreter it prints on its last line"
    );
    println!("skipped: run scripts/client-env.sh and set FERROCKET_PYTHON");
    None
}

/// A Python client script under `tests/clients/python/`.
pub fn python_script(name: &str) -> PathBuf {
    workspace_root().join("tests/clients/python").join(name)
}

/// Waits until `namesrv` has a route for `topic` (a broker registered it), up to
/// [`STARTUP_MAX`].
pub fn wait_for_route(namesrv: SocketAddr, topic: &str) {
    use ferrocket_engine::remoting::headers::GetRouteInfoRequestHeader;
    use ferrocket_engine::remoting::{RemotingCommand, request_code};
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the route probe");
    runtime.block_on(async {
        let client = crate::remoting_client(1);
        let deadline = Instant::now() + STARTUP_MAX;
        loop {
            let request = RemotingCommand::request_with_header(
                request_code::GET_ROUTEINFO_BY_TOPIC,
                &GetRouteInfoRequestHeader {
                    topic: topic.to_owned(),
                    accept_standard_json_only: None,
                },
            );
            let answered = client
                .invoke(&namesrv.to_string(), request, Duration::from_secs(2))
                .await;
            if answered.is_ok_and(|response| response.is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no route for {topic} at {namesrv} within {STARTUP_MAX:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// A finished script: its exit status and output.
#[derive(Debug)]
pub struct ScriptOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl ScriptOutput {
    /// The JSON objects the script printed, one per line (other lines skipped).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

impl std::fmt::Display for ScriptOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "({}):\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `program` with `args`, `HOME` at `home` (the C++ client logs to `$HOME/logs`),
/// killing it after `max`.
pub fn run_script(program: &Path, args: &[String], home: &Path, max: Duration) -> ScriptOutput {
    let stderr_path = home.join(format!("script-{}.err", std::process::id()));
    let stderr = File::create(&stderr_path).expect("the temp dir is writable");
    let output = run_script_with_stderr(program, args, home, max, stderr);
    ScriptOutput {
        stderr: read_text(&stderr_path),
        ..output
    }
}

/// [`run_script`] with the program's stderr going to `stderr` (`/dev/full`, say, for a
/// program whose diagnostics cannot be written); the output's `stderr` is empty.
pub fn run_script_with_stderr(
    program: &Path,
    args: &[String],
    home: &Path,
    max: Duration,
    stderr: File,
) -> ScriptOutput {
    let stdout_path = home.join(format!("script-{}.out", std::process::id()));
    let child = Command::new(program)
        .args(args)
        .env("HOME", home)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("the temp dir is writable"))
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()));
    let mut process = ChildGuard(child);
    let status = process.wait_max(max).unwrap_or_else(|| {
        panic!(
            "{args:?} still running after {max:?}; stdout so far:\n{}",
            read_text(&stdout_path)
        )
    });
    ScriptOutput {
        status,
        stdout: read_text(&stdout_path),
        stderr: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn server_ports_are_distinct_free_and_below_the_ephemeral_range() {
        let ports = server_ports();
        let mut seen = HashSet::new();
        for _ in 0..64 {
            let addr = free_loopback_addr();
            assert!(seen.insert(addr.port()), "{addr} was handed out twice");
            if !ports.is_empty() {
                assert!(ports.contains(&addr.port()), "{addr} is outside {ports:?}");
            }
            TcpListener::bind(addr).unwrap_or_else(|error| panic!("{addr} is not free: {error}"));
        }
    }
}

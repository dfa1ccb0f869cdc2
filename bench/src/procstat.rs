//! CPU time and memory of a process, read from Linux's `/proc`: the load generator itself and,
//! with `--broker-pid`, the broker under test — so a run reports CPU microseconds per message
//! on each side and the broker's memory split into anonymous (heap, buffers) and file-backed
//! (mapped commit-log pages) resident sets, which an mmap-based store must keep apart to be
//! judged fairly. The whole machine's CPU split (`/proc/stat`) says what else ran beside them,
//! and on a virtual machine how much of its CPUs' time the hypervisor took (steal).
//!
//! Elsewhere than Linux, or for a process that is gone, the readings are `None` and the
//! summary leaves the fields out.

use std::time::Duration;

use serde::Serialize;

/// Clock ticks per second of `utime` and `stime` in `/proc/<pid>/stat` (`USER_HZ`, 100 on
/// every mainstream Linux architecture).
pub const USER_HZ: u64 = 100;

/// Which process to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// This process.
    Own,
    /// Another process by id.
    Pid(u32),
}

impl Process {
    fn path(self, file: &str) -> String {
        match self {
            Self::Own => format!("/proc/self/{file}"),
            Self::Pid(pid) => format!("/proc/{pid}/{file}"),
        }
    }

    /// User plus system CPU time used so far.
    pub fn cpu_time(self) -> Option<Duration> {
        let stat = std::fs::read_to_string(self.path("stat")).ok()?;
        parse_cpu_ticks(&stat).map(|ticks| Duration::from_millis(ticks * 1000 / USER_HZ))
    }

    /// The memory figures of `/proc/<pid>/status`.
    pub fn memory(self) -> Option<Memory> {
        let status = std::fs::read_to_string(self.path("status")).ok()?;
        parse_memory(&status)
    }
}

/// Resident memory of a process, in KiB as `/proc/<pid>/status` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// `VmRSS`: all resident pages.
    pub rss_kib: u64,
    /// `RssAnon`: resident anonymous pages (heap, stacks, buffers).
    pub rss_anon_kib: u64,
    /// `RssFile`: resident file-backed pages (for a broker, mostly mapped commit-log and
    /// consume-queue segments).
    pub rss_file_kib: u64,
    /// `VmHWM`: the peak of `VmRSS`.
    pub hwm_kib: u64,
}

/// `utime + stime` in clock ticks from the text of `/proc/<pid>/stat`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is parenthesised and may hold spaces: count from its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name: state is field 3, so utime (14) and stime (15) are the 12th and 13th.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The memory figures from the text of `/proc/<pid>/status`.
pub fn parse_memory(status: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        rss_anon_kib: field("RssAnon:")?,
        rss_file_kib: field("RssFile:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// The whole machine's CPU time so far, summed over its CPUs, in clock ticks: the first line
/// of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineTicks {
    /// `user + nice + system + irq + softirq` (guest time is counted in `user`).
    pub busy: u64,
    /// `idle + iowait`.
    pub idle: u64,
    /// `steal`: time a virtual CPU wanted to run while the hypervisor ran something else.
    pub steal: u64,
}

impl MachineTicks {
    /// The machine's ticks now.
    pub fn now() -> Option<Self> {
        parse_machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
    }
}

/// The [`MachineTicks`] in the text of `/proc/stat`.
pub fn parse_machine_ticks(stat: &str) -> Option<MachineTicks> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let [user, nice, system, idle, iowait, irq, softirq, steal, ..] = ticks[..] else {
        return None;
    };
    Some(MachineTicks {
        busy: user + nice + system + irq + softirq,
        idle: idle + iowait,
        steal,
    })
}

/// How the machine's CPUs spent the measured window, each as the number of CPUs kept so on
/// average.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MachineCpu {
    /// Running anything: the load generator, the broker and whatever else runs here.
    pub busy_cpus: f64,
    /// Idle, or waiting for I/O.
    pub idle_cpus: f64,
    /// Taken by the hypervisor.
    pub steal_cpus: f64,
}

impl MachineCpu {
    /// The split between two readings `window` apart.
    pub fn between(before: MachineTicks, after: MachineTicks, window: Duration) -> Self {
        let cpus = |from: u64, to: u64| {
            if window.is_zero() {
                0.0
            } else {
                to.saturating_sub(from) as f64 / USER_HZ as f64 / window.as_secs_f64()
            }
        };
        Self {
            busy_cpus: cpus(before.busy, after.busy),
            idle_cpus: cpus(before.idle, after.idle),
            steal_cpus: cpus(before.steal, after.steal),
        }
    }
}

/// CPU cost of a process over the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpuCost {
    /// CPU time used in the window, seconds.
    pub cpu_s: f64,
    /// Cores kept busy on average (CPU time / window length).
    pub cores: f64,
    /// CPU microseconds per message.
    pub us_per_msg: f64,
}

impl CpuCost {
    /// The cost of `used` CPU time over a window of `window` for `messages` messages.
    pub fn new(used: Duration, window: Duration, messages: u64) -> Self {
        let cpu_s = used.as_secs_f64();
        Self {
            cpu_s,
            cores: if window.is_zero() {
                0.0
            } else {
                cpu_s / window.as_secs_f64()
            },
            us_per_msg: if messages == 0 {
                0.0
            } else {
                cpu_s * 1e6 / messages as f64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_past_a_command_name_with_spaces() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn memory_is_split_into_anonymous_and_file_backed_pages() {
        let status = "Name:\tferrocket\nVmHWM:\t  900000 kB\nVmRSS:\t  800000 kB\n\
                      RssAnon:\t   50000 kB\nRssFile:\t  750000 kB\nRssShmem:\t       0 kB\n";
        assert_eq!(
            parse_memory(status),
            Some(Memory {
                rss_kib: 800_000,
                rss_anon_kib: 50_000,
                rss_file_kib: 750_000,
                hwm_kib: 900_000,
            })
        );
    }

    #[test]
    fn this_process_can_be_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(Process::Own.cpu_time().is_some());
            assert!(
                Process::Own
                    .memory()
                    .is_some_and(|memory| memory.rss_kib > 0)
            );
        }
    }

    #[test]
    fn the_machine_split_counts_iowait_as_idle_and_steal_apart() {
        let before = "cpu  100 10 50 1000 20 5 5 30 0 0\ncpu0 50 5 25 500 10 2 3 15 0 0\n";
        let after = "cpu  200 10 90 1100 40 5 15 70 0 0\ncpu0 x\n";
        let before = parse_machine_ticks(before).unwrap();
        let after = parse_machine_ticks(after).unwrap();
        assert_eq!(
            before,
            MachineTicks {
                busy: 170,
                idle: 1020,
                steal: 30
            }
        );
        let split = MachineCpu::between(before, after, Duration::from_secs(2));
        assert_eq!(split.busy_cpus, 0.75);
        assert_eq!(split.idle_cpus, 0.6);
        assert_eq!(split.steal_cpus, 0.2);
        assert_eq!(parse_machine_ticks("cpu  1 2 3\n"), None);
        assert_eq!(parse_machine_ticks("intr 5\n"), None);
    }

    #[test]
    fn cost_per_message_divides_cpu_time() {
        let cost = CpuCost::new(Duration::from_secs(2), Duration::from_secs(4), 400_000);
        assert_eq!(cost.cores, 0.5);
        assert_eq!(cost.us_per_msg, 5.0);
    }
}

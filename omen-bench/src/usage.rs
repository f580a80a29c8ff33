//! CPU time and disk writes from `/proc`: CPU of this process, of single threads, and of the
//! whole machine (to tell how much of a shared VM other work took during a measurement); bytes
//! this process sent to storage. Linux only; every reading is `None` where `/proc` is missing,
//! and the reports then leave the figure out.

use std::time::Duration;

/// Kernel clock ticks per second in `/proc/*/stat` and `/proc/stat` (`USER_HZ`, fixed at 100
/// by the kernel's user-space ABI on every architecture).
const TICKS_PER_SECOND: u64 = 100;

fn ticks(count: u64) -> Duration {
    Duration::from_millis(count * 1000 / TICKS_PER_SECOND)
}

/// User plus system CPU time of this process so far, all threads (exited ones included), at
/// 10 ms resolution.
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // Fields 14 (utime) and 15 (stime) of proc(5); `fields[0]` is field 3.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(ticks(user + system))
}

/// Bytes this process caused to be written to storage so far (`write_bytes` of
/// `/proc/self/io`: counted when pages are dirtied, whether or not written back yet).
pub fn process_write_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))?
        .trim()
        .parse()
        .ok()
}

/// A thread of this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Its thread id.
    pub tid: u64,
    /// Its name as the kernel keeps it (at most 15 bytes).
    pub name: String,
}

/// The threads of this process now, by thread id.
pub fn tasks() -> Vec<Task> {
    let Ok(entries) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut tasks: Vec<Task> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let tid = entry.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            Some(Task {
                tid,
                name: name.trim_end().to_string(),
            })
        })
        .collect();
    tasks.sort_by_key(|t| t.tid);
    tasks
}

/// CPU time of thread `tid` of this process so far, in nanoseconds (`schedstat`), or `None`
/// once it has exited.
pub fn thread_cpu(tid: u64) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Busy and total CPU time of the whole machine so far, all CPUs together.
#[derive(Clone, Copy, Debug, Default)]
pub struct MachineCpu {
    /// Time not idle nor waiting for I/O.
    pub busy: Duration,
    /// All time, idle included.
    pub total: Duration,
}

/// The machine's CPU time so far, from the first line of `/proc/stat`.
pub fn machine_cpu() -> Option<MachineCpu> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let get = |i: usize| values.get(i).copied().unwrap_or(0);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    let total = busy + get(3) + get(4);
    Some(MachineCpu {
        busy: ticks(busy),
        total: ticks(total),
    })
}

/// CPU used during a measurement.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuUsage {
    /// Wall time of the measurement.
    pub wall: Duration,
    /// CPU time of this process (every thread).
    pub process: Option<Duration>,
    /// CPU time of the whole machine, this process included.
    pub machine: Option<Duration>,
}

impl CpuUsage {
    /// Cores this process kept busy on average.
    pub fn process_cores(&self) -> Option<f64> {
        Some(self.process?.as_secs_f64() / self.wall.as_secs_f64().max(1e-9))
    }

    /// Cores other processes kept busy on average (a noisy neighbour shows here).
    pub fn other_cores(&self) -> Option<f64> {
        let other = self.machine?.saturating_sub(self.process?);
        Some(other.as_secs_f64() / self.wall.as_secs_f64().max(1e-9))
    }
}

/// Waits until the rest of the machine is quiet: other processes (the kernel's writeback
/// threads, a neighbour's build, the hypervisor's steal) keep fewer than `cores` busy over a
/// quarter second, or `max` has passed. Returns how long it waited. Measurements that follow
/// one another (a run's files are still being written back when the next starts) differ far
/// less after it.
pub fn wait_for_quiet(cores: f64, max: Duration) -> Duration {
    let started = std::time::Instant::now();
    while started.elapsed() < max {
        let meter = CpuMeter::start();
        std::thread::sleep(Duration::from_millis(250));
        match meter.stop().other_cores() {
            Some(other) if other >= cores => {}
            _ => break,
        }
    }
    started.elapsed()
}

/// Readings at the start of a measurement; [`CpuMeter::stop`] turns them into a
/// [`CpuUsage`].
#[derive(Clone, Copy, Debug)]
pub struct CpuMeter {
    started: std::time::Instant,
    process: Option<Duration>,
    machine: Option<MachineCpu>,
}

impl CpuMeter {
    /// Starts measuring now.
    pub fn start() -> Self {
        Self {
            started: std::time::Instant::now(),
            process: process_cpu(),
            machine: machine_cpu(),
        }
    }

    /// CPU used since [`CpuMeter::start`].
    pub fn stop(&self) -> CpuUsage {
        let wall = self.started.elapsed();
        let process = Option::zip(process_cpu(), self.process).map(|(b, a)| b.saturating_sub(a));
        let machine =
            Option::zip(machine_cpu(), self.machine).map(|(b, a)| b.busy.saturating_sub(a.busy));
        CpuUsage {
            wall,
            process,
            machine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_and_thread_have_readings() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(0);
        }
        assert!(process_cpu().is_some_and(|cpu| cpu > Duration::ZERO));
        let tasks = tasks();
        assert!(!tasks.is_empty());
        assert!(tasks.iter().any(|t| thread_cpu(t.tid).is_some()));
        assert!(process_write_bytes().is_some());
        let machine = machine_cpu().expect("/proc/stat");
        assert!(machine.total >= machine.busy);
    }
}

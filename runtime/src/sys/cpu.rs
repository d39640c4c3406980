//! How many CPUs this process may use: the host's online CPUs, narrowed by the affinity mask
//! and by a cgroup CPU quota (a container's `--cpus`). Holds the public `cpu_count` and
//! `host_cpu_count`; it reads the system and must not cache or guess (a quota or mask may
//! change while the program runs).

use std::path::Path;

/// The number of online CPUs of the host, whatever this process may use (Python's
/// `multiprocessing.cpu_count()`).
///
/// ```
/// assert!(mp::host_cpu_count() >= 1);
/// ```
pub fn host_cpu_count() -> usize {
    // SAFETY: `sysconf` has no memory-safety preconditions.
    #[allow(unsafe_code)]
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(1)
}

/// The number of CPUs this process may use: the host's CPUs narrowed by the CPU affinity mask
/// and by a cgroup CPU quota (a container started with `--cpus=1.5` counts 2). The default
/// size of a [`Pool`](crate::Pool). Python's `os.process_cpu_count()`, quota included.
///
/// ```
/// let n = mp::cpu_count();
/// assert!(n >= 1 && n <= mp::host_cpu_count().max(n));
/// ```
pub fn cpu_count() -> usize {
    let affinity = rustix::thread::sched_getaffinity(None)
        .ok()
        .map(|set| set.count() as usize)
        .filter(|&n| n > 0)
        .unwrap_or_else(host_cpu_count);
    match cgroup_quota() {
        Some(quota) => affinity.min(quota.ceil().max(1.0) as usize),
        None => affinity,
    }
}

/// The CPU quota of this process's cgroup in CPUs (e.g. `1.5`), v2 or v1; `None` when
/// unlimited or unknown.
fn cgroup_quota() -> Option<f64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let root = Path::new("/sys/fs/cgroup");
    for line in own.lines() {
        // `hierarchy-id:controllers:path`; v2 is `0::/path`.
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            if let Some(q) = ancestors_quota(&root.join(rel), root, |dir| {
                std::fs::read_to_string(dir.join("cpu.max"))
                    .ok()
                    .and_then(|s| parse_cpu_max(&s))
            }) {
                return Some(q);
            }
        } else if controllers.split(',').any(|c| c == "cpu") {
            for mount in ["cpu,cpuacct", "cpu"] {
                let base = root.join(mount);
                if let Some(q) = ancestors_quota(&base.join(rel), &base, |dir| {
                    let quota = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).ok()?;
                    let period = std::fs::read_to_string(dir.join("cpu.cfs_period_us")).ok()?;
                    parse_cfs(&quota, &period)
                }) {
                    return Some(q);
                }
            }
        }
    }
    None
}

/// The smallest quota on the way from `dir` up to `root` (a parent's limit binds children).
fn ancestors_quota(dir: &Path, root: &Path, read: impl Fn(&Path) -> Option<f64>) -> Option<f64> {
    let mut best: Option<f64> = None;
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if let Some(q) = read(d) {
            best = Some(best.map_or(q, |b| b.min(q)));
        }
        if d == root {
            break;
        }
        cur = d.parent().filter(|p| p.starts_with(root));
    }
    best
}

/// Parses cgroup v2 `cpu.max` (`"max 100000"` or `"150000 100000"`).
fn parse_cpu_max(s: &str) -> Option<f64> {
    let mut it = s.split_whitespace();
    let quota: f64 = it.next()?.parse().ok()?;
    let period: f64 = it.next().map_or(Some(100_000.0), |p| p.parse().ok())?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// Parses cgroup v1 `cpu.cfs_quota_us` (`-1`: unlimited) and `cpu.cfs_period_us`.
fn parse_cfs(quota: &str, period: &str) -> Option<f64> {
    let quota: f64 = quota.trim().parse().ok()?;
    let period: f64 = period.trim().parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_formats() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cpu_max("200000"), Some(2.0));
        assert_eq!(parse_cpu_max("garbage"), None);
        assert_eq!(parse_cfs("-1\n", "100000\n"), None);
        assert_eq!(parse_cfs("50000\n", "100000\n"), Some(0.5));
    }

    #[test]
    fn counts_are_sane() {
        let host = host_cpu_count();
        let usable = cpu_count();
        assert!(usable >= 1 && host >= 1);
        assert!(usable <= host.max(usable));
    }
}

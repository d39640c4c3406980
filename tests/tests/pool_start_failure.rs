//! A pool whose Nth worker cannot start (here: out of descriptors) returns the error and
//! leaves no worker behind, running or a zombie.
mp::guard!();

use std::time::{Duration, Instant};

#[mp::worker]
fn square(x: u64) -> u64 {
    x * x
}

/// This process's children (processes whose parent is this one), with their states.
fn children() -> Vec<(u32, char)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: the comm may hold spaces, so split after the last ')'.
        let mut rest = stat.rsplit(')').next().unwrap_or("").split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = rest.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == me {
            found.push((pid, state));
        }
    }
    found
}

/// Tries pools of 6 workers under ever larger descriptor limits: the first ones cannot start
/// even one worker, the middle ones fail after starting some, the last succeed. After every
/// failure no child may be left. Returns how many attempts failed and how many succeeded.
#[mp::worker]
fn pools_under_descriptor_limits() -> Result<(u32, u32), String> {
    // `mp`'s own long-lived children (the fork server, under `MP_START_METHOD=forkserver`)
    // are started here, before the limits, and are not the pools' to leave or not.
    assert_eq!(mp::spawn(square, 3).unwrap().join().unwrap(), 9);
    let machinery: Vec<u32> = children().into_iter().map(|(pid, _)| pid).collect();
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let (mut failed, mut succeeded) = (0, 0);
    for extra in 0..48 {
        let lowered = rustix::process::Rlimit {
            current: Some(open + extra),
            maximum: limit.maximum,
        };
        rustix::process::setrlimit(rustix::process::Resource::Nofile, lowered).unwrap();
        let pool = mp::Pool::new(6);
        rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).unwrap();
        match pool {
            Ok(mut pool) => {
                succeeded += 1;
                assert_eq!(pool.map(square, 0..10u64).unwrap()[3], 9);
                pool.close();
                pool.join().unwrap();
            }
            Err(_) => {
                failed += 1;
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let mut left = children();
                    left.retain(|(pid, _)| !machinery.contains(pid));
                    if left.is_empty() {
                        break;
                    }
                    if Instant::now() > deadline {
                        return Err(format!(
                            "with {extra} spare descriptors the failed pool left {left:?}"
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
    Ok((failed, succeeded))
}

#[test]
fn a_pool_that_cannot_start_all_its_workers_leaves_none() {
    let _w = mp_tests::watchdog(Duration::from_secs(90));
    // In a child: lowering the descriptor limit here would starve the other tests' threads.
    let (failed, succeeded) = mp::spawn(pools_under_descriptor_limits, ())
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    assert!(
        failed > 1 && succeeded > 0,
        "failed {failed}, succeeded {succeeded}"
    );
}

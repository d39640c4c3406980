//! The MPI backend across real ranks: each test starts a job of 3 ranks on the `mpi_probe`
//! program (rank 0 runs a scenario on a pool over ranks 1 and 2) and checks its output and
//! exit status. Needs the `mpi` feature and the launcher of the MPI the build linked: Open
//! MPI's `mpirun --oversubscribe` (`cargo test -p mp-tests --features mpi --test mpi_backend`),
//! or MPICH's `mpiexec.mpich` (the same with `MPICC=mpicc.mpich`, best in a target directory of
//! its own); `MP_TEST_LAUNCHER` names another launcher program. Each run has a deadline: on
//! expiry the launcher's whole process group is killed and the test fails.
#![cfg(feature = "mpi")]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mp::guard!();

const PROBE: &str = env!("CARGO_BIN_EXE_mpi_probe");

struct Run {
    code: Option<i32>,
    out: String,
    err: String,
    took: Duration,
}

/// Runs `mpirun [extra] -n 3 mpi_probe <mode>` (or `launcher` as given) within `deadline`.
fn run(cmd: &mut Command, deadline: Duration) -> Run {
    cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env_remove("MP_BACKEND")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .expect("cannot start mpirun (is Open MPI installed?)");
    let pgid = child.id() as i32;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > deadline {
            // SAFETY-free: a plain kill of the launcher's process group (ranks included).
            let _ = rustix::process::kill_process_group(
                rustix::process::Pid::from_raw(pgid).unwrap(),
                rustix::process::Signal::KILL,
            );
            let _ = child.wait();
            let (o, e) = (out.join().unwrap(), err.join().unwrap());
            panic!("the MPI job did not end within {deadline:?}\nstdout:\n{o}\nstderr:\n{e}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    // Leftovers of the group (none expected) go too.
    let _ = rustix::process::kill_process_group(
        rustix::process::Pid::from_raw(pgid).unwrap(),
        rustix::process::Signal::KILL,
    );
    let r = Run {
        code: status.code(),
        out: out.join().unwrap(),
        err: err.join().unwrap(),
        took,
    };
    eprintln!(
        "--- exit {:?} after {:?}\n--- stdout\n{}--- stderr\n{}",
        r.code, r.took, r.out, r.err
    );
    r
}

/// The MPI whose launcher starts the jobs: the one this build linked (`MPICC` picks it), so
/// the same suite runs against Open MPI (`mpirun`) and MPICH (`mpiexec.mpich`, hydra).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavour {
    OpenMpi,
    Mpich,
}

fn flavour() -> Flavour {
    if mp::mpi::linked().starts_with("mpich") {
        Flavour::Mpich
    } else {
        Flavour::OpenMpi
    }
}

/// The launcher's program: `$MP_TEST_LAUNCHER` when set (CI names `mpirun.openmpi` when both
/// MPIs are installed), else `mpirun` for Open MPI and `mpiexec.mpich` for MPICH.
fn launcher_program() -> String {
    std::env::var("MP_TEST_LAUNCHER").unwrap_or_else(|_| {
        match flavour() {
            Flavour::OpenMpi => "mpirun",
            Flavour::Mpich => "mpiexec.mpich",
        }
        .to_owned()
    })
}

/// The launcher for `-n 3`, up to the program: Open MPI's `mpirun --oversubscribe` (recovery:
/// `--enable-recovery`, variables with `-x`), or MPICH's `mpiexec.mpich` (recovery:
/// `-disable-auto-cleanup`, variables with `-genv`).
fn launcher(recovery: bool, env: &[(&str, &str)]) -> Command {
    match flavour() {
        Flavour::OpenMpi => {
            let mut cmd = Command::new(launcher_program());
            cmd.args(["--oversubscribe", "-n", "3"]);
            if recovery {
                cmd.arg("--enable-recovery");
            }
            for (k, v) in env {
                cmd.arg("-x").arg(format!("{k}={v}"));
            }
            cmd
        }
        Flavour::Mpich => {
            let mut cmd = Command::new(launcher_program());
            cmd.args(["-n", "3"]);
            if recovery {
                cmd.arg("-disable-auto-cleanup");
            }
            for (k, v) in env {
                cmd.args(["-genv", k, v]);
            }
            cmd
        }
    }
}

fn mpirun(extra: &[&str], mode: &str) -> Command {
    let recovery = extra.contains(&"--enable-recovery");
    let env: Vec<(&str, &str)> = extra.iter().filter_map(|e| e.split_once('=')).collect();
    let mut cmd = launcher(recovery, &env);
    if recovery && flavour() == Flavour::Mpich {
        cmd.args(["sh", "-c", MPICH_RECOVERY, PROBE, mode]);
    } else {
        cmd.arg(PROBE).arg(mode);
    }
    cmd
}

/// Checks the launcher's status for a job in recovery mode whose worker rank was killed while
/// rank 0 ended well: Open MPI's `mpirun` says 0 whatever the ranks did; MPICH's hydra gives a
/// failure (the killed rank's 137 through its shell, or 1 for a rank that left without
/// finalizing; it varies from run to run), so only rank 0's own output tells how it went.
fn assert_recovered_status(code: Option<i32>) {
    match flavour() {
        Flavour::OpenMpi => assert_eq!(code, Some(0)),
        Flavour::Mpich => assert!(code.is_some_and(|c| c != 0), "{code:?}"),
    }
}

/// Each rank under a shell, for MPICH's recovery mode: hydra's proxy kills every rank
/// (`SIGKILL` to each process group) when one of the processes it started dies by a signal,
/// `-disable-auto-cleanup` or not, but only sends `SIGUSR1` to the others when one exits with a
/// status. So the shell turns a rank's death into an exit status, and ignores `SIGUSR1` (the
/// rank itself takes MPICH's handler for it at `MPI_Init`).
const MPICH_RECOVERY: &str = "trap '' USR1; \"$0\" \"$@\"; exit $?";

/// `cmd` run in a network namespace of its own, its loopback up (`unshare -n`, root): a
/// rank there can cut every rank's network with `ip link set lo down`.
fn in_own_network(cmd: &Command) -> Command {
    let probe = Command::new("unshare")
        .args(["-n", "true"])
        .stdin(Stdio::null())
        .output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs network namespaces (`unshare -n`, as root): {probe:?}"
    );
    let mut wrapped = Command::new("unshare");
    wrapped
        .args(["-n", "sh", "-c", "ip link set lo up && exec \"$@\"", "sh"])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    wrapped
}

/// The milliseconds in lines `vanish: rank <r> lost <ms> ms after the cut`, by rank.
fn losses(out: &str) -> Vec<(u32, u64)> {
    out.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("vanish: rank ")?;
            let (rank, rest) = rest.split_once(" lost ")?;
            let (ms, _) = rest.split_once(" ms")?;
            Some((rank.parse().ok()?, ms.parse().ok()?))
        })
        .collect()
}

#[test]
fn map_over_two_ranks_equals_the_local_result() {
    let r = run(&mut mpirun(&[], "map"), Duration::from_secs(60));
    assert_eq!(r.code, Some(0));
    assert!(r.out.contains("map ok: 10000 items equal, workers 2, ranks [1, 2], apply 144, async 81, starmap [1, 4, 9], imap_unordered 328350"), "{}", r.out);
    assert!(r.out.contains("second pool: [0, 1, 4, 9]"), "{}", r.out);
}

#[test]
fn a_task_panic_is_worker_panicked_and_the_rank_keeps_serving() {
    let r = run(&mut mpirun(&[], "panic"), Duration::from_secs(60));
    assert_eq!(r.code, Some(0));
    assert!(
        r.out
            .contains("panic ok: panicked 1, fine 7, both ranks serve after: true"),
        "{}",
        r.out
    );
}

#[test]
fn a_killed_rank_is_worker_died_naming_it_and_the_map_completes_on_the_other() {
    let r = run(
        &mut mpirun(&["--enable-recovery"], "die"),
        Duration::from_secs(60),
    );
    assert!(r.out.contains("die ok: rank 2 on "), "{}", r.out);
    assert!(r.out.contains(", 199 completed"), "{}", r.out);
    assert!(r.out.contains("after: [0, 1, 4]"), "{}", r.out);
    assert!(r.out.contains("pool worker rank 2 on "), "{}", r.out);
    assert_recovered_status(r.code);
}

#[test]
fn with_retries_a_lost_ranks_task_runs_on_the_other() {
    let r = run(
        &mut mpirun(&["--enable-recovery"], "die-retry"),
        Duration::from_secs(60),
    );
    assert!(r.out.contains("retry ok: 200 results"), "{}", r.out);
    assert_recovered_status(r.code);
}

#[test]
fn initializer_map_async_progress_imap_and_an_executor_from_mp_backend() {
    let r = run(
        &mut mpirun(&["MP_BACKEND=mpi"], "features"),
        Duration::from_secs(60),
    );
    assert!(
        r.out.contains("features: async [100, 101, 102, 103, 104, 105, 106, 107, 108, 109], progress 6225, imap [100, 101, 102, 103, 104]"),
        "{}",
        r.out
    );
    assert!(
        r.out.contains("executor on ranks: [1, 4, 9, 16]"),
        "{}",
        r.out
    );
    assert_eq!(r.code, Some(0));
}

#[test]
fn a_panic_in_rank_zeros_main_ends_the_job_with_a_failure() {
    let r = run(&mut mpirun(&[], "main-panic"), Duration::from_secs(30));
    assert!(r.out.contains("before: [0, 1, 4]"), "{}", r.out);
    assert!(r.err.contains("rank 0's main gives up"), "{}", r.err);
    assert_ne!(r.code, Some(0));
    // Start-up included; the finalize-hang regression would hit the deadline instead.
    assert!(r.took < Duration::from_secs(15), "{:?}", r.took);
}

#[test]
fn process_exit_on_rank_zero_stops_the_workers_and_keeps_its_code() {
    let r = run(&mut mpirun(&[], "exit"), Duration::from_secs(30));
    assert!(r.out.contains("before: [0, 1, 4]"), "{}", r.out);
    assert_eq!(r.code, Some(3));
}

#[test]
fn local_handles_in_arguments_are_refused_naming_the_type() {
    let r = run(&mut mpirun(&[], "handles"), Duration::from_secs(60));
    assert_eq!(r.code, Some(0));
    assert!(r.out.contains("refused: "), "{}", r.out);
    assert!(r.out.contains("mp::queue::Queue<u64>"), "{}", r.out);
}

#[test]
fn a_task_past_its_time_limit_fails_and_the_job_still_ends() {
    let r = run(&mut mpirun(&[], "timeout"), Duration::from_secs(60));
    assert!(r.out.contains("timeout ok"), "{}", r.out);
    assert_eq!(r.code, Some(0));
}

#[test]
fn a_size_mismatch_with_the_launcher_stops_with_both_numbers() {
    // The other MPI's variables (as its launcher sets them): this binary's MPI starts a
    // singleton of size 1.
    let (size, rank) = match flavour() {
        Flavour::OpenMpi => ("PMI_SIZE", "PMI_RANK"),
        Flavour::Mpich => ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
    };
    let mut cmd = Command::new(PROBE);
    cmd.arg("map").env(size, "4").env(rank, "0");
    let r = run(&mut cmd, Duration::from_secs(30));
    assert_eq!(r.code, Some(2));
    assert!(
        r.err.contains(&format!(
            "MPI reports 1 rank(s) but the launcher started 4 ({size}=4)"
        )),
        "{}",
        r.err
    );
    assert!(!r.out.contains("rank 0 of"), "main ran: {}", r.out);
}

#[test]
fn outside_a_launcher_an_mpi_pool_is_a_clear_error() {
    let mut cmd = Command::new(PROBE);
    cmd.arg("map");
    let r = run(&mut cmd, Duration::from_secs(30));
    assert_ne!(r.code, Some(0));
    assert!(
        r.err
            .contains("needs the program started by an MPI launcher"),
        "{}",
        r.err
    );
}

#[test]
fn leaving_after_a_lost_rank_does_not_wait_in_mpi_finalize() {
    // Rank 0 in a child of the launched process (as `cargo mp run --mpi` starts it, recovery
    // being its default): Open MPI's MPI_Finalize then waited for the dead rank (1 run in 3 here) until the
    // watchdog gave up after 10 s.
    for _ in 0..3 {
        let mut cmd = launcher(true, &[]);
        match flavour() {
            Flavour::OpenMpi => cmd.args(["sh", "-c", "\"$0\" die; exit $?", PROBE]),
            Flavour::Mpich => cmd.args(["sh", "-c", MPICH_RECOVERY, PROBE, "die"]),
        };
        let r = run(&mut cmd, Duration::from_secs(60));
        assert!(r.out.contains("die ok: rank 2 on "), "{}", r.out);
        assert!(!r.err.contains("did not return"), "{}", r.err);
        assert!(r.took < Duration::from_secs(8), "{:?}", r.took);
        assert_recovered_status(r.code);
    }
}

/// A host that vanishes without closing its sockets (Issue 19, item 4): the whole job runs in
/// a network namespace of its own, and rank 0 takes its loopback down while both worker ranks
/// run a long task. From then on every packet between the ranks is dropped, FIN and RST
/// included: to each side the others vanished. Loopback down rather than two namespaces
/// joined by a veth: the launcher's own traffic (PMIx, over TCP on 127.0.0.1) is not needed
/// after the cut, because no rank finalizes once a rank is lost (rank 0 leaves without
/// `MPI_Finalize`, the worker ranks exit when their heartbeat to rank 0 ends), and the
/// launcher sees its ranks exit through `waitpid`. With the heartbeat at 3 s
/// (`MP_MPI_HEARTBEAT`), rank 0's pool must report each rank lost (`WorkerDied` naming it)
/// within the bound plus slack for a loaded machine, the task still queued fails with "no MPI
/// worker ranks left", and the job ends; without a heartbeat it would wait for the
/// 60 s tasks and then forever.
#[test]
fn a_host_that_vanishes_is_noticed_within_the_heartbeat_bound() {
    let cmd = mpirun(&["--enable-recovery", "MP_MPI_HEARTBEAT=3"], "vanish");
    let r = run(&mut in_own_network(&cmd), Duration::from_secs(60));
    assert!(r.out.contains("cut; heartbeat bound 3s"), "{}", r.out);
    let mut lost = losses(&r.out);
    lost.sort_unstable();
    let ranks: Vec<u32> = lost.iter().map(|(rank, _)| *rank).collect();
    assert_eq!(ranks, [1, 2], "{}", r.out);
    for (rank, ms) in lost {
        // The bound is 3 s; up to 10 s more for a loaded machine, far below the tasks' 60 s.
        assert!(ms <= 13_000, "rank {rank} was seen lost only after {ms} ms");
    }
    assert!(r.out.contains("no MPI worker ranks left"), "{}", r.out);
    assert!(r.took < Duration::from_secs(40), "{:?}", r.took);
}

/// The heartbeat must not take a busy rank for a vanished one: with the bound at 2 s, a rank
/// computes a 6 s task while rank 0 has queued the next task's 240 kB argument on its
/// connection, more than a default receive buffer (128 KiB) takes. Then the window is zero and
/// Linux (6.x) ends the connection after `TCP_USER_TIMEOUT` although the rank answers the
/// zero-window probes (measured: a healthy connection aborted with ETIMEDOUT after 2.5 s), so a
/// worker rank's pool connection asks for a receive buffer that holds all that rank 0 queues.
#[test]
fn a_rank_busy_past_the_heartbeat_bound_with_data_queued_is_not_lost() {
    let r = run(
        &mut mpirun(&["MP_MPI_HEARTBEAT=2"], "busy"),
        Duration::from_secs(60),
    );
    assert!(r.out.contains("busy ok: [16, 240000, 240000]"), "{}", r.out);
    assert_eq!(r.code, Some(0));
}

/// The same for a rank still running its initializer when rank 0 has a first task for it
/// (8 MiB, far more than the receive buffer): the pool sends a task larger than its send
/// budget only to a ready worker, so no zero window lasts past the bound.
#[test]
fn a_rank_initializing_past_the_heartbeat_bound_is_not_lost() {
    let r = run(
        &mut mpirun(&["MP_MPI_HEARTBEAT=2"], "slow-init"),
        Duration::from_secs(60),
    );
    assert!(r.out.contains("slow-init ok: 8388608"), "{}", r.out);
    assert_eq!(r.code, Some(0));
}

#[test]
fn a_bad_heartbeat_setting_stops_the_job_naming_it() {
    let r = run(
        &mut mpirun(&["MP_MPI_HEARTBEAT=5s"], "map"),
        Duration::from_secs(30),
    );
    assert_ne!(r.code, Some(0));
    assert!(
        r.err
            .contains("MP_MPI_HEARTBEAT=\"5s\" is not a whole number of seconds from 2 to 86400"),
        "{}",
        r.err
    );
    assert!(!r.out.contains("rank 0 of"), "main ran: {}", r.out);
}

//! Every start method (`spawn`, `forkserver`, `fork`) passes the same representative cases:
//! spawn/join/result, a panic, an exit code, kill, a queue between processes, a pool map, a
//! `Pipe` end passed as an argument, a parent's death; `fork` is refused while threads run, a
//! dead fork server is replaced, and an invalid `MP_START_METHOD` is a clear error.
//!
//! The cases run inside a single-threaded child (`drive`): the test harness runs every test on
//! a thread of its own, so the test process itself may never `fork`.
mp::guard!();

use std::time::{Duration, Instant};

use mp::{Error, ExitStatus, StartMethod};

fn limit() -> mp_tests::Watchdog {
    mp_tests::watchdog(Duration::from_secs(90))
}

#[mp::worker]
fn double(x: u64) -> u64 {
    x * 2
}

#[mp::worker]
fn boom() {
    panic!("boom from the child");
}

#[mp::worker]
fn exit_with(code: i32) {
    std::process::exit(code);
}

#[mp::worker]
fn sleeper() {
    std::thread::sleep(Duration::from_secs(120));
}

#[mp::worker]
fn produce(q: mp::Queue<u64>, n: u64) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

#[mp::worker]
fn echo_once(conn: mp::Connection<String>) {
    let got = conn.recv().unwrap();
    conn.send(format!("echo: {got}")).unwrap();
}

#[mp::worker]
fn whoami() -> (u32, u32, String) {
    let me = mp::current_process();
    let parent = mp::parent_process().expect("started by mp");
    (me.pid(), parent.pid(), me.name().to_owned())
}

#[mp::worker]
fn first_child_name() -> (String, String) {
    let child = mp::Process::new(double, 0);
    (
        mp::current_process().name().to_owned(),
        child.name().to_owned(),
    )
}

#[mp::worker]
fn take_lock(lock: mp::Lock) -> Result<(), String> {
    // Waits for the parent to release it; a thread id copied from the parent by `fork` would
    // make this `Error::Deadlock` ("this thread already holds the lock").
    lock.acquire_timeout(Duration::from_secs(10))
        .map(drop)
        .map_err(|e| e.to_string())
}

fn process<W: mp::Worker>(worker: W, args: W::Args, method: StartMethod) -> mp::Process<W> {
    mp::Process::new(worker, args).with_start_method(method)
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

/// One case under `method`, in this (single-threaded) child: `Err` says what went wrong.
fn run_case(method: StartMethod, case: &str) -> Result<(), String> {
    match case {
        "result" => {
            // A child waiting for its message is active (one that returned at once may have
            // ended before `active_children` looks: its frames are sent before it starts).
            let (here, there) = mp::pipe::<String>().map_err(|e| e.to_string())?;
            let mut waiting = process(echo_once, there, method);
            waiting.start().map_err(|e| format!("start: {e}"))?;
            let pid = waiting.pid().ok_or("no pid")?;
            check(mp::active_children().iter().any(|c| c.pid() == pid), || {
                format!("{pid} not in active_children")
            })?;
            here.send("hi".to_owned()).map_err(|e| e.to_string())?;
            here.recv().map_err(|e| e.to_string())?;
            waiting.join().map_err(|e| e.to_string())?;
            let mut p = process(double, 21, method).with_name("doubler");
            p.start().map_err(|e| format!("start: {e}"))?;
            let v = p.join().map_err(|e| format!("join: {e}"))?;
            check(v == 42, || format!("got {v}"))?;
            check(p.exitcode() == Some(0), || {
                format!("exitcode {:?}", p.exitcode())
            })?;
            let mut who = process(whoami, (), method).with_name("who");
            who.start().map_err(|e| e.to_string())?;
            let child_pid = who.pid();
            let (pid, parent, name) = who.join().map_err(|e| e.to_string())?;
            check(Some(pid) == child_pid, || {
                format!("pid {pid} vs {child_pid:?}")
            })?;
            check(parent == std::process::id(), || format!("parent {parent}"))?;
            check(name == "who", || format!("name {name}"))
        }
        "panic" => {
            let mut p = process(boom, (), method);
            p.start().map_err(|e| e.to_string())?;
            match p.join() {
                Err(Error::WorkerPanicked { message, .. }) if message == "boom from the child" => {}
                other => return Err(format!("expected WorkerPanicked, got {other:?}")),
            }
            check(p.exitcode() == Some(1), || {
                format!("exitcode {:?}", p.exitcode())
            })
        }
        "exitcode" => {
            let mut p = process(exit_with, 7, method);
            p.start().map_err(|e| e.to_string())?;
            match p.join() {
                Err(Error::ProcessDied {
                    status: ExitStatus::Exited(7),
                    ..
                }) => {}
                other => return Err(format!("expected ProcessDied(7), got {other:?}")),
            }
            check(p.exitcode() == Some(7), || {
                format!("exitcode {:?}", p.exitcode())
            })
        }
        "kill" => {
            let mut p = process(sleeper, (), method);
            p.start().map_err(|e| e.to_string())?;
            check(p.is_alive(), || "not alive after start".into())?;
            p.kill().map_err(|e| e.to_string())?;
            match p.join() {
                Err(Error::ProcessDied {
                    status: ExitStatus::Signaled(9),
                    ..
                }) => {}
                other => return Err(format!("expected ProcessDied(SIGKILL), got {other:?}")),
            }
            check(p.exitcode() == Some(-9), || {
                format!("exitcode {:?}", p.exitcode())
            })?;
            let mut t = process(sleeper, (), method);
            t.start().map_err(|e| e.to_string())?;
            t.terminate().map_err(|e| e.to_string())?;
            let _ = t.join();
            check(t.exitcode() == Some(-15), || {
                format!("exitcode {:?}", t.exitcode())
            })
        }
        "queue" => {
            let q = mp::Queue::new().map_err(|e| e.to_string())?;
            let mut p = process(produce, (q.clone(), 100), method);
            p.start().map_err(|e| e.to_string())?;
            for i in 0..100 {
                let got = q
                    .get_timeout(Duration::from_secs(10))
                    .map_err(|e| format!("get {i}: {e}"))?;
                check(got == i, || format!("item {i} was {got}"))?;
            }
            p.join().map_err(|e| e.to_string())
        }
        "pipe" => {
            let (here, there) = mp::pipe::<String>().map_err(|e| e.to_string())?;
            let mut p = process(echo_once, there, method);
            p.start().map_err(|e| e.to_string())?;
            here.send("hi".to_owned()).map_err(|e| e.to_string())?;
            let got = here.recv().map_err(|e| e.to_string())?;
            check(got == "echo: hi", || format!("got {got:?}"))?;
            p.join().map_err(|e| e.to_string())
        }
        "pool" => {
            let pool = mp::Pool::builder()
                .processes(2)
                .start_method(method)
                .build()
                .map_err(|e| format!("build: {e}"))?;
            let squares = pool
                .map(double, 0..50u64)
                .map_err(|e| format!("map: {e}"))?;
            check(
                squares == (0..50).map(|x| x * 2).collect::<Vec<_>>(),
                || format!("{squares:?}"),
            )
        }
        "numbering" => {
            // This process names a few children first: a forked child must not continue.
            let _named: Vec<_> = (0..3).map(|_| mp::Process::new(double, 0)).collect();
            let mut p = process(first_child_name, (), method).with_name("numbered");
            p.start().map_err(|e| e.to_string())?;
            let (me, first) = p.join().map_err(|e| e.to_string())?;
            check(me == "numbered" && first == "numbered:1", || {
                format!("the child {me} named its first child {first}")
            })
        }
        "lock" => {
            let lock = mp::Lock::new().map_err(|e| e.to_string())?;
            let held = lock.acquire().map_err(|e| e.to_string())?;
            let mut p = process(take_lock, lock.clone(), method);
            p.start().map_err(|e| e.to_string())?;
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
            p.join().map_err(|e| e.to_string())?
        }
        "process-wide" => {
            mp::set_start_method(method);
            let got = mp::get_start_method().map_err(|e| e.to_string())?;
            check(got == method, || format!("get_start_method {got}"))?;
            let v = mp::spawn(double, 5)
                .and_then(|mut p| p.join())
                .map_err(|e| e.to_string())?;
            check(v == 10, || format!("got {v}"))
        }
        other => Err(format!("unknown case {other}")),
    }
}

#[mp::worker]
fn drive(method: String, case: String) -> Result<(), String> {
    let method: StartMethod = method.parse().map_err(|e: Error| e.to_string())?;
    run_case(method, &case).map_err(|e| format!("{case} under {method}: {e}"))
}

fn under_every_method(case: &str) {
    let _w = limit();
    for method in StartMethod::ALL {
        mp::spawn(drive, (method.to_string(), case.to_owned()))
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
    }
}

#[test]
fn spawn_join_and_result_under_every_method() {
    under_every_method("result");
}

#[test]
fn a_panic_under_every_method() {
    under_every_method("panic");
}

#[test]
fn an_exit_code_under_every_method() {
    under_every_method("exitcode");
}

#[test]
fn kill_and_terminate_under_every_method() {
    under_every_method("kill");
}

#[test]
fn a_queue_between_processes_under_every_method() {
    under_every_method("queue");
}

#[test]
fn a_pipe_end_as_argument_under_every_method() {
    under_every_method("pipe");
}

#[test]
fn a_pool_map_under_every_method() {
    under_every_method("pool");
}

#[test]
fn a_childs_children_are_numbered_from_one_under_every_method() {
    under_every_method("numbering");
}

#[test]
fn a_lock_held_by_the_parent_under_every_method() {
    under_every_method("lock");
}

#[test]
fn the_process_wide_method_under_every_method() {
    under_every_method("process-wide");
}

#[test]
fn the_forkserver_serves_a_threaded_parent() {
    let _w = limit();
    // This test runs on a harness thread: the process has several.
    let mut p = process(double, 4, StartMethod::ForkServer);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 8);
    let pool = mp::Pool::builder()
        .processes(2)
        .start_method(StartMethod::ForkServer)
        .build()
        .unwrap();
    assert_eq!(pool.map(double, [1, 2, 3]).unwrap(), [2, 4, 6]);
}

#[test]
#[mp::allow(fork-with-threads)] // the test is about the refusal
fn fork_is_refused_while_threads_run() {
    let _w = limit();
    let _other = std::thread::spawn(|| std::thread::sleep(Duration::from_secs(2)));
    let mut p = process(double, 1, StartMethod::Fork);
    match p.start() {
        Err(Error::ForkWithThreads { threads }) => assert!(threads >= 2, "{threads}"),
        other => panic!("expected ForkWithThreads, got {other:?}"),
    }
    let message = Error::ForkWithThreads { threads: 3 }.to_string();
    assert!(
        message.contains("use the forkserver or spawn start method"),
        "{message}"
    );
}

#[mp::worker]
#[mp::allow(fork-with-threads)] // the test is about the refusal
fn fork_after_a_thread() -> String {
    let _other = std::thread::spawn(|| std::thread::sleep(Duration::from_secs(2)));
    match process(double, 1, StartMethod::Fork).start() {
        Err(e @ Error::ForkWithThreads { .. }) => e.to_string(),
        other => format!("unexpected {other:?}"),
    }
}

#[test]
fn fork_is_refused_in_a_child_that_started_a_thread() {
    let _w = limit();
    let message = mp::spawn(fork_after_a_thread, ()).unwrap().join().unwrap();
    assert!(
        message.starts_with("cannot fork: this process runs 2 threads"),
        "{message}"
    );
}

#[mp::worker]
fn middle(method: String, q: mp::Queue<u32>) {
    let method: StartMethod = method.parse().unwrap();
    let mut child = process(sleeper, (), method);
    child.start().expect("start the grandchild");
    q.put(child.pid().unwrap()).unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_child_exits_when_its_parent_is_killed_under_every_method() {
    let _w = limit();
    for method in StartMethod::ALL {
        let q = mp::Queue::new().unwrap();
        let mut parent = mp::spawn(middle, (method.to_string(), q.clone())).unwrap();
        let grandchild = q.get_timeout(Duration::from_secs(10)).unwrap();
        assert!(!mp_tests::gone(grandchild), "{method}");
        // Under `forkserver` the parent's fork server must go too.
        let mut descendants = children_of(parent.pid().unwrap());
        assert!(
            descendants.contains(&grandchild),
            "{method}: {descendants:?}"
        );
        if method == StartMethod::ForkServer {
            assert_eq!(
                descendants.len(),
                2,
                "grandchild and fork server: {descendants:?}"
            );
        }
        descendants.push(grandchild);
        parent.kill().unwrap();
        let _ = parent.join();
        let killed = Instant::now();
        while let Some(left) = descendants.iter().find(|&&pid| !mp_tests::gone(pid)) {
            assert!(
                killed.elapsed() < Duration::from_secs(2),
                "{left} (of {descendants:?}) outlived its parent under {method}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// This process's children (every thread's), by pid.
fn children_of_self() -> Vec<u32> {
    children_of(std::process::id())
}

/// Process `pid`'s children (every thread's).
fn children_of(pid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path().join("children");
        if let Ok(list) = std::fs::read_to_string(path) {
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    pids
}

#[mp::worker]
fn restart_after_the_server_dies() -> Result<(), String> {
    let run = || -> Result<u64, String> {
        let mut p = process(double, 2, StartMethod::ForkServer);
        p.start().map_err(|e| e.to_string())?;
        p.join().map_err(|e| e.to_string())
    };
    run()?;
    // Every child was joined: what is left is the fork server.
    let servers = children_of_self();
    if servers.len() != 1 {
        return Err(format!("expected one fork server, found {servers:?}"));
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(servers[0] as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .map_err(|e| e.to_string())?;
    run()?;
    let now = children_of_self();
    if now.len() != 1 || now == servers {
        return Err(format!(
            "expected a new fork server, found {now:?} (was {servers:?})"
        ));
    }
    Ok(())
}

#[test]
fn a_dead_fork_server_is_replaced() {
    let _w = limit();
    mp::spawn(restart_after_the_server_dies, ())
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
}

fn described(e: &Error) -> String {
    let kind = match e {
        Error::InvalidArgument(_) => "InvalidArgument",
        _ => "another error",
    };
    format!("{kind}: {e}")
}

#[mp::worker]
fn with_start_method_env(value: String) -> String {
    // SAFETY: this child runs no other thread that reads the environment (its liveness
    // watcher only waits on a pipe).
    unsafe { std::env::set_var(mp::START_METHOD_ENV, &value) };
    let got = match mp::get_start_method() {
        Ok(m) => m.to_string(),
        Err(e) => described(&e),
    };
    let started = match mp::spawn(double, 1).and_then(|mut p| p.join()) {
        Ok(v) => v.to_string(),
        Err(e) => described(&e),
    };
    format!("{got} / {started}")
}

#[test]
fn an_invalid_mp_start_method_is_a_clear_error() {
    let _w = limit();
    let out = mp::spawn(with_start_method_env, "vfork".to_owned())
        .unwrap()
        .join()
        .unwrap();
    let expected = "InvalidArgument: invalid argument: MP_START_METHOD=\"vfork\" is not a start \
                    method: expected spawn, forkserver or fork";
    assert_eq!(out, format!("{expected} / {expected}"));
    let out = mp::spawn(with_start_method_env, "forkserver".to_owned())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(out, "forkserver / 2");
}

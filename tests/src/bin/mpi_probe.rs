//! A program for the MPI backend's integration tests (`tests/tests/mpi_backend.rs`), started by
//! them under `mpirun -n 3`: rank 0 runs one scenario (the first argument) on a pool over the
//! two worker ranks and prints what it saw; the tests check the output and the exit status.

use std::time::Duration;

#[mp::worker]
fn square(n: u64) -> u64 {
    n * n
}

#[mp::worker]
fn panic_on_three(n: u64) -> u64 {
    assert!(n != 3, "three is not welcome");
    n + 1
}

#[mp::worker]
fn where_am_i(_: u64) -> u32 {
    mp::mpi::rank()
}

/// Rank 2 kills itself on its first task from 20 on; rank 1 runs everything.
#[mp::worker]
fn die_on_rank_two(n: u64) -> u64 {
    if mp::mpi::rank() == 2 && n >= 20 {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
    std::thread::sleep(Duration::from_millis(2));
    n
}

static OFFSET: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[mp::worker]
fn set_offset(n: u64) {
    OFFSET.store(n, std::sync::atomic::Ordering::Relaxed);
}

#[mp::worker]
fn add_offset(x: u64) -> u64 {
    x + OFFSET.load(std::sync::atomic::Ordering::Relaxed)
}

#[mp::worker]
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[mp::worker]
fn count_items(q: mp::Queue<u64>) -> u64 {
    q.qsize() as u64
}

/// Prints from the worker rank (one line to stdout, one to stderr): `cargo mp run --mpi`
/// prefixes them with the rank and its host.
#[mp::worker]
fn greet(n: u64) -> u32 {
    println!("hello {n} from rank {}", mp::mpi::rank());
    eprintln!("note {n} from rank {}", mp::mpi::rank());
    mp::mpi::rank()
}

/// An initializer that takes `ms`.
#[mp::worker]
fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Sleeps `ms` and gives back how many bytes it was sent.
#[mp::worker]
fn hold(ms: u64, bytes: Vec<u8>) -> usize {
    std::thread::sleep(Duration::from_millis(ms));
    bytes.len()
}

/// Cuts this network namespace off (`ip link set lo down`): every packet between the ranks is
/// dropped from now on, FIN and RST included, as if their hosts had vanished.
fn cut_network() -> std::time::Instant {
    let status = std::process::Command::new("ip")
        .args(["link", "set", "lo", "down"])
        .status();
    assert!(
        status.as_ref().is_ok_and(|s| s.success()),
        "cannot cut the network: {status:?}"
    );
    std::time::Instant::now()
}

fn mpi_pool() -> mp::Result<mp::Pool> {
    mp::Pool::builder().backend(mp::Backend::Mpi).build()
}

mp::main! {
    fn main() -> mp::Result<()> {
        let mode = std::env::args().nth(1).unwrap_or_default();
        println!("rank {} of {} ({})", mp::mpi::rank(), mp::mpi::size(), mp::mpi::linked());
        match mode.as_str() {
            "map" => {
                let pool = mpi_pool()?;
                let remote = pool.map(square, 0..10_000)?;
                let local = mp::Pool::builder().processes(2).backend(mp::Backend::Local).build()?;
                let here = local.map(square, 0..10_000)?;
                assert_eq!(remote, here);
                let mut ranks = pool.chunksize(1).map(where_am_i, 0..200)?;
                ranks.sort_unstable();
                ranks.dedup();
                let async_one = pool.apply_async(square, 9)?.get()?;
                let star = pool.starmap(square, [1u64, 2, 3])?;
                let unordered: u64 = pool.imap_unordered(square, 0..100u64).map(|r| r.unwrap()).sum();
                println!(
                    "map ok: {} items equal, workers {}, ranks {ranks:?}, apply {}, async {async_one}, starmap {star:?}, imap_unordered {unordered}",
                    remote.len(),
                    pool.processes(),
                    pool.apply(square, 12)?,
                );
                drop(pool);
                // The ranks serve the next pool too.
                let again = mpi_pool()?;
                println!("second pool: {:?}", again.map(square, 0..4)?);
            }
            "panic" => {
                let pool = mpi_pool()?;
                let results: Vec<mp::Result<u64>> =
                    pool.chunksize(1).imap(panic_on_three, 0..8).collect();
                let panicked = results
                    .iter()
                    .filter(|r| matches!(r, Err(mp::Error::WorkerPanicked { .. })))
                    .count();
                let fine = results.iter().filter(|r| r.is_ok()).count();
                let after = pool.chunksize(1).map(where_am_i, 0..100)?;
                let served_by_both = after.contains(&1) && after.contains(&2);
                println!("panic ok: panicked {panicked}, fine {fine}, both ranks serve after: {served_by_both}");
            }
            "die" => {
                let pool = mpi_pool()?;
                let results: Vec<mp::Result<u64>> =
                    pool.chunksize(1).imap(die_on_rank_two, 0..200).collect();
                let errors: Vec<&mp::Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
                let ok = results.iter().filter(|r| r.is_ok()).count();
                for e in &errors {
                    println!("error: {e}");
                }
                if let [mp::Error::WorkerDied { rank: Some(rank), host: Some(host), .. }] = errors.as_slice() {
                    println!("die ok: rank {rank} on {host} lost, {ok} completed");
                }
                // The last rank: still serving.
                println!("after: {:?}", pool.map(square, 0..3)?);
            }
            "die-retry" => {
                let pool = mp::Pool::builder()
                    .backend(mp::Backend::Mpi)
                    .retry_lost_tasks(true)
                    .build()?;
                let results = pool.chunksize(1).map(die_on_rank_two, 0..200)?;
                println!("retry ok: {} results, all on the last rank", results.len());
            }
            "features" => {
                // Initializer, map_async, progress, imap, Executor (MP_BACKEND=mpi), as_completed.
                let pool = mp::Pool::builder()
                    .backend(mp::Backend::Mpi)
                    .initializer(set_offset, 100)
                    .build()?;
                let pending = pool.map_async(add_offset, 0..10u64)?;
                let shown = pool.progress().chunksize(7).map(add_offset, 0..50u64)?;
                let lazy: Vec<u64> = pool.imap(add_offset, 0..5u64).collect::<mp::Result<_>>()?;
                println!(
                    "features: async {:?}, progress {}, imap {lazy:?}",
                    pending.get()?,
                    shown.iter().sum::<u64>()
                );
                drop(pool);
                let executor = mp::Executor::new(2)?;
                let futures: Vec<_> = (1..=4u64)
                    .map(|n| executor.submit(square, n))
                    .collect::<mp::Result<_>>()?;
                let mut done: Vec<u64> = mp::as_completed(futures)
                    .map(|f| f.get())
                    .collect::<mp::Result<_>>()?;
                done.sort_unstable();
                println!("executor on {}: {done:?}", if std::env::var("MP_BACKEND").is_ok_and(|b| b == "mpi") { "ranks" } else { "local" });
                executor.shutdown(true)?;
            }
            "handles" => {
                let pool = mpi_pool()?;
                let q = mp::Queue::<u64>::new()?;
                match pool.apply(count_items, q) {
                    Err(e) => println!("refused: {e}"),
                    Ok(n) => println!("accepted a queue: {n}"),
                }
            }
            "timeout" => {
                let pool = mp::Pool::builder()
                    .backend(mp::Backend::Mpi)
                    .processes(1)
                    .task_timeout(Duration::from_millis(300))
                    .build()?;
                match pool.apply(sleep_ms, 5_000) {
                    Err(mp::Error::TaskTimeout { .. }) => println!("timeout ok"),
                    other => println!("timeout gave {other:?}"),
                }
            }
            "hello" => {
                let pool = mpi_pool()?;
                println!("greeted by ranks {:?}", pool.map(greet, 0..4)?);
            }
            "main-panic" => {
                let pool = mpi_pool()?;
                println!("before: {:?}", pool.map(square, 0..3)?);
                panic!("rank 0's main gives up");
            }
            "exit" => {
                let pool = mpi_pool()?;
                println!("before: {:?}", pool.map(square, 0..3)?);
                std::process::exit(3);
            }
            "vanish" => {
                // Both worker ranks start a long task; then the network is cut under them.
                let pool = mpi_pool()?;
                println!("before: {:?}", pool.map(square, 0..3)?);
                let tasks: Vec<_> = (0..3u64)
                    .map(|_| pool.apply_async(hold, (60_000, Vec::new())))
                    .collect::<mp::Result<_>>()?;
                std::thread::sleep(Duration::from_millis(500));
                let cut = cut_network();
                println!("cut; heartbeat bound {:?}", mp::mpi::heartbeat_bound());
                for task in tasks {
                    let outcome = task.get();
                    let after = cut.elapsed().as_millis();
                    match outcome {
                        Err(mp::Error::WorkerDied { rank: Some(rank), .. }) => {
                            println!("vanish: rank {rank} lost {after} ms after the cut");
                        }
                        Err(e) => println!("vanish: {e} ({after} ms after the cut)"),
                        Ok(n) => println!("vanish: a task finished ({n})"),
                    }
                }
            }
            "busy" => {
                // One rank computes a task longer than the heartbeat's bound while rank 0 has
                // queued the next tasks' arguments on its connection (more than a default
                // receive buffer holds): a busy rank, not a vanished one.
                let pool = mp::Pool::builder()
                    .backend(mp::Backend::Mpi)
                    .processes(1)
                    .build()?;
                let bound = mp::mpi::heartbeat_bound();
                let long = bound.as_millis() as u64 * 3;
                let start = std::time::Instant::now();
                let args = [(long, vec![7u8; 16]), (0, vec![1u8; 240_000]), (0, vec![2u8; 240_000])];
                match pool.chunksize(1).starmap(hold, args) {
                    Ok(sizes) => println!(
                        "busy ok: {sizes:?} after {} ms (task {long} ms, bound {bound:?})",
                        start.elapsed().as_millis()
                    ),
                    Err(e) => println!("busy failed after {} ms: {e}", start.elapsed().as_millis()),
                }
            }
            "slow-init" => {
                // A rank runs an initializer longer than the heartbeat's bound while rank 0
                // has a first task for it far larger than its receive buffer: the task waits
                // for the rank to be ready rather than meeting a closed window.
                let bound = mp::mpi::heartbeat_bound();
                let pool = mp::Pool::builder()
                    .backend(mp::Backend::Mpi)
                    .processes(1)
                    .initializer(nap, bound.as_millis() as u64 * 3)
                    .build()?;
                let start = std::time::Instant::now();
                match pool.apply(hold, (0, vec![3u8; 8 << 20])) {
                    Ok(n) => println!("slow-init ok: {n} after {} ms", start.elapsed().as_millis()),
                    Err(e) => println!("slow-init failed after {} ms: {e}", start.elapsed().as_millis()),
                }
            }
            other => println!("unknown mode {other:?}"),
        }
        Ok(())
    }
}

//! `cargo mp run` and `cargo mp workers`: build one binary or example with cargo (the usual
//! flags forwarded), then run it supervised (children's output prefixed with their names, a
//! summary at exit) or ask it for its registered workers.
//!
//! Both talk to the `mp` runtime inside the program through environment variables that it
//! honours (see `runtime/src/supervision.rs`): `MP_PREFIX_OUTPUT`, `MP_RUN_LOG` and, for
//! `workers`, `__MP_LIST_WORKERS`, which makes the binary print its link-time registry from
//! the pre-`main` hook and exit before any of its own code runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The cargo flags `run` and `workers` forward to `cargo build`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct BuildArgs {
    /// Path to Cargo.toml.
    #[arg(long, value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,
    /// Package with the target.
    #[arg(short, long = "package", value_name = "SPEC")]
    pub package: Option<String>,
    /// The binary to build and run.
    #[arg(long, value_name = "NAME", conflicts_with = "example")]
    pub bin: Option<String>,
    /// The example to build and run.
    #[arg(long, value_name = "NAME")]
    pub example: Option<String>,
    /// Build with the release profile.
    #[arg(short, long)]
    pub release: bool,
    /// Features to activate.
    #[arg(short = 'F', long, value_name = "FEATURES")]
    pub features: Vec<String>,
    /// Activate all features.
    #[arg(long)]
    pub all_features: bool,
    /// Do not activate the default features.
    #[arg(long)]
    pub no_default_features: bool,
    /// Build for this target triple.
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,
    /// No cargo output.
    #[arg(short, long)]
    pub quiet: bool,
    /// More cargo output.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Colours in cargo's output: auto, always, never.
    #[arg(long, value_name = "WHEN")]
    pub color: Option<String>,
}

impl BuildArgs {
    /// The arguments for `cargo build`.
    pub fn cargo_args(&self) -> Vec<String> {
        let mut a = vec![
            "build".to_owned(),
            "--message-format=json-render-diagnostics".to_owned(),
        ];
        let mut opt = |flag: &str, value: &Option<String>| {
            if let Some(v) = value {
                a.push(flag.to_owned());
                a.push(v.clone());
            }
        };
        opt(
            "--manifest-path",
            &self.manifest_path.as_ref().map(|p| p.display().to_string()),
        );
        opt("--package", &self.package);
        opt("--bin", &self.bin);
        opt("--example", &self.example);
        opt("--target", &self.target);
        opt("--color", &self.color);
        for f in &self.features {
            a.push("--features".to_owned());
            a.push(f.clone());
        }
        if self.release {
            a.push("--release".to_owned());
        }
        if self.all_features {
            a.push("--all-features".to_owned());
        }
        if self.no_default_features {
            a.push("--no-default-features".to_owned());
        }
        if self.quiet {
            a.push("--quiet".to_owned());
        }
        for _ in 0..self.verbose {
            a.push("--verbose".to_owned());
        }
        a
    }
}

/// The executable among `cargo build --message-format=json` lines: the one wanted (a named
/// binary or example), or the only binary built.
pub fn pick_executable(json_lines: &str, args: &BuildArgs) -> Result<PathBuf, String> {
    let mut found: Vec<(String, Vec<String>, PathBuf)> = Vec::new();
    for line in json_lines.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(exe) = msg["executable"].as_str() else {
            continue;
        };
        let name = msg["target"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let kinds = msg["target"]["kind"]
            .as_array()
            .map(|k| {
                k.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        found.push((name, kinds, PathBuf::from(exe)));
    }
    let wanted: Vec<&(String, Vec<String>, PathBuf)> = found
        .iter()
        .filter(|(name, kinds, _)| match (&args.bin, &args.example) {
            (Some(b), _) => name == b && kinds.iter().any(|k| k == "bin"),
            (_, Some(e)) => name == e && kinds.iter().any(|k| k == "example"),
            _ => kinds.iter().any(|k| k == "bin"),
        })
        .collect();
    match wanted.as_slice() {
        [(_, _, exe)] => Ok(exe.clone()),
        [] => Err("cargo built no such binary or example".to_owned()),
        many => Err(format!(
            "several binaries were built ({}); choose one with --bin or --example",
            many.iter()
                .map(|(n, _, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Builds the target; returns its executable.
pub fn build(args: &BuildArgs) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(args.cargo_args())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err("the build failed".to_owned());
    }
    pick_executable(&String::from_utf8_lossy(&out.stdout), args)
}

/// What the runtime logged about the processes of a run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RunLog {
    /// Processes started (children, grandchildren, helpers).
    pub started: usize,
    /// Of those reaped, the ones that exited non-zero or were killed by a signal.
    pub failed: usize,
    /// The process with the highest peak resident memory: its name and the peak in KiB.
    pub busiest: Option<(String, u64)>,
    /// MPI ranks and their hosts (`rank <r> <host>` lines; rank 0 writes them).
    pub ranks: Vec<(u32, String)>,
    /// MPI ranks whose connection was lost (`lost <r> <host>`).
    pub lost: Vec<(u32, String)>,
    /// Rank 0's exit status, written by the rank-0 wrapper (`main-exit <code>`).
    pub main_exit: Option<i32>,
}

/// Parses the `start <pid> <name>`, `exit <pid> <code>` and `peak <pid> <KiB>` lines of
/// `MP_RUN_LOG`; `main_pid` is the program's own process.
pub fn parse_log(text: &str, main_pid: u32) -> RunLog {
    let mut log = RunLog::default();
    let mut names = std::collections::HashMap::new();
    names.insert(main_pid.to_string(), "main".to_owned());
    let mut peaks = Vec::new();
    for line in text.lines() {
        let mut words = line.split(' ');
        match (words.next(), words.next(), words.next()) {
            (Some("start"), Some(pid), Some(name)) => {
                log.started += 1;
                names.insert(pid.to_owned(), name.to_owned());
            }
            (Some("exit"), Some(_), Some(code)) if code != "0" => log.failed += 1,
            (Some("rank"), Some(rank), Some(host)) => {
                if let Ok(rank) = rank.parse() {
                    log.ranks.push((rank, host.to_owned()));
                }
            }
            (Some("lost"), Some(rank), Some(host)) => {
                if let Ok(rank) = rank.parse() {
                    log.lost.push((rank, host.to_owned()));
                }
            }
            (Some("main-exit"), Some(code), None) => log.main_exit = code.parse().ok(),
            (Some("peak"), Some(pid), Some(kib)) => {
                if let Ok(kib) = kib.parse::<u64>() {
                    peaks.push((pid.to_owned(), kib));
                }
            }
            _ => {}
        }
    }
    log.busiest = peaks
        .into_iter()
        .max_by_key(|(_, kib)| *kib)
        .map(|(pid, kib)| {
            let name = names
                .get(&pid)
                .cloned()
                .unwrap_or_else(|| format!("pid {pid}"));
            (name, kib)
        });
    log
}

/// `cargo mp run`: builds, runs with the program's arguments, prints a summary; returns the
/// program's exit code (128 + N for a signal N).
pub fn run(
    args: &BuildArgs,
    mpi: &crate::mpirun::MpiArgs,
    program_args: &[String],
    prefix: bool,
) -> Result<i32, String> {
    let exe = if mpi.mpi.is_some() {
        let mut args = BuildArgs { ..args.clone() };
        args.features.push("mp/mpi".to_owned());
        build(&args)?
    } else {
        build(args)?
    };
    // An MPI job's rank 0 may run on another host: its log then goes beside the binary, in the
    // target directory, which a cluster's hosts share (their /tmp they do not).
    let log_dir = match (mpi.mpi, exe.parent()) {
        (Some(_), Some(dir)) => dir.to_path_buf(),
        _ => std::env::temp_dir(),
    };
    let log_path = log_dir.join(format!("cargo-mp-run-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log_path);
    let start = Instant::now();
    let (mut cmd, tags) = match mpi.mpi {
        Some(_) => {
            let (cmd, tags) = crate::mpirun::command(&exe, mpi, program_args, prefix)?;
            (cmd, prefix.then_some(tags))
        }
        None => {
            let mut cmd = Command::new(&exe);
            cmd.args(program_args);
            (cmd, None)
        }
    };
    cmd.env("MP_RUN_LOG", &log_path);
    if prefix {
        cmd.env("MP_PREFIX_OUTPUT", "1");
    }
    if tags.is_some() {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    // Ctrl-C reaches the program (or its launcher) too: it decides how to end, and this
    // process stays to forward its last output and print the summary.
    ignore_signal(libc::SIGINT);
    let mut forwarders = Vec::new();
    if let Some(tags) = tags {
        use crate::rank_output::{Hosts, forward};
        let hosts = std::sync::Arc::new(std::sync::Mutex::new(Hosts::new(log_path.clone())));
        let started = |e: std::io::Error| format!("cannot start a thread forwarding output: {e}");
        if let Some(out) = child.stdout.take() {
            forwarders.push(forward(out, tags, hosts.clone(), false).map_err(started)?);
        }
        if let Some(err) = child.stderr.take() {
            forwarders.push(forward(err, tags, hosts, true).map_err(started)?);
        }
    }
    let pid = child.id();
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for {}: {e}", exe.display()))?;
    // The rest of the output, but not for long: a process the launcher left behind may hold
    // the pipes open.
    let drained_by = Instant::now() + std::time::Duration::from_secs(2);
    for thread in forwarders {
        while !thread.is_finished() && Instant::now() < drained_by {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
    let wall = start.elapsed();
    let log = parse_log(&std::fs::read_to_string(&log_path).unwrap_or_default(), pid);
    let _ = std::fs::remove_file(&log_path);
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    // Under recovery, `mpirun` exits 0 whatever rank 0 did: its own status is in the log.
    let code = log.main_exit.unwrap_or(code);
    eprintln!("{}", summary(&exe, &log, wall.as_secs_f64(), code));
    Ok(code)
}

/// Ignores `signal` in this process from now on (a program started before keeps its own
/// disposition).
pub(crate) fn ignore_signal(signal: libc::c_int) {
    // SAFETY: `signal` with `SIG_IGN` installs no handler code; it only changes this process's
    // disposition of one signal (SIGINT, SIGUSR1), which no other part of cargo-mp relies on.
    unsafe {
        libc::signal(signal, libc::SIG_IGN);
    }
}

/// The line `cargo mp run` ends with.
pub fn summary(exe: &Path, log: &RunLog, wall_s: f64, code: i32) -> String {
    let name = exe
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let busiest = match &log.busiest {
        Some((who, kib)) => format!(
            "; peak resident memory {:.1} MiB (`{who}`)",
            *kib as f64 / 1024.0
        ),
        None => String::new(),
    };
    let mut ranks = String::new();
    if !log.ranks.is_empty() {
        let mut hosts: Vec<&str> = log.ranks.iter().map(|(_, h)| h.as_str()).collect();
        hosts.sort_unstable();
        hosts.dedup();
        let lost: Vec<String> = log
            .lost
            .iter()
            .map(|(r, h)| format!("rank {r} on {h}"))
            .collect();
        ranks = format!(
            "ranks {} on {} host{}; workers lost: {}{}; ",
            log.ranks.len(),
            hosts.len(),
            if hosts.len() == 1 { "" } else { "s" },
            lost.len(),
            if lost.is_empty() {
                String::new()
            } else {
                format!(" ({})", lost.join(", "))
            }
        );
    }
    format!(
        "cargo mp run: `{name}` exited with {code} after {wall_s:.2} s; {ranks}processes started: \
         {}, failed: {}{busiest}",
        log.started, log.failed
    )
}

/// One registered worker.
#[derive(Debug, PartialEq, Eq)]
pub struct WorkerInfo {
    /// `module::path::function`.
    pub name: String,
    /// The signature as written.
    pub signature: String,
    /// `file:line` of the definition.
    pub location: String,
}

/// Parses the `name\tsignature\tlocation` lines a binary prints for `__MP_LIST_WORKERS`.
pub fn parse_workers(text: &str) -> Vec<WorkerInfo> {
    let mut workers: Vec<WorkerInfo> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, '\t');
            Some(WorkerInfo {
                name: parts.next()?.to_owned(),
                signature: parts.next()?.to_owned(),
                location: parts.next()?.to_owned(),
            })
        })
        .collect();
    workers.sort_by(|a, b| a.name.cmp(&b.name));
    workers
}

/// `cargo mp workers`: builds the target and lists the workers registered in its binary.
pub fn workers(args: &BuildArgs) -> Result<Vec<WorkerInfo>, String> {
    let exe = build(args)?;
    let out = Command::new(&exe)
        .env("__MP_LIST_WORKERS", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} did not list its workers (does it use mp?)",
            exe.display()
        ));
    }
    Ok(parse_workers(&String::from_utf8_lossy(&out.stdout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_counts_starts_failures_and_the_busiest() {
        let text = "start 10 Process-1\nstart 11 Process-2\nexit 10 0\nexit 11 -9\n\
                    start 12 x\npeak 10 2048\npeak 9 4096\nexit 12 3\ngarbage\n";
        assert_eq!(
            parse_log(text, 9),
            RunLog {
                started: 3,
                failed: 2,
                busiest: Some(("main".to_owned(), 4096)),
                ..RunLog::default()
            }
        );
        let without_main = parse_log("start 10 Process-1\npeak 10 2048\n", 9);
        assert_eq!(without_main.busiest, Some(("Process-1".to_owned(), 2048)));
    }

    #[test]
    fn the_summary_names_ranks_hosts_and_lost_ranks() {
        let log = parse_log(
            "rank 0 node1\nrank 1 node1\nrank 2 node2\nrank 3 node2\nlost 3 node2\nmain-exit 4\n",
            1,
        );
        assert_eq!(log.main_exit, Some(4));
        let line = summary(Path::new("/t/app"), &log, 2.1, 4);
        assert!(
            line.contains("`app` exited with 4 after 2.10 s; ranks 4 on 2 hosts; workers lost: 1 (rank 3 on node2); processes started: 0"),
            "{line}"
        );
        let plain = summary(Path::new("/t/app"), &parse_log("start 5 x\n", 1), 1.0, 0);
        assert!(!plain.contains("ranks"), "{plain}");
    }

    #[test]
    fn the_executable_is_picked_from_cargos_messages() {
        let lines = [
            r#"{"reason":"compiler-artifact","target":{"name":"mp","kind":["lib"]},"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"demo","kind":["example"]},"executable":"/t/examples/demo"}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"app","kind":["bin"]},"executable":"/t/app"}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        let example = BuildArgs {
            example: Some("demo".into()),
            ..BuildArgs::default()
        };
        assert_eq!(
            pick_executable(&lines, &example).unwrap(),
            PathBuf::from("/t/examples/demo")
        );
        assert_eq!(
            pick_executable(&lines, &BuildArgs::default()).unwrap(),
            PathBuf::from("/t/app")
        );
        let missing = BuildArgs {
            bin: Some("nope".into()),
            ..BuildArgs::default()
        };
        assert!(pick_executable(&lines, &missing).is_err());
    }

    #[test]
    fn cargo_flags_are_forwarded() {
        let args = BuildArgs {
            example: Some("pool_map".into()),
            release: true,
            features: vec!["a,b".into()],
            verbose: 2,
            ..BuildArgs::default()
        };
        let a = args.cargo_args();
        for expected in ["--example", "pool_map", "--release", "--features", "a,b"] {
            assert!(a.contains(&expected.to_owned()), "{a:?}");
        }
        assert_eq!(a.iter().filter(|x| *x == "--verbose").count(), 2);
    }

    #[test]
    fn workers_are_parsed_and_sorted() {
        let w = parse_workers("b::g\tfn g()\tsrc/b.rs:3\na::f\tfn f(x: u32) -> u32\tsrc/a.rs:1\n");
        assert_eq!(w[0].name, "a::f");
        assert_eq!(w[1].signature, "fn g()");
    }
}

//! `cargo mp run --mpi N`: the program on N MPI ranks (rank 0 runs `main`; the others serve
//! `Backend::Mpi` pools). Builds with `mp/mpi`, asks the binary which MPI it links, and starts
//! it with the matching launcher: `srun` inside a Slurm allocation, else Open MPI's `mpirun` or
//! MPICH's `mpiexec` (a launcher of the other MPI is refused before anything starts: it would
//! run N unrelated single-rank copies). Output lines carry the rank and its host
//! (`[rank 2 on node1] `: the launcher's rank tag, rewritten by [`crate::rank_output`]); the
//! summary names the ranks, their hosts and the ranks lost.
//!
//! The job survives a lost rank by default (Open MPI's `--enable-recovery`, MPICH's
//! `-disable-auto-cleanup`, Slurm's `--kill-on-bad-exit=0 --no-kill`): `mp` sees the lost rank
//! itself, its tasks fail with `WorkerDied` naming the rank or are retried on another
//! (`retry_lost_tasks`), as in a local pool, where MPI's default would end the whole job. The
//! launcher's status then says nothing (`mpirun` exits 0 whatever happened), so rank 0 runs
//! under a small wrapper (`cargo-mp __mp-rank0`) that writes its exit status to the run log,
//! and that status is the command's. `--no-recovery` gives MPI's default back.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Options of `cargo mp run` for MPI.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct MpiArgs {
    /// Run on N MPI ranks: rank 0 runs `main`, ranks 1.. serve `mp::Backend::Mpi` pools.
    /// Builds with the `mp/mpi` feature.
    #[arg(long, value_name = "N")]
    pub mpi: Option<u32>,
    /// Hosts and their slots, one `host slots=N` a line (Open MPI) or `host:N` (MPICH).
    #[arg(long, value_name = "PATH", requires = "mpi")]
    pub hostfile: Option<PathBuf>,
    /// Hosts to run on, comma-separated (`node1:4,node2:4`).
    #[arg(long, value_name = "HOSTS", requires = "mpi")]
    pub host: Option<String>,
    /// More ranks than cores (Open MPI refuses that otherwise).
    #[arg(long, requires = "mpi")]
    pub oversubscribe: bool,
    /// Let Open MPI run as root (CI containers).
    #[arg(long, requires = "mpi")]
    pub allow_run_as_root: bool,
    /// End the whole job when a rank dies (MPI's default). Without it the job survives a lost
    /// rank: `mp` fails (`WorkerDied`) or retries (`retry_lost_tasks`) that rank's tasks, as a
    /// local pool does, and the exit status is rank 0's own.
    #[arg(long, requires = "mpi")]
    pub no_recovery: bool,
    /// The default since recovery became one; accepted so that scripts asking for it work.
    #[arg(long, requires = "mpi", hide = true, conflicts_with = "no_recovery")]
    pub enable_recovery: bool,
}

impl MpiArgs {
    /// Whether the job is to survive a lost rank.
    pub fn recovery(&self) -> bool {
        !self.no_recovery
    }
}

/// An MPI implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Open MPI (`mpirun`).
    OpenMpi,
    /// MPICH (`mpiexec`, hydra).
    Mpich,
}

impl Flavor {
    /// From `mp::mpi::linked()`'s first word.
    pub fn from_linked(linked: &str) -> Option<Flavor> {
        match linked.split_whitespace().next()? {
            "openmpi" => Some(Flavor::OpenMpi),
            "mpich" => Some(Flavor::Mpich),
            _ => None,
        }
    }

    /// From a launcher's `--version` output.
    pub fn from_version(text: &str) -> Option<Flavor> {
        if text.contains("Open MPI") || text.contains("OpenRTE") {
            Some(Flavor::OpenMpi)
        } else if text.contains("HYDRA") || text.contains("MPICH") {
            Some(Flavor::Mpich)
        } else {
            None
        }
    }

    fn launcher(self) -> &'static str {
        match self {
            Flavor::OpenMpi => "mpirun",
            Flavor::Mpich => "mpiexec",
        }
    }
}

/// How the launcher of `flavor` (or `srun`) tags output lines with their rank.
pub fn tags(flavor: Flavor, slurm: bool) -> crate::rank_output::Tags {
    use crate::rank_output::Tags;
    match (slurm, flavor) {
        (true, _) => Tags::Slurm,
        (false, Flavor::OpenMpi) => Tags::OpenMpi,
        (false, Flavor::Mpich) => Tags::Mpich,
    }
}

/// The MPI the binary links, as it says itself (`mpi\topenmpi 4.1.4` among its worker lines).
pub fn linked(exe: &Path) -> Result<String, String> {
    let out = Command::new(exe)
        .env("__MP_LIST_WORKERS", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("mpi\t").map(str::to_owned))
        .ok_or_else(|| {
            format!(
                "{} was not built with mp's `mpi` feature (does it depend on mp?)",
                exe.display()
            )
        })
}

/// The launcher's command line (without the environment), for `ranks` copies of `program`.
pub fn launcher_args(
    flavor: Flavor,
    slurm: bool,
    mpi: &MpiArgs,
    prefix: bool,
    program: &[String],
) -> Result<(String, Vec<String>), String> {
    let n = mpi.mpi.unwrap_or(1).to_string();
    let mut a: Vec<String> = Vec::new();
    if slurm {
        if mpi.hostfile.is_some() || mpi.host.is_some() {
            return Err(
                "inside a Slurm allocation the allocation chooses the hosts; drop \
                        --hostfile/--host"
                    .to_owned(),
            );
        }
        a.extend(["-n".into(), n]);
        a.push(
            match flavor {
                Flavor::OpenMpi => "--mpi=pmix",
                Flavor::Mpich => "--mpi=pmi2",
            }
            .to_owned(),
        );
        if mpi.recovery() {
            a.extend(["--kill-on-bad-exit=0".into(), "--no-kill".into()]);
        }
        if prefix {
            a.push("--label".into());
        }
        a.extend(program.iter().cloned());
        return Ok(("srun".to_owned(), a));
    }
    match flavor {
        Flavor::OpenMpi => {
            a.extend(["-n".into(), n]);
            if let Some(f) = &mpi.hostfile {
                a.extend(["--hostfile".into(), f.display().to_string()]);
            }
            if let Some(h) = &mpi.host {
                a.extend(["--host".into(), h.clone()]);
            }
            if mpi.oversubscribe {
                a.push("--oversubscribe".into());
            }
            if mpi.allow_run_as_root {
                a.push("--allow-run-as-root".into());
            }
            if mpi.recovery() {
                a.push("--enable-recovery".into());
            }
            if prefix {
                a.push("--tag-output".into());
            }
            for var in [
                "MP_RUN_LOG",
                "MP_PREFIX_OUTPUT",
                "MP_BACKEND",
                "MP_MPI_ADDR",
                "MP_MPI_HEARTBEAT",
            ] {
                if var == "MP_RUN_LOG"
                    || var == "MP_PREFIX_OUTPUT" && prefix
                    || std::env::var_os(var).is_some()
                {
                    a.extend(["-x".into(), var.into()]);
                }
            }
        }
        Flavor::Mpich => {
            a.extend(["-n".into(), n]);
            if let Some(f) = &mpi.hostfile {
                a.extend(["-f".into(), f.display().to_string()]);
            }
            if let Some(h) = &mpi.host {
                a.extend(["-hosts".into(), h.clone()]);
            }
            if mpi.recovery() {
                a.push("-disable-auto-cleanup".into());
            }
            if prefix {
                a.push("-prepend-rank".into());
            }
            a.extend(["-genvlist".into(), "MP_RUN_LOG,MP_PREFIX_OUTPUT".into()]);
        }
    }
    a.extend(program.iter().cloned());
    Ok((flavor.launcher().to_owned(), a))
}

/// Which MPI a launcher belongs to (`--version`), `None` when it is missing or unknown.
fn launcher_flavor(launcher: &str) -> Option<Flavor> {
    let out = Command::new(launcher)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Flavor::from_version(&text)
}

/// Builds the launcher's command for `exe` (already built): checks that the launcher matches
/// the MPI the binary links. Also says how the launcher tags output lines with their rank.
pub fn command(
    exe: &Path,
    mpi: &MpiArgs,
    program_args: &[String],
    prefix: bool,
) -> Result<(Command, crate::rank_output::Tags), String> {
    let linked = linked(exe)?;
    let flavor = Flavor::from_linked(&linked).ok_or_else(|| {
        format!(
            "{} links an MPI that cargo mp does not know: {linked}",
            exe.display()
        )
    })?;
    let slurm = std::env::var_os("SLURM_JOB_ID").is_some();
    if !slurm {
        let launcher = flavor.launcher();
        match launcher_flavor(launcher) {
            Some(f) if f == flavor => {}
            Some(other) => {
                return Err(format!(
                    "`{launcher}` on PATH belongs to {other:?}, but {} links {linked}: it would start \
                     single-rank copies; put the launcher of {linked} first on PATH",
                    exe.display()
                ));
            }
            None => {
                return Err(format!(
                    "`{launcher}` (the launcher of {linked}, which {} links) was not found on PATH",
                    exe.display()
                ));
            }
        }
    }
    let mut program: Vec<String> = Vec::new();
    if mpi.recovery() {
        let me =
            std::env::current_exe().map_err(|e| format!("cannot find cargo-mp itself: {e}"))?;
        program.push(me.display().to_string());
        program.push(RANK0_WRAPPER.to_owned());
    }
    program.push(exe.display().to_string());
    program.extend(program_args.iter().cloned());
    let (launcher, args) = launcher_args(flavor, slurm, mpi, prefix, &program)?;
    let mut cmd = Command::new(launcher);
    cmd.args(args);
    if mpi.recovery() && flavor == Flavor::Mpich && !slurm {
        // Hydra SIGKILLs every rank when one it started dies by a signal, recovery or not,
        // and sends SIGUSR1 to the others when one exits: the wrapper stays on every rank,
        // turning a signal death into a status and ignoring SIGUSR1 (MPICH's `MPI_Init`
        // handles it in the program itself).
        cmd.env(WRAPPER_STAYS_ENV, "1");
    }
    if mpi.allow_run_as_root && flavor == Flavor::OpenMpi {
        cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    }
    Ok((cmd, tags(flavor, slurm)))
}

/// The hidden first argument that makes `cargo-mp` the rank-0 wrapper.
pub const RANK0_WRAPPER: &str = "__mp-rank0";
/// Set for the wrapper to stay the parent of the program on every rank, not only on rank 0
/// (MPICH's launcher, see [`command`]).
const WRAPPER_STAYS_ENV: &str = "__MP_RANK_WRAPPER_STAYS";

/// `cargo-mp __mp-rank0 <program> [args]`: on rank 0, runs the program as a child and writes
/// `main-exit <code>` to the run log before exiting with that code; on the other ranks, becomes
/// the program, or (MPICH) runs it as a child too and exits with its status (`128 + N` for
/// a signal `N`), ignoring SIGUSR1.
pub fn rank0_wrapper(args: &[std::ffi::OsString]) -> i32 {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let Some((program, rest)) = args.split_first() else {
        eprintln!("cargo-mp: {RANK0_WRAPPER} needs a program");
        return 2;
    };
    let rank = [
        "OMPI_COMM_WORLD_RANK",
        "PMI_RANK",
        "PMIX_RANK",
        "SLURM_PROCID",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok());
    let rank0 = rank.as_deref() == Some("0");
    let stays = std::env::var_os(WRAPPER_STAYS_ENV).is_some();
    if !rank0 && !stays {
        let e = Command::new(program).args(rest).exec();
        eprintln!("cargo-mp: cannot run {}: {e}", Path::new(program).display());
        return 127;
    }
    let mut cmd = Command::new(program);
    cmd.args(rest).env_remove(WRAPPER_STAYS_ENV);
    if rank0 {
        cmd.env("__MP_MPI_WRAPPED", "1");
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("cargo-mp: cannot run {}: {e}", Path::new(program).display());
            return 127;
        }
    };
    if stays {
        crate::run::ignore_signal(libc::SIGUSR1);
    }
    let status = match child.wait() {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "cargo-mp: cannot wait for {}: {e}",
                Path::new(program).display()
            );
            return 127;
        }
    };
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    if !rank0 {
        return code;
    }
    if let Some(log) = std::env::var_os("MP_RUN_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
        {
            let _ = f.write_all(format!("main-exit {code}\n").as_bytes());
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launcher_matches_the_linked_mpi_and_passes_the_options() {
        let mpi = MpiArgs {
            mpi: Some(3),
            hostfile: Some("hosts".into()),
            oversubscribe: true,
            ..MpiArgs::default()
        };
        let (l, a) = launcher_args(Flavor::OpenMpi, false, &mpi, true, &["app".into()]).unwrap();
        assert_eq!(l, "mpirun");
        let line = a.join(" ");
        assert!(
            line.starts_with(
                "-n 3 --hostfile hosts --oversubscribe --enable-recovery --tag-output"
            ),
            "{line}"
        );
        assert!(line.ends_with(" app"), "{line}");
        assert!(!line.contains("allow-run-as-root"));
        let (l, a) = launcher_args(
            Flavor::Mpich,
            true,
            &MpiArgs {
                mpi: Some(8),
                no_recovery: true,
                ..MpiArgs::default()
            },
            false,
            &["app".into()],
        )
        .unwrap();
        assert_eq!(
            (l.as_str(), a.join(" ").as_str()),
            ("srun", "-n 8 --mpi=pmi2 app")
        );
        assert_eq!(Flavor::from_linked("openmpi 4.1.4"), Some(Flavor::OpenMpi));
        assert_eq!(
            Flavor::from_version("mpirun (Open MPI) 4.1.4"),
            Some(Flavor::OpenMpi)
        );
        assert_eq!(
            Flavor::from_version("HYDRA build details:"),
            Some(Flavor::Mpich)
        );
    }

    #[test]
    fn the_job_survives_a_lost_rank_unless_asked_not_to() {
        let survive = MpiArgs {
            mpi: Some(4),
            ..MpiArgs::default()
        };
        let end = MpiArgs {
            no_recovery: true,
            ..survive.clone()
        };
        let line = |flavor, slurm, mpi: &MpiArgs| {
            launcher_args(flavor, slurm, mpi, false, &["app".into()])
                .unwrap()
                .1
                .join(" ")
        };
        assert_eq!(
            line(Flavor::OpenMpi, false, &survive),
            "-n 4 --enable-recovery -x MP_RUN_LOG app"
        );
        assert_eq!(line(Flavor::OpenMpi, false, &end), "-n 4 -x MP_RUN_LOG app");
        assert_eq!(
            line(Flavor::Mpich, false, &survive),
            "-n 4 -disable-auto-cleanup -genvlist MP_RUN_LOG,MP_PREFIX_OUTPUT app"
        );
        assert_eq!(
            line(Flavor::Mpich, false, &end),
            "-n 4 -genvlist MP_RUN_LOG,MP_PREFIX_OUTPUT app"
        );
        assert_eq!(
            line(Flavor::OpenMpi, true, &survive),
            "-n 4 --mpi=pmix --kill-on-bad-exit=0 --no-kill app"
        );
        assert!(survive.recovery() && !end.recovery());
        // The old flag still parses (and asks for what is now the default).
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            mpi: MpiArgs,
        }
        use clap::Parser;
        let cli = Cli::try_parse_from(["x", "--mpi", "2", "--enable-recovery"]).unwrap();
        assert!(cli.mpi.recovery());
        assert!(
            Cli::try_parse_from(["x", "--mpi", "2", "--enable-recovery", "--no-recovery"]).is_err()
        );
    }
}

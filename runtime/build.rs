//! Build script: only with the `mpi` feature, compiles `csrc/mpi_shim.c` (the few MPI calls mp
//! makes) with the flags of the MPI compiler wrapper (`$MPICC`, else `mpicc`, asked with
//! `-show`), links the MPI library, and records which MPI it linked as `MP_MPI_LINKED`
//! (`openmpi 4.1.4`, `mpich 4.0.2`) for `mp::mpi::linked()`. Without the feature it does
//! nothing: the default build needs no MPI and no C compiler.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "mpi")]
    mpi::build();
}

#[cfg(feature = "mpi")]
mod mpi {
    use std::process::Command;

    pub(super) fn build() {
        println!("cargo:rerun-if-changed=csrc/mpi_shim.c");
        println!("cargo:rerun-if-changed=csrc/mpi_flavor.c");
        println!("cargo:rerun-if-env-changed=MPICC");
        let wrapper = std::env::var("MPICC").unwrap_or_else(|_| "mpicc".to_owned());
        let shown = match Command::new(&wrapper).arg("-show").output() {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
            Ok(out) => fail(&format!(
                "`{wrapper} -show` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => fail(&format!("cannot run `{wrapper} -show`: {e}")),
        };
        let mut build = cc::Build::new();
        build.file("csrc/mpi_shim.c").warnings(true);
        let mut flavor = cc::Build::new();
        flavor.file("csrc/mpi_flavor.c");
        // The first word is the compiler; the rest are include, library and linker flags.
        for flag in shown.split_whitespace().skip(1) {
            if let Some(dir) = flag.strip_prefix("-I") {
                build.include(dir);
                flavor.include(dir);
            } else if let Some(dir) = flag.strip_prefix("-L") {
                println!("cargo:rustc-link-search=native={dir}");
            } else if let Some(lib) = flag.strip_prefix("-l") {
                println!("cargo:rustc-link-lib={lib}");
            } else if let Some(args) = flag.strip_prefix("-Wl,") {
                println!("cargo:rustc-link-arg=-Wl,{args}");
            } else if flag == "-pthread" {
                build.flag(flag);
            }
        }
        build.compile("mp_mpi_shim");
        let expanded = String::from_utf8_lossy(&flavor.expand()).into_owned();
        let linked = expanded
            .lines()
            .find_map(|l| l.trim().strip_prefix("MP_MPI_FLAVOR "))
            .map(|rest| {
                let words: Vec<&str> = rest
                    .split_whitespace()
                    .map(|w| w.trim_matches('"'))
                    .collect();
                match words.as_slice() {
                    [name, version @ ..] => format!("{name} {}", version.join(".")),
                    [] => "unknown".to_owned(),
                }
            })
            .unwrap_or_else(|| "unknown".to_owned());
        println!("cargo:rustc-env=MP_MPI_LINKED={linked}");
        println!("cargo:rustc-env=MP_MPI_WRAPPER={wrapper}");
    }

    fn fail(why: &str) -> ! {
        eprintln!(
            "error: the `mpi` feature of mp needs an MPI installation: {why}\n\
             install one (Debian/Ubuntu: `apt-get install openmpi-bin libopenmpi-dev`), or set \
             MPICC to its compiler wrapper"
        );
        std::process::exit(1);
    }
}

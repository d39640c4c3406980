//! The same pool on MPI ranks: a Monte Carlo estimate of π, cut into batches with fixed seeds,
//! run on the worker ranks of an MPI job and then on a local pool: the two counts are equal.
//!
//! ```text
//! cargo mp run --mpi 3 --example mpi_pool            # one host, two worker ranks
//! cargo mp run --mpi 9 --hostfile hosts --example mpi_pool
//! srun -n 64 target/release/examples/mpi_pool         # inside a Slurm allocation
//! ```
//!
//! Needs the `mpi` feature of mp (`cargo mp run --mpi` turns it on) and an MPI installation
//! (`apt-get install openmpi-bin libopenmpi-dev`).

use std::time::Instant;

/// xorshift64*: small, fast and good enough for a Monte Carlo estimate.
fn next(state: &mut u64) -> f64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
}

/// Points of batch `batch` that fall inside the unit circle; the seed depends on the batch
/// only, so any worker on any host gives the same count.
#[mp::worker]
fn hits(batch: u64, samples: u64) -> u64 {
    let mut state = 0x9e37_79b9_7f4a_7c15 ^ (batch + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (0..samples)
        .filter(|_| {
            let (x, y) = (next(&mut state), next(&mut state));
            x * x + y * y <= 1.0
        })
        .count() as u64
}

/// Where the task ran: rank and host.
#[mp::worker]
fn whereabouts(_: u32) -> (u32, String) {
    (mp::mpi::rank(), mp::mpi::hostname())
}

mp::main! {
    fn main() -> mp::Result<()> {
        let batches = 64u64;
        let samples = 200_000u64;
        let pool = mp::Pool::builder().backend(mp::Backend::Mpi).build()?;
        let mut places = pool.chunksize(1).map(whereabouts, 0..pool.processes() as u32 * 4)?;
        places.sort();
        places.dedup();
        println!(
            "rank {} of {} on {} ({}); workers: {places:?}",
            mp::mpi::rank(),
            mp::mpi::size(),
            mp::mpi::hostname(),
            mp::mpi::linked()
        );
        let start = Instant::now();
        let on_ranks: u64 = pool.starmap(hits, (0..batches).map(|b| (b, samples)))?.iter().sum();
        let ranks_took = start.elapsed();
        let workers = pool.processes();
        drop(pool);

        // As many local workers as there were worker ranks: the same work, side by side.
        let local = mp::Pool::builder().backend(mp::Backend::Local).processes(workers).build()?;
        let start = Instant::now();
        let here: u64 = local.starmap(hits, (0..batches).map(|b| (b, samples)))?.iter().sum();
        let local_took = start.elapsed();

        let total = batches * samples;
        let pi = 4.0 * on_ranks as f64 / total as f64;
        println!(
            "π ≈ {pi:.5} from {total} samples: {on_ranks} hits on the ranks ({ranks_took:.2?}), \
             {here} on a local pool ({local_took:.2?})"
        );
        assert_eq!(on_ranks, here, "the ranks and the local pool disagree");
        assert!((pi - std::f64::consts::PI).abs() < 0.01, "estimate {pi} is off");
        Ok(())
    }
}

//! A `pub` worker in a library: the impl `#[mp::worker]` generates is part of the crate's
//! public interface, so it may name only public items (a private helper trait there is
//! error E0446, which only a library crate shows).

use serde::{Deserialize, Serialize};

/// A job of the public worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicJob {
    /// Its size.
    pub size: u32,
}

/// A public worker over a public type.
#[mp::worker]
pub fn public_worker(job: PublicJob, factor: u32) -> Result<u64, String> {
    Ok(u64::from(job.size) * u64::from(factor))
}

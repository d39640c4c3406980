//! A worker rank's side of an MPI job (ranks ≥ 1, which never reach `main`): receiving rank
//! 0's address, the control connection it waits on for stop, and the pool connections it
//! serves one pool at a time with the local pool's protocol. It must hold no pool machinery of
//! its own (that is `pool/child.rs`) nor any of rank 0's state (`hub.rs`).

use std::time::Duration;

use super::{
    BCAST_LEN, Control, Hello, REFUSED, RankRole, finalize_or_exit, heartbeat, hostname, unhex,
    widen_receive_window,
};
use crate::codec::MAX_MESSAGE;
use crate::connection::{Address, ToAddress, connect_channel};
use crate::error::Result;
use crate::sys;
use crate::wire::{Channel, Frame};

/// A worker rank's life: receives rank 0's address, connects, serves pools on one thread while
/// the main thread (which initialised MPI, so it finalizes) waits for stop. Never returns.
pub(super) fn serve_rank(rank: u32, role: RankRole) -> ! {
    (role.named)(rank);
    let mut message = vec![0u8; BCAST_LEN];
    if let Err(e) = sys::mpi::bcast(&mut message, 0) {
        eprintln!("mp: rank {rank} did not receive rank 0's address: {e}");
        sys::exit_now(1);
    }
    if message.starts_with(REFUSED) {
        // Rank 0 cannot serve (it says why): end with it.
        finalize_or_exit();
        sys::exit_now(2);
    }
    let text = String::from_utf8_lossy(&message);
    let text = text.trim_end_matches('\0');
    let Some((address, key)) = text
        .split_once('\n')
        .and_then(|(a, k)| Some((a.to_owned(), unhex(k)?)))
    else {
        eprintln!("mp: rank {rank} received a malformed address from rank 0: {text:?}");
        sys::exit_now(1);
    };
    let address = match address.to_address() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mp: rank {rank} cannot use rank 0's address {address}: {e}");
            sys::exit_now(1);
        }
    };
    let host = hostname();
    let pid = std::process::id();
    let control = match connect(
        &address,
        &key,
        &Hello::Control {
            rank,
            host: host.clone(),
            pid,
        },
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mp: rank {rank} cannot connect to rank 0 at {address}: {e}");
            sys::exit_now(1);
        }
    };
    let serving = std::thread::Builder::new()
        .name("mp-mpi-serve".into())
        .spawn(move || serve_pools(rank, &host, pid, &address, &key, role.serve));
    if let Err(e) = serving {
        eprintln!("mp: rank {rank} cannot start serving: {e}");
        sys::exit_now(1);
    }
    match control.recv_frame(None).and_then(|f| f.decode::<Control>()) {
        Ok(Control::Stop) => {
            finalize_or_exit();
            crate::run_support::drain_output();
            sys::exit_now(0);
        }
        Ok(Control::Abandon) => {
            crate::run_support::drain_output();
            sys::exit_now(0);
        }
        Err(_) => {
            // Rank 0 is gone: finalizing would wait for it forever.
            eprintln!("mp: rank {rank}: rank 0 is gone; exiting without MPI_Finalize");
            sys::exit_now(1);
        }
    }
}

fn connect(address: &Address, key: &[u8], hello: &Hello) -> Result<Channel> {
    let channel = connect_channel(address, key)?;
    channel.set_limit(MAX_MESSAGE);
    heartbeat(&channel);
    channel.send(hello)?;
    Ok(channel)
}

/// Serves one pool per pool connection, reconnecting after each; a connection that cannot be
/// made is retried (the control connection decides when rank 0 is gone).
fn serve_pools(
    rank: u32,
    host: &str,
    pid: u32,
    address: &Address,
    key: &[u8],
    serve: fn(&Channel, Frame) -> i32,
) {
    let mut failures = 0u32;
    loop {
        let hello = Hello::Pool {
            rank,
            host: host.to_owned(),
            pid,
        };
        let channel = match connect(address, key, &hello) {
            Ok(c) => {
                failures = 0;
                c
            }
            Err(e) => {
                failures += 1;
                if failures == 3 {
                    eprintln!("mp: rank {rank} cannot connect to rank 0 for a pool: {e}; retrying");
                }
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        widen_receive_window(&channel);
        // The pool's first message (its initializer), then its tasks until it closes.
        let init = match channel.recv_frame(None) {
            Ok(init) => init,
            Err(_) => continue,
        };
        serve(&channel, init);
    }
}

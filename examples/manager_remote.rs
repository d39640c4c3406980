//! A manager reached over TCP with an auth key (Python's `BaseManager(address, authkey)`):
//! one program serves shared objects, others connect and use them by name.
//!
//! In two terminals:
//!
//! ```sh
//! cargo run --release --example manager_remote -- server 127.0.0.1:50000
//! cargo run --release --example manager_remote -- client 127.0.0.1:50000   # as often as you like
//! cargo run --release --example manager_remote -- client 127.0.0.1:50000 --shutdown
//! ```
//!
//! The key comes from `MP_AUTHKEY` (both sides must agree; a demo key is used if it is unset).
//! A client with another key is turned away before the server reads any request from it.
//! Without arguments the example runs both sides itself: a server process on a free port and
//! three client processes.

use std::time::Duration;

const DEMO_KEY: &str = "mp demo key: set MP_AUTHKEY to your own secret";

type Visits = mp::DictProxy<String, u64>;

fn authkey() -> Vec<u8> {
    std::env::var("MP_AUTHKEY")
        .unwrap_or_else(|_| DEMO_KEY.to_owned())
        .into_bytes()
}

/// What one client does: count its visit, leave a line in the log, and take a job if there
/// is one.
fn visit(address: &str, key: &[u8], who: &str) -> mp::Result<u64> {
    let manager = mp::Manager::connect(address, key)?;
    let visits = manager.named::<Visits>("visits")?;
    let log = manager.named::<mp::ListProxy<String>>("log")?;
    let jobs = manager.named::<mp::QueueProxy<u32>>("jobs")?;
    let n = visits
        .update_with(&"total".to_string(), |v| Some(v.unwrap_or(0) + 1))?
        .unwrap_or(0);
    log.append(format!("{who} was visitor {n}"))?;
    match jobs.get_timeout(Duration::from_millis(100)) {
        Ok(job) => println!("{who}: visitor {n}, took job {job}"),
        Err(mp::Error::Timeout) => println!("{who}: visitor {n}, no job left"),
        Err(e) => return Err(e),
    }
    Ok(n)
}

#[mp::worker]
fn client_process(address: String, key: Vec<u8>, who: String) -> mp::Result<u64> {
    visit(&address, &key, &who)
}

fn serve(address: &str) -> mp::Result<()> {
    let server = mp::ManagerServer::bind(address, authkey())?;
    println!(
        "serving on {} (stop with a client's --shutdown)",
        server.address()
    );
    server.serve_forever()
}

fn client(address: &str, shutdown: bool) -> mp::Result<()> {
    let key = authkey();
    if shutdown {
        mp::Manager::connect(address, &key)?.shutdown()?;
        println!("asked the server at {address} to stop");
        return Ok(());
    }
    let manager = mp::Manager::connect(address, &key)?;
    let jobs = manager.named::<mp::QueueProxy<u32>>("jobs")?;
    if jobs.empty()? {
        jobs.put_many(1..=3)?;
    }
    visit(address, &key, &format!("client pid {}", std::process::id()))?;
    let log = manager.named::<mp::ListProxy<String>>("log")?;
    println!("log so far: {:?}", log.to_vec()?);
    Ok(())
}

/// Both sides in one run: a TCP manager on a free port, three client processes.
fn demo() -> mp::Result<()> {
    let key = authkey();
    let manager = mp::Manager::builder()
        .address("127.0.0.1:0")
        .authkey(&key)
        .start()?;
    let address = manager.address().to_string();
    println!("manager serving on {address}");
    manager
        .named::<mp::QueueProxy<u32>>("jobs")?
        .put_many([10, 20])?;

    let wrong = mp::Manager::connect(&address, b"not the key");
    println!("a client with a wrong key: {}", wrong.as_ref().unwrap_err());
    assert!(matches!(wrong, Err(mp::Error::AuthenticationFailed(_))));

    let mut children = Vec::new();
    for i in 0..3 {
        let args = (address.clone(), key.clone(), format!("client {i}"));
        children.push(mp::spawn(client_process, args)?);
    }
    let mut seen = Vec::new();
    for c in &mut children {
        seen.push(c.join()??);
    }
    seen.sort();
    assert_eq!(seen, [1, 2, 3], "every visit was counted once");
    let log = manager.named::<mp::ListProxy<String>>("log")?.to_vec()?;
    println!("log: {log:?}");
    assert_eq!(log.len(), 3);
    Ok(())
}

mp::main! {
    fn main() -> mp::Result<()> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let address = args.get(1).map(String::as_str).unwrap_or("127.0.0.1:50000");
        match args.first().map(String::as_str) {
            None => demo(),
            Some("server") => serve(address),
            Some("client") => client(address, args.iter().any(|a| a == "--shutdown")),
            Some(other) => {
                eprintln!("usage: manager_remote [server|client] [ADDRESS] [--shutdown] (got `{other}`)");
                std::process::exit(2);
            }
        }
    }
}

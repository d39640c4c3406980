//! Seed 2.3 (Pipe): a duplex pipe between parent and child; the child answers until the parent
//! hangs up, which it sees as `Error::Disconnected` (Python's `EOFError`).

#[mp::worker]
fn ponger(conn: mp::Connection<String>) -> mp::Result<u32> {
    let mut answered = 0;
    loop {
        match conn.recv() {
            Ok(ping) => {
                conn.send(format!("pong ({ping})"))?;
                answered += 1;
            }
            Err(mp::Error::Disconnected) => return Ok(answered),
            Err(e) => return Err(e),
        }
    }
}

mp::main! {
    fn main() -> mp::Result<()> {
        let (here, there) = mp::pipe::<String>()?;
        let mut child = mp::spawn(ponger, there)?;
        for i in 0..3 {
            here.send(format!("ping {i}"))?;
            println!("{}", here.recv()?);
        }
        drop(here);
        println!("child answered {} pings", child.join()??);
        Ok(())
    }
}

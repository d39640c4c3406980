mod jobs;

mp::main! {
    fn main() -> mp::Result<()> {
        let pool = mp::Pool::new(4)?; // allowed by [workspace.metadata.mp.lints]
        for name in std::env::args() {
            mp::spawn(jobs::fetch, name)?; // spawn-in-loop: deny here
        }
        drop(pool);
        Ok(())
    }
}

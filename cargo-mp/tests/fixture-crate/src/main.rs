mod jobs;

mp::main! {
    fn main() -> mp::Result<()> {
        let pool = mp::Pool::new(4)?; // allowed by [workspace.metadata.mp.lints]
        for name in ["a", "b"] {
            mp::spawn(jobs::fetch, name.to_string())?; // spawn-in-loop: deny here
        }
        drop(pool);
        Ok(())
    }
}

struct Counter;

impl Counter {
    #[mp::worker]
    fn bump(&self, by: u32) -> u32 {
        by
    }
}

fn main() {}

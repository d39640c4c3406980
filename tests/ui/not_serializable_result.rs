pub struct Summary {
    pub total: u64,
}

#[mp::worker]
fn summarize(values: Vec<u64>) -> Summary {
    Summary {
        total: values.iter().sum(),
    }
}

fn main() {}

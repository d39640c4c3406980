#[mp::worker]
async fn fetch(url: String) -> String {
    url
}

fn main() {}

#[mp::worker]
async fn fetch(url: String) -> String {
    url
}

fn main() {
    // The one error is at `async`: the call sites add none.
    let _ = mp::spawn(fetch, "https://example.invalid".to_string());
    let _ = fetch("https://example.invalid".to_string());
}

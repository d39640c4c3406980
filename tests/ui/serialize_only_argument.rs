#[derive(serde::Serialize)]
struct Report {
    lines: Vec<String>,
}

#[mp::worker]
fn count(id: u32, report: Report) -> usize {
    report.lines.len() + id as usize
}

fn main() {}

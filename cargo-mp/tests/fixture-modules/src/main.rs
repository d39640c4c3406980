mod r#async;
#[path = "other/renamed.rs"]
mod renamed;

cfg_if::cfg_if! {
    if #[cfg(unix)] {
        mod unix_only;
    } else {
        mod windows_only;
    }
}

my_macro! {
    mod in_macro;
}

include!("included.rs");
include!(concat!(env!("OUT_DIR"), "/generated.rs"));

odd_macro!(mod hidden = 3);

#[mp::worker]
fn work(x: u64) -> u64 {
    x
}

mp::main! {
    fn main() {}
}

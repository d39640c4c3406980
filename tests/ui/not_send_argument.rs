use std::marker::PhantomData;
use std::rc::Rc;

// Serializable both ways, but not `Send`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Handle {
    id: u32,
    #[serde(skip)]
    _local: PhantomData<Rc<()>>,
}

#[mp::worker]
fn open(handle: Handle) -> u32 {
    handle.id
}

fn main() {
    let _ = mp::spawn(open, Handle { id: 1, _local: PhantomData });
}

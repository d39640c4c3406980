//! A custom shared type in a manager (Python's `BaseManager.register`):
//!
//! ```python
//! class Inventory:
//!     def __init__(self): self.stock = {}
//!     def add(self, item, n): self.stock[item] = self.stock.get(item, 0) + n
//!     def take(self, item, n): ...
//!
//! class MyManager(BaseManager): pass
//! MyManager.register("Inventory", Inventory)
//!
//! with MyManager() as m:
//!     inv = m.Inventory()
//! ```
//!
//! In `mp` the methods a proxy may call are an `Op` enum and their answers a `Reply`: only
//! typed data crosses the wire, never code. The type is declared with `mp::managed!` (so the
//! manager's server process, this program started again, finds its code) and registered on
//! the server under a name; every process then gets a typed `ManagedProxy<Inventory>`.
//!
//! Run with `cargo run --release --example manager_custom`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The shared state: lives in the manager's server process.
#[derive(Default, Serialize, Deserialize)]
struct Inventory {
    stock: BTreeMap<String, u32>,
}

/// What a proxy may ask an `Inventory` to do.
#[derive(Serialize, Deserialize)]
enum InventoryOp {
    Add(String, u32),
    Take(String, u32),
}

/// The answers: the stock left, or why a take failed.
type InventoryReply = Result<u32, String>;

impl mp::Managed for Inventory {
    type Op = InventoryOp;
    type Reply = InventoryReply;

    fn apply(&mut self, op: InventoryOp) -> InventoryReply {
        match op {
            InventoryOp::Add(item, n) => {
                let have = self.stock.entry(item).or_default();
                *have += n;
                Ok(*have)
            }
            InventoryOp::Take(item, n) => match self.stock.get_mut(&item) {
                Some(have) if *have >= n => {
                    *have -= n;
                    Ok(*have)
                }
                _ => Err(format!("not enough {item}")),
            },
        }
    }
}
mp::managed!(Inventory);

/// A shop: takes one item of `what` per sale, until sold out.
#[mp::worker]
fn sell(inventory: mp::ManagedProxy<Inventory>, what: String) -> mp::Result<u32> {
    let mut sold = 0;
    while inventory.call(InventoryOp::Take(what.clone(), 1))?.is_ok() {
        sold += 1;
    }
    Ok(sold)
}

mp::main! {
    fn main() -> mp::Result<()> {
        let manager = mp::Manager::builder()
            .register::<Inventory>("Inventory")
            .start()?;
        let inventory = manager.managed("Inventory", Inventory::default())?;
        inventory.call(InventoryOp::Add("apples".into(), 100))?.map_err(mp::Error::InvalidArgument)?;
        inventory.call(InventoryOp::Add("pears".into(), 10))?.map_err(mp::Error::InvalidArgument)?;

        let shops: Vec<_> = (0..4)
            .map(|_| mp::spawn(sell, (inventory.clone(), "apples".to_string())))
            .collect::<mp::Result<_>>()?;
        let mut total = 0;
        for mut shop in shops {
            total += shop.join()??;
        }
        println!("sold {total} apples in 4 processes; none sold twice");
        assert_eq!(total, 100);

        let left = inventory.get()?.stock;
        println!("stock left: {left:?}");
        assert_eq!(left.get("apples"), Some(&0));
        assert_eq!(left.get("pears"), Some(&10));

        // A type the server did not register is a clear error, not a call into anything.
        let err = manager.managed("Warehouse", Inventory::default()).unwrap_err();
        println!("unregistered: {err}");
        Ok(())
    }
}

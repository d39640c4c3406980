//! Seed 4.3: sharing a list (and a dict) between processes with a `Manager`.
//!
//! Python:
//!
//! ```python
//! def worker(shared_list):
//!     shared_list.append(100)
//!
//! if __name__ == "__main__":
//!     with multiprocessing.Manager() as manager:
//!         shared_list = manager.list([1, 2, 3])
//!         p = multiprocessing.Process(target=worker, args=(shared_list,))
//!         p.start()
//!         p.join()
//!         print(shared_list)  # [1, 2, 3, 100]
//! ```
//!
//! The proxy is an ordinary worker argument. The manager's server process is shut down when
//! `manager` goes out of scope (Python's `with`), and dies with this process in any case.
//! Below the seed: Python's classic surprise (a value read from a proxy is a copy), and an
//! atomic read-modify-write from several processes.
//!
//! Run with `cargo run --release --example manager_list`.

#[mp::worker]
fn worker(shared_list: mp::ListProxy<i64>) -> mp::Result<()> {
    shared_list.append(100)?; // update the shared list
    Ok(())
}

#[mp::worker]
fn count_words(counts: mp::DictProxy<String, u64>, text: String) -> mp::Result<()> {
    for word in text.split_whitespace() {
        // Atomic on the server's side: no update is lost however many processes count.
        counts.update_with(&word.to_lowercase(), |n| Some(n.unwrap_or(0) + 1))?;
    }
    Ok(())
}

mp::main! {
    fn main() -> mp::Result<()> {
        let manager = mp::Manager::new()?;
        let shared_list = manager.list_from([1, 2, 3])?;
        let mut p = mp::spawn(worker, shared_list.clone())?;
        p.join()??;
        let items = shared_list.to_vec()?;
        println!("{items:?}"); // [1, 2, 3, 100]
        assert_eq!(items, [1, 2, 3, 100]);

        // A value read through a proxy is a copy: changing it changes nothing shared...
        let nested = manager.list_from([vec![1, 2]])?;
        let mut first = nested.get(0)?.expect("one item");
        first.push(3);
        assert_eq!(nested.get(0)?, Some(vec![1, 2]));
        // ...until it is written back (or changed in place with `update`).
        nested.set(0, first)?;
        nested.update(|items| items[0].push(4))?;
        println!("nested after set + update: {:?}", nested.to_vec()?);
        assert_eq!(nested.get(0)?, Some(vec![1, 2, 3, 4]));

        // Proxies are ordinary task arguments for a pool too.
        let counts = manager.dict::<String, u64>()?;
        let texts = ["the cat and the hat", "The end", "and the rest"];
        let pool = mp::Pool::new(mp::cpu_count())?;
        let tasks = texts.map(|t| (counts.clone(), t.to_string()));
        for done in pool.starmap(count_words, tasks)? {
            done?;
        }
        let mut items = counts.items()?;
        items.sort();
        println!("word counts: {items:?}");
        assert_eq!(counts.get(&"the".to_string())?, Some(4));
        Ok(())
    }
}

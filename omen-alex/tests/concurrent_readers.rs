//! `AlexMap` is `Send + Sync`: many threads read one map through `&self` at once, and a writer
//! behind an `RwLock` interleaves with readers without any reader seeing a key vanish.

use std::sync::RwLock;

use omen_alex::AlexMap;

#[test]
fn many_threads_read_one_map() {
    let map = AlexMap::from_sorted((0..400_000u64).map(|k| (k * 3, k))).expect("sorted input");
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let map = &map;
            scope.spawn(move || {
                for k in (thread..400_000).step_by(4) {
                    assert_eq!(map.get(k * 3), Some(&k));
                    assert_eq!(map.get(k * 3 + 1), None);
                }
                let keys: Vec<u64> = (0..1000)
                    .map(|i| (i * 397 + thread) % 400_000 * 3)
                    .collect();
                assert!(map.get_many(&keys).iter().all(Option::is_some));
                assert_eq!(map.range(thread * 3..).take(10).count(), 10);
            });
        }
    });
}

#[test]
fn readers_never_lose_keys_while_a_writer_inserts() {
    let lock = RwLock::new(AlexMap::<u64, u64>::new());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for batch in 0..200u64 {
                let mut map = lock.write().expect("lock not poisoned");
                for k in batch * 500..(batch + 1) * 500 {
                    map.insert(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), k);
                }
            }
        });
        for _ in 0..2 {
            scope.spawn(|| {
                let mut seen = 0;
                while seen < 100_000 {
                    let map = lock.read().expect("lock not poisoned");
                    let len = map.len() as u64;
                    assert!(len >= seen, "the map shrank");
                    // Every key inserted before this snapshot is visible in it.
                    for k in (0..len).step_by(97) {
                        assert_eq!(map.get(k.wrapping_mul(0x9E37_79B9_7F4A_7C15)), Some(&k));
                    }
                    seen = len;
                }
            });
        }
    });
    lock.read().expect("lock not poisoned").check_invariants();
}

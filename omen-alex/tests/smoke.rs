use omen_alex::AlexMap;
use std::collections::BTreeMap;

#[test]
fn smoke() {
    let mut map = AlexMap::<u64, u64>::from_sorted((0..100_000u64).map(|k| (k * 3, k))).unwrap();
    map.check_invariants();
    let mut model: BTreeMap<u64, u64> = (0..100_000u64).map(|k| (k * 3, k)).collect();
    let mut x = 12345u64;
    for _ in 0..200_000 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let k = (x >> 33) % 400_000;
        match x % 3 {
            0 => assert_eq!(map.insert(k, x), model.insert(k, x)),
            1 => assert_eq!(map.remove(k), model.remove(&k)),
            _ => assert_eq!(map.get(k), model.get(&k)),
        }
    }
    map.check_invariants();
    assert!(map.iter().map(|(k, v)| (k, *v)).eq(model.iter().map(|(k, v)| (*k, *v))));
    println!("{:?}", map.stats());
}

//! Ad-hoc probe used while tuning.
use omen_alex::AlexMap;
use std::time::Instant;
fn main() {
    let n: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let mut map = AlexMap::new();
    let t = Instant::now();
    for k in 0..n {
        map.insert(k, k);
        if k % 50_000 == 0 && k > 500_000 {
            println!("{k} {:?} {:?}", t.elapsed(), map.stats());
        }
    }
    println!("{:?}", t.elapsed());
}

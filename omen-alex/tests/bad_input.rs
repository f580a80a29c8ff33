//! Bad input gets a typed `AlexError` naming the first offending position; the map is left
//! as it was, and no input panics or builds a broken tree.

use omen_alex::{AlexConfig, AlexError, AlexMap};

#[test]
fn unsorted_bulk_load_names_the_first_offending_position() {
    let result = AlexMap::from_sorted([(1u64, ()), (5, ()), (3, ()), (2, ())]);
    assert!(
        matches!(result, Err(AlexError::Unsorted { position: 2, .. })),
        "{:?}",
        result.err()
    );
}

#[test]
fn duplicate_bulk_load_names_the_first_offending_position() {
    let result = AlexMap::from_sorted([(1i64, 'a'), (2, 'b'), (2, 'c')]);
    let error = result.err().expect("duplicate rejected");
    assert!(
        matches!(error, AlexError::Duplicate { position: 2, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("position 2"), "{error}");
}

#[test]
fn failed_bulk_load_leaves_the_map_unchanged() {
    let mut map = AlexMap::from_sorted((0..1000u64).map(|k| (k, k))).expect("sorted input");
    let result = map.bulk_load([(9u64, 9u64), (8, 8)]);
    assert!(matches!(
        result,
        Err(AlexError::Unsorted { position: 1, .. })
    ));
    assert_eq!(map.len(), 1000);
    assert_eq!(map.get(500), Some(&500));
    map.check_invariants();
}

#[test]
fn invalid_configurations_are_refused() {
    let mut config = AlexConfig::default();
    config.density_max = 1.5;
    assert!(matches!(
        AlexMap::<u64, ()>::with_config(config),
        Err(AlexError::InvalidConfig(_))
    ));
    let mut config = AlexConfig::default();
    config.fanout_max = 3;
    assert!(matches!(
        AlexMap::<u64, ()>::with_config(config),
        Err(AlexError::InvalidConfig(_))
    ));
}

#[test]
fn values_that_own_memory_are_dropped_exactly_once() {
    use std::rc::Rc;
    let token = Rc::new(());
    {
        let mut map = AlexMap::new();
        for k in 0..20_000u64 {
            map.insert(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), Rc::clone(&token));
        }
        for k in 0..10_000u64 {
            assert!(map.remove(k.wrapping_mul(0x9E37_79B9_7F4A_7C15)).is_some());
        }
        assert_eq!(Rc::strong_count(&token), 10_001);
    }
    assert_eq!(Rc::strong_count(&token), 1);
}

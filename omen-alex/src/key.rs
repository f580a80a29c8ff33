//! The [`Key`] trait: integer keys mapped to `u64` in an order-preserving way.

use core::fmt::Debug;

/// An integer key that ALEX can index.
///
/// Models work on the key's position in `u64` order ([`Key::to_ordered_u64`]), so signed keys
/// are shifted by flipping the sign bit; `a < b` must hold exactly when
/// `a.to_ordered_u64() < b.to_ordered_u64()`.
pub trait Key: Copy + Ord + Debug + Send + Sync + 'static {
    /// The smallest key of the type.
    const MIN: Self;
    /// The largest key of the type. Unused slots of a data node hold it as a sentinel, so this
    /// key takes a slower (still correct) lookup path.
    const MAX: Self;
    /// Maps the key to `u64`, preserving order.
    fn to_ordered_u64(self) -> u64;
}

impl Key for u64 {
    const MIN: Self = u64::MIN;
    const MAX: Self = u64::MAX;
    #[inline]
    fn to_ordered_u64(self) -> u64 {
        self
    }
}

impl Key for i64 {
    const MIN: Self = i64::MIN;
    const MAX: Self = i64::MAX;
    #[inline]
    fn to_ordered_u64(self) -> u64 {
        // Flipping the sign bit maps i64::MIN..=i64::MAX onto 0..=u64::MAX in order.
        self.cast_unsigned() ^ (1 << 63)
    }
}

impl Key for u32 {
    const MIN: Self = u32::MIN;
    const MAX: Self = u32::MAX;
    #[inline]
    fn to_ordered_u64(self) -> u64 {
        u64::from(self)
    }
}

impl Key for i32 {
    const MIN: Self = i32::MIN;
    const MAX: Self = i32::MAX;
    #[inline]
    fn to_ordered_u64(self) -> u64 {
        u64::from(self.cast_unsigned() ^ (1 << 31))
    }
}

#[cfg(test)]
mod tests {
    use super::Key;

    #[test]
    fn signed_keys_keep_their_order() {
        let keys = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
        for pair in keys.windows(2) {
            assert!(
                pair[0].to_ordered_u64() < pair[1].to_ordered_u64(),
                "{pair:?}"
            );
        }
        let keys = [i32::MIN, -1, 0, i32::MAX];
        for pair in keys.windows(2) {
            assert!(
                pair[0].to_ordered_u64() < pair[1].to_ordered_u64(),
                "{pair:?}"
            );
        }
    }
}

//! Occupancy bitmap of a gapped array: bit `s` is set exactly when slot `s` holds a key.

/// A fixed-length bitmap with searches for the next/previous set or clear bit.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bitmap {
    words: Box<[u64]>,
    len: usize,
}

impl Bitmap {
    pub fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)].into_boxed_slice(),
            len,
        }
    }

    #[inline(always)]
    pub fn get(&self, slot: usize) -> bool {
        debug_assert!(slot < self.len);
        self.words
            .get(slot >> 6)
            .is_some_and(|w| (w >> (slot & 63)) & 1 == 1)
    }

    #[inline]
    pub fn set(&mut self, slot: usize) {
        debug_assert!(slot < self.len);
        if let Some(w) = self.words.get_mut(slot >> 6) {
            *w |= 1 << (slot & 63);
        }
    }

    #[inline]
    pub fn clear(&mut self, slot: usize) {
        debug_assert!(slot < self.len);
        if let Some(w) = self.words.get_mut(slot >> 6) {
            *w &= !(1 << (slot & 63));
        }
    }

    /// Address of the word holding `slot`'s bit, for a prefetch hint.
    #[inline(always)]
    pub fn word_address(&self, slot: usize) -> *const u64 {
        self.words.as_ptr().wrapping_add(slot >> 6)
    }

    pub fn clear_all(&mut self) {
        self.words.fill(0);
    }

    pub fn count_ones(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn heap_bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// The first set bit at or after `from`.
    #[inline]
    pub fn next_set(&self, from: usize) -> Option<usize> {
        self.next_matching(from, false)
    }

    /// The first clear bit at or after `from`.
    #[inline]
    pub fn next_clear(&self, from: usize) -> Option<usize> {
        self.next_matching(from, true)
    }

    /// The last set bit before `before`.
    #[inline]
    pub fn prev_set(&self, before: usize) -> Option<usize> {
        self.prev_matching(before, false)
    }

    /// The last clear bit before `before`.
    #[inline]
    pub fn prev_clear(&self, before: usize) -> Option<usize> {
        self.prev_matching(before, true)
    }

    #[inline]
    fn next_matching(&self, from: usize, invert: bool) -> Option<usize> {
        if from >= self.len {
            return None;
        }
        let mut index = from >> 6;
        let mut bits = self.word(index, invert) & (!0u64 << (from & 63));
        loop {
            if bits != 0 {
                let slot = (index << 6) + bits.trailing_zeros() as usize;
                // Clear bits past `len` in the last word are not slots.
                return (slot < self.len).then_some(slot);
            }
            index += 1;
            if index >= self.words.len() {
                return None;
            }
            bits = self.word(index, invert);
        }
    }

    #[inline]
    fn prev_matching(&self, before: usize, invert: bool) -> Option<usize> {
        let before = before.min(self.len);
        if before == 0 {
            return None;
        }
        let last = before - 1;
        let mut index = last >> 6;
        let shift = 63 - (last & 63);
        let mut bits = (self.word(index, invert) << shift) >> shift;
        loop {
            if bits != 0 {
                return Some((index << 6) + 63 - bits.leading_zeros() as usize);
            }
            if index == 0 {
                return None;
            }
            index -= 1;
            bits = self.word(index, invert);
        }
    }

    #[inline(always)]
    fn word(&self, index: usize, invert: bool) -> u64 {
        let word = self.words.get(index).copied().unwrap_or(0);
        if invert { !word } else { word }
    }
}

#[cfg(test)]
mod tests {
    use super::Bitmap;

    #[test]
    fn searches_agree_with_a_naive_scan() {
        for len in [1usize, 5, 63, 64, 65, 130, 200] {
            let mut bitmap = Bitmap::new(len);
            let set: Vec<bool> = (0..len).map(|i| (i * 7 + len) % 3 == 0).collect();
            for (i, &on) in set.iter().enumerate() {
                if on {
                    bitmap.set(i);
                }
            }
            for from in 0..=len + 1 {
                let naive_next = |want: bool| (from..len).find(|&i| set[i] == want);
                let naive_prev = |want: bool| (0..from.min(len)).rev().find(|&i| set[i] == want);
                assert_eq!(
                    bitmap.next_set(from),
                    naive_next(true),
                    "len {len} from {from}"
                );
                assert_eq!(
                    bitmap.next_clear(from),
                    naive_next(false),
                    "len {len} from {from}"
                );
                assert_eq!(
                    bitmap.prev_set(from),
                    naive_prev(true),
                    "len {len} from {from}"
                );
                assert_eq!(
                    bitmap.prev_clear(from),
                    naive_prev(false),
                    "len {len} from {from}"
                );
            }
            assert_eq!(bitmap.count_ones(), set.iter().filter(|b| **b).count());
        }
    }
}

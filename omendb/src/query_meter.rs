//! What a query holds, counted at the allocator: every byte a query's threads allocate and
//! free, whether or not an operator reserved it in the query's pool ([`crate::query_memory`]).
//!
//! The pool counts what DataFusion's operators reserve (sorts, aggregations, joins), but
//! not the batches between them: the batch coalescers inside `RepartitionExec` and
//! `FilterExec` gather up to 8,192 rows whatever their size, so a recursive CTE of 1 MB
//! values held 7.5 GB with a 256 MB pool. A meter bounds the resource itself:
//!
//! - [`MeteredAllocator`], the binary's global allocator, charges each allocation and each
//!   free to the meter of the thread's current query;
//! - a thread's current query is the one whose statement it runs ([`crate::Interrupt::run`],
//!   for its duration) or whose operator it last polled (`InterruptibleExec`, which leaves it
//!   set, so that the work an operator does after its input returned, such as coalescing on
//!   a SQL worker, is charged too);
//! - every operator checks its query's meter at each batch and fails the query with
//!   `ResourcesExhausted` (SQLSTATE `53200`) past [`MeterLimits`].
//!
//! Invariants: a meter's count is what was allocated minus what was freed while it was its
//! thread's current one; [`charged_total`] is the sum of all live meters (and of frees or
//! allocations charged to a meter after its query ended, until its slot is taken again);
//! the allocator itself never allocates, locks or panics. Without [`MeteredAllocator`]
//! installed (a library user's choice) every meter reads 0 and no query fails on it.

#![expect(
    unsafe_code,
    reason = "implementing GlobalAlloc is unsafe by definition"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicIsize, AtomicU32, AtomicUsize, Ordering};

/// Slots for meters; more queries at once than this share the last one.
const SLOTS: usize = 1 << 16;
/// Slot 0 charges nothing (a thread outside any query).
const NO_SLOT: u32 = 0;
/// The slot shared by the queries beyond `SLOTS - 2` at once.
const SHARED_SLOT: u32 = (SLOTS - 1) as u32;

static METERS: [AtomicIsize; SLOTS] = [const { AtomicIsize::new(0) }; SLOTS];
/// The sum of every slot's count.
static TOTAL: AtomicIsize = AtomicIsize::new(0);
/// The next slot never handed out yet.
static NEXT_SLOT: AtomicU32 = AtomicU32::new(1);
/// Slots handed back.
static FREE_SLOTS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

thread_local! {
    /// The slot this thread's allocations are charged to. `const` and without a destructor,
    /// so the allocator may read it at any time, thread exit included.
    static CURRENT: Cell<u32> = const { Cell::new(NO_SLOT) };
}

/// The system allocator, charging each allocation to the current query's meter.
pub struct MeteredAllocator;

fn charge(bytes: isize) {
    let slot = CURRENT.try_with(Cell::get).unwrap_or(NO_SLOT);
    if slot != NO_SLOT {
        METERS[slot as usize].fetch_add(bytes, Ordering::Relaxed);
        TOTAL.fetch_add(bytes, Ordering::Relaxed);
    }
}

fn signed(bytes: usize) -> isize {
    isize::try_from(bytes).unwrap_or(isize::MAX)
}

// SAFETY: every method hands the call to `System` unchanged and returns its answer; the
// bookkeeping around it only adds to atomics (no allocation, no lock, no panic), so
// `System`'s guarantees are kept. Exercised by every test of the `omendb` binary, which
// installs it, and by the unit test below.
unsafe impl GlobalAlloc for MeteredAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `layout` is passed on to `System`.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            charge(signed(layout.size()));
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            charge(signed(layout.size()));
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` came from `System` with `layout` (every method hands out what
        // `System` gave).
        unsafe { System.dealloc(pointer, layout) };
        charge(-signed(layout.size()));
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `dealloc` for `pointer` and `layout`; `new_size` per the caller.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            charge(signed(new_size) - signed(layout.size()));
        }
        moved
    }
}

/// One query's meter: a slot of its own while it lives.
#[derive(Debug)]
pub(crate) struct Meter {
    slot: u32,
    /// What the query may hold, and all queries together (no limit until planned).
    query_limit: AtomicUsize,
    total_limit: AtomicUsize,
}

impl Meter {
    pub(crate) fn new() -> Self {
        let reused = FREE_SLOTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let slot = reused.unwrap_or_else(|| {
            let next = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
            if next >= SHARED_SLOT {
                NEXT_SLOT.store(SHARED_SLOT, Ordering::Relaxed);
                SHARED_SLOT
            } else {
                next
            }
        });
        if slot != SHARED_SLOT {
            // Charges that came after the slot's last query ended belong to nobody now.
            reset(slot);
        }
        Self {
            slot,
            query_limit: AtomicUsize::new(usize::MAX),
            total_limit: AtomicUsize::new(usize::MAX),
        }
    }

    /// Holds the query to `limits` from now on.
    pub(crate) fn limit(&self, limits: MeterLimits) {
        self.query_limit.store(limits.query, Ordering::Relaxed);
        self.total_limit.store(limits.total, Ordering::Relaxed);
    }

    /// Why the query must stop, if it holds more than its limit or all queries more than
    /// theirs.
    pub(crate) fn exceeded(&self) -> Option<String> {
        self.exceeded_with(0)
    }

    /// Why the query must not allocate `more` bytes, if they would take it or all queries
    /// past their limit: a function checks before it builds a large result.
    pub(crate) fn exceeded_with(&self, more: usize) -> Option<String> {
        let held = self.held().saturating_add(more);
        let query = self.query_limit.load(Ordering::Relaxed);
        if held > query {
            return Some(format!(
                "the query would hold {} MB, more than the {} MB one query may hold (twice \
                 query_memory_mb): it was stopped; reduce what it keeps at once (fewer or \
                 smaller rows or columns, a LIMIT) or raise query_memory_mb",
                held >> 20,
                query >> 20
            ));
        }
        let all = charged_total().saturating_add(more);
        let total = self.total_limit.load(Ordering::Relaxed);
        if all > total {
            return Some(format!(
                "running queries would hold {} MB together, more than the {} MB they may \
                 hold (twice total_query_memory_mb): this query was stopped; retry it when \
                 others have ended",
                all >> 20,
                total >> 20
            ));
        }
        None
    }

    /// The bytes this query's threads hold now (0 without [`MeteredAllocator`]).
    pub(crate) fn held(&self) -> usize {
        usize::try_from(METERS[self.slot as usize].load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Charges this thread's allocations to this meter from now on (see the module docs).
    pub(crate) fn make_current(&self) {
        let _ = CURRENT.try_with(|current| current.set(self.slot));
    }

    /// Charges this thread's allocations to this meter until the guard drops, then to what
    /// they were charged to before.
    pub(crate) fn enter(&self) -> Entered {
        let previous = CURRENT
            .try_with(|c| c.replace(self.slot))
            .unwrap_or(NO_SLOT);
        Entered { previous }
    }
}

impl Default for Meter {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if self.slot == SHARED_SLOT {
            return;
        }
        reset(self.slot);
        FREE_SLOTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(self.slot);
    }
}

fn reset(slot: u32) {
    let left = METERS[slot as usize].swap(0, Ordering::Relaxed);
    TOTAL.fetch_sub(left, Ordering::Relaxed);
}

/// The guard of [`Meter::enter`].
#[must_use]
pub(crate) struct Entered {
    previous: u32,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| c.set(self.previous));
    }
}

/// What all queries hold together now.
pub(crate) fn charged_total() -> usize {
    usize::try_from(TOTAL.load(Ordering::Relaxed)).unwrap_or(0)
}

/// The most a query, and all queries together, may hold by their meters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MeterLimits {
    pub(crate) query: usize,
    pub(crate) total: usize,
}

impl MeterLimits {
    /// Twice the pools' limits: the pools count what operators reserve, the meters also the
    /// batches between them and the allocator's rounding, so a query that keeps to its pool
    /// keeps well within its meter.
    pub(crate) fn from_pools(query_pool: usize, total_pool: usize) -> Self {
        Self {
            query: query_pool.saturating_mul(2),
            total: total_pool.saturating_mul(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Charges as the allocator does, without installing it in the test binary.
    fn allocate(bytes: isize) {
        charge(bytes);
    }

    #[test]
    fn a_meter_counts_what_its_threads_hold_and_gives_its_slot_back_empty() {
        let meter = Meter::new();
        let other = Meter::new();
        assert_ne!(meter.slot, other.slot);
        {
            let _in = meter.enter();
            allocate(1000);
            allocate(-400);
            {
                let _nested = other.enter();
                allocate(50);
            }
            allocate(10);
        }
        allocate(1 << 20); // outside both: nobody's
        assert_eq!((meter.held(), other.held()), (610, 50));
        meter.limit(MeterLimits {
            query: 600,
            total: usize::MAX,
        });
        assert!(
            meter
                .exceeded()
                .is_some_and(|m| m.contains("would hold 0 MB"))
        );
        assert!(meter.exceeded_with(0).is_some());
        assert!(other.exceeded().is_none(), "no limit until planned");
        other.limit(MeterLimits {
            query: 100,
            total: usize::MAX,
        });
        assert!(other.exceeded().is_none());
        assert!(
            other.exceeded_with(51).is_some(),
            "checked before it allocates"
        );
        let slot = meter.slot as usize;
        drop(meter);
        assert_eq!(METERS[slot].load(Ordering::Relaxed), 0, "handed back empty");
        // A worker that last polled `other` keeps charging it (the module docs).
        other.make_current();
        allocate(7);
        CURRENT.with(|c| c.set(NO_SLOT));
        assert_eq!(other.held(), 57);
    }

    #[test]
    fn the_installed_allocator_hands_out_what_the_system_does() {
        let layout = Layout::from_size_align(64, 16).expect("layout");
        let meter = Meter::new();
        let _in = meter.enter();
        // SAFETY: a non-zero layout; the pointer is written within it, grown with its
        // layout, and freed once with the grown layout.
        unsafe {
            let pointer = MeteredAllocator.alloc_zeroed(layout);
            assert!(!pointer.is_null());
            assert_eq!(*pointer.add(63), 0);
            assert_eq!(meter.held(), 64);
            let grown = MeteredAllocator.realloc(pointer, layout, 256);
            assert!(!grown.is_null());
            *grown.add(255) = 1;
            assert_eq!(meter.held(), 256);
            let grown_layout = Layout::from_size_align(256, 16).expect("layout");
            MeteredAllocator.dealloc(grown, grown_layout);
        }
        assert_eq!(meter.held(), 0);
    }
}

//! Errors of the index: all are caller mistakes; internal invariant breaks are asserts.

/// What can go wrong when building or configuring an [`AlexMap`](crate::AlexMap).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AlexError {
    /// Bulk-load input must be sorted by key; `position` is the first pair out of order.
    #[error(
        "bulk load input is not sorted: the key at position {position} ({key}) is smaller than the key before it; sort the pairs by key first"
    )]
    Unsorted {
        /// Index of the offending pair in the input.
        position: usize,
        /// The offending key, formatted.
        key: String,
    },
    /// Bulk-load input must not repeat a key; `position` is the second occurrence.
    #[error("bulk load input repeats the key {key} at position {position}; keep one value per key")]
    Duplicate {
        /// Index of the repeated pair in the input.
        position: usize,
        /// The repeated key, formatted.
        key: String,
    },
    /// The configuration is unusable.
    #[error("invalid ALEX configuration: {0}")]
    InvalidConfig(String),
}

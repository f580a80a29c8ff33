//! Helpers shared by the facade's integration tests.

use std::path::PathBuf;

/// A fresh directory path under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

#[path = "../../../tests/cli_support/watchdog.rs"]
mod watchdog;

impl TempDir {
    pub fn new(name: &str) -> Self {
        watchdog::watchdog();
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "omendb-test-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Query results as text, a row a vector: `NULL` for nulls, Arrow's display otherwise.
#[allow(dead_code)]
pub fn rows_text(batches: &[arrow::record_batch::RecordBatch]) -> Vec<Vec<String>> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    rows
}

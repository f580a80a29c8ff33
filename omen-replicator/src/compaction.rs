//! Compaction: merges a run of small files of a table into one, keeping only the latest
//! version of each key, and swaps it in through the manifest. Deletes are dropped only when
//! the run starts at the table's oldest file (nothing older is left for them to shadow).
//!
//! The runs are size-tiered (the policy of size-tiered LSM compaction, applied to a table's
//! files, which stay in LSN order): a run of consecutive small files is merged only when no
//! file in it holds more than a `1 / compaction_trigger_files` share of its rows, or, once
//! the run reaches `compaction_target_rows`, more than half. So every row that is rewritten
//! lands in a file at least twice (usually `compaction_trigger_files` times) the size of the
//! one it left, and is rewritten at most about `log2(target / smallest file)` times, instead
//! of once per small file merged into a growing one. A big file is never rewritten to absorb
//! one small file. As before, nothing is compacted while a table has fewer than
//! `compaction_trigger_files` small files (so `usize::MAX` disables compaction). Once a table
//! has been quiet for a second (no flush, no compaction), its small files are merged as before
//! tiering, up to the target: an idle table ends in few files. Files of very different sizes can leave runs that never balance; past four
//! times `compaction_trigger_files` small files, the cheapest adjacent pair is merged, so the
//! number of small files stays bounded too.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::Result;
use crate::manifest::Manifest;
use crate::replicator::SharedView;
use crate::storage;

/// The first run of consecutive files worth merging, by their row counts (see the module
/// documentation). Files of `target` rows or more are merged only to absorb a small file that
/// has no small neighbour, past the bound on small files; a run stops growing once it holds
/// `target` rows, so a merged file has fewer than `2 * target` rows, or `3 * target` in that
/// case.
pub(crate) fn pick_run(rows: &[u64], target: u64, trigger: usize) -> Option<Range<usize>> {
    let trigger = trigger.max(2) as u64;
    let target = target.max(1);
    // As before tiering: no compaction below `trigger` small files (`usize::MAX` disables it).
    let small = rows.iter().filter(|&&r| r < target).count() as u64;
    if small < trigger {
        return None;
    }
    for start in 0..rows.len() {
        let (mut sum, mut max) = (0u64, 0u64);
        for (end, &file) in rows.iter().enumerate().skip(start) {
            if file >= target {
                break;
            }
            sum += file;
            max = max.max(file);
            let files = end + 1 - start;
            let balanced = sum >= trigger.saturating_mul(max);
            let full = sum >= target && sum >= max.saturating_mul(2);
            if files >= 2 && (balanced || full) {
                return Some(start..end + 1);
            }
            if sum >= target {
                break;
            }
        }
    }
    // Files of very different sizes can interleave (a backlog flushes big files between the
    // small ones of a steady rate) and leave runs that never balance. Bound their number: past
    // `SMALL_FILES_PER_TRIGGER * trigger` small files, merge the adjacent pair with a small
    // file that costs least to rewrite (a small file between two full ones joins one of them).
    if small > SMALL_FILES_PER_TRIGGER.saturating_mul(trigger) {
        return rows
            .windows(2)
            .enumerate()
            .filter(|(_, pair)| pair[0] < target || pair[1] < target)
            .min_by_key(|(_, pair)| pair[0].saturating_add(pair[1]))
            .map(|(i, _)| i..i + 2);
    }
    None
}

/// See [`pick_run`]: the bound on small files, in multiples of `compaction_trigger_files`.
const SMALL_FILES_PER_TRIGGER: u64 = 4;

/// The first run of at least two consecutive small files, up to `target` rows: what a quiet
/// table settles into (all its small files in one, when they add up to less than `target`).
pub(crate) fn settle_run(rows: &[u64], target: u64, trigger: usize) -> Option<Range<usize>> {
    let small = rows.iter().filter(|&&r| r < target).count();
    if small < trigger.max(2) {
        return None;
    }
    let start = rows.iter().position(|&r| r < target)?;
    let (mut end, mut sum) = (start, 0u64);
    while end < rows.len() && rows[end] < target && sum < target {
        sum += rows[end];
        end += 1;
    }
    (end - start >= 2).then_some(start..end)
}

/// How eager compaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Urgency {
    /// The writer has a backlog to flush first: only a table past the bound on small files.
    Busy,
    /// The size-tiered runs of [`pick_run`].
    Normal,
    /// The table has been quiet for a while: also merge what the tiers leave, as
    /// [`settle_run`] picks. Rare by construction, so its rewrites do not add up.
    Quiet,
}

/// Compacts the first table that has a run worth merging; at most one run per call.
pub(crate) fn maybe_compact(view: SharedView<'_>, urgency: Urgency) -> Result<()> {
    let target = view.options.compaction_target_rows as u64;
    let trigger = view.options.compaction_trigger_files;
    for (name, table) in &view.manifest.tables {
        let rows: Vec<u64> = table.files.iter().map(|f| f.rows).collect();
        let small = rows.iter().filter(|&&r| r < target).count() as u64;
        let bound = SMALL_FILES_PER_TRIGGER.saturating_mul(trigger.max(2) as u64);
        if urgency == Urgency::Busy && small <= bound {
            continue;
        }
        let run = pick_run(&rows, target, trigger).or_else(|| match urgency {
            Urgency::Quiet => settle_run(&rows, target, trigger),
            _ => None,
        });
        let Some(Range { start, end }) = run else {
            continue;
        };
        let stored = Arc::new(table.schema.stored_arrow_schema());
        let mut batches = Vec::new();
        for file in &table.files[start..end] {
            let path = Manifest::file_path(view.root, table, file);
            batches.extend(storage::read_file(&path, file, &stored)?);
        }
        // Read after the run was chosen: a transaction that pins a snapshot later began after
        // every version in the run was applied, so it needs none of those dropped.
        let pin = view
            .options
            .snapshot_pin
            .load(std::sync::atomic::Ordering::SeqCst);
        let merged = storage::resolve_from(&batches, &stored, table.schema.key, pin, start > 0)?;
        // Exact from the pin on (or from its newest version when nothing is pinned), and no
        // earlier than any file it merged.
        let inputs_from = table.files[start..end]
            .iter()
            .map(|f| f.complete_from.min(f.max_lsn))
            .max()
            .unwrap_or(0);
        let run_max = table.files[start..end]
            .iter()
            .map(|f| f.max_lsn)
            .max()
            .unwrap_or(0);
        let mut manifest = (*view.manifest).clone();
        let file_id = manifest.next_file_id;
        manifest.next_file_id += 1;
        let obsolete: Vec<PathBuf> = table.files[start..end]
            .iter()
            .map(|f| Manifest::file_path(view.root, table, f))
            .collect();
        let replacement = if merged.num_rows() == 0 {
            None
        } else {
            let file_name = format!("{file_id:012}.parquet");
            let path = view.root.join(&table.dir).join(&file_name);
            let mut meta = storage::write_file(&path, &file_name, &merged, table.schema.key)?;
            meta.complete_from = pin.min(run_max).max(inputs_from);
            Some(meta)
        };
        let Some(entry) = manifest.tables.get_mut(name) else {
            continue;
        };
        entry.files.splice(start..end, replacement);
        return (view.commit)(manifest, obsolete);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{pick_run, settle_run};

    /// Appends files of the given sizes one by one, compacting after each as the writer does
    /// (every run `pick_run` offers, until none), and returns the files, the rows rewritten
    /// and the most times one appended row was rewritten.
    fn simulate(sizes: impl IntoIterator<Item = u64>, target: u64, trigger: usize) -> Sim {
        // Each file: (rows, most rewrites of any row in it).
        let mut files: Vec<(u64, u32)> = Vec::new();
        let (mut appended, mut rewritten) = (0u64, 0u64);
        for size in sizes {
            files.push((size, 0));
            appended += size;
            loop {
                let rows: Vec<u64> = files.iter().map(|f| f.0).collect();
                let Some(run) = pick_run(&rows, target, trigger) else {
                    break;
                };
                assert!(run.len() >= 2, "a run merges at least two files");
                let merged: u64 = rows[run.clone()].iter().sum();
                assert!(
                    merged < 2 * target,
                    "a merged file stays under twice the target"
                );
                let depth = files[run.clone()].iter().map(|f| f.1).max().unwrap_or(0) + 1;
                rewritten += merged;
                files.splice(run, [(merged, depth)]);
            }
        }
        let total: u64 = files.iter().map(|f| f.0).sum();
        assert_eq!(
            total, appended,
            "compaction keeps every row (no updates here)"
        );
        Sim {
            small: files.iter().filter(|f| f.0 < target).count(),
            files: files.len(),
            amplification: rewritten as f64 / appended as f64,
            max_rewrites: files.iter().map(|f| f.1).max().unwrap_or(0),
        }
    }

    struct Sim {
        files: usize,
        small: usize,
        amplification: f64,
        max_rewrites: u32,
    }

    #[test]
    fn steady_small_flushes_are_rewritten_a_logarithmic_number_of_times() {
        // 1000-row flushes (a steady rate), target 131072, trigger 8: a row moves
        // 1k -> 8k -> 64k -> 128k+, three rewrites at most.
        let sim = simulate(std::iter::repeat_n(1000, 5000), 131_072, 8);
        assert!(sim.max_rewrites <= 3, "max rewrites {}", sim.max_rewrites);
        assert!(
            sim.amplification <= 3.0,
            "amplification {}",
            sim.amplification
        );
        // Small files left: fewer than `trigger` per tier, three tiers below the target.
        assert!(sim.small <= 3 * 8, "{} small files", sim.small);
        assert!(
            sim.files <= 5000 * 1000 / 131_072 + 3 * 8,
            "{} files",
            sim.files
        );
    }

    #[test]
    fn rewrites_stay_bounded_for_any_flush_sizes() {
        // Sizes vary (backlogs between steady stretches): few rewrites per row on average,
        // and the small files stay bounded.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let sizes = std::iter::repeat_with(move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            match seed % 10 {
                0 => 50_000 + seed % 90_000,
                1..=3 => 1 + seed % 5000,
                _ => 900 + seed % 300,
            }
        })
        .take(3000);
        let target = 131_072;
        let sim = simulate(sizes, target, 8);
        eprintln!(
            "{} files, {} small, amplification {:.2}, max rewrites {}",
            sim.files, sim.small, sim.amplification, sim.max_rewrites
        );
        // Adversarial: a tenth of the flushes are 50k-140k rows and split the small ones
        // into runs that never balance: about five rewrites per row.
        assert!(
            sim.amplification <= 5.5,
            "amplification {}",
            sim.amplification
        );
        assert!(sim.small <= 4 * 8, "{} small files", sim.small);
    }

    #[test]
    fn full_files_are_rewritten_only_to_bound_small_files() {
        let rows = [131_072, 131_072, 200_000, 131_072];
        assert_eq!(pick_run(&rows, 131_072, 8), None);
        // A big small file does not absorb one tiny one.
        assert_eq!(pick_run(&[100_000, 10], 131_072, 8), None);
        // Eight similar ones merge; a straggler among them comes along.
        assert_eq!(
            pick_run(
                &[9, 1000, 1000, 10, 1000, 1000, 1000, 1000, 1000, 1000],
                131_072,
                8
            ),
            Some(0..10)
        );
        // Two halves of a file merge into a full one (once the table has `trigger` small files).
        assert_eq!(pick_run(&[70_000, 70_000], 131_072, 2), Some(0..2));
        assert_eq!(pick_run(&[70_000, 70_000], 131_072, 8), None);
        // A quiet table settles: the first run of small files, up to the target.
        assert_eq!(pick_run(&[800, 300, 100], 131_072, 2), None);
        assert_eq!(settle_run(&[800, 300, 100], 131_072, 2), Some(0..3));
        assert_eq!(settle_run(&[200_000, 800, 300], 131_072, 2), Some(1..3));
        assert_eq!(settle_run(&[800, 200_000, 300], 131_072, 2), None);
        // `usize::MAX` disables compaction.
        assert_eq!(pick_run(&[10; 100], 131_072, usize::MAX), None);
    }
}

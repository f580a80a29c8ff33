//! Which records of the log count: every record outside a transaction group, and the parts
//! of a group that ended in `commit` (see [`crate::change`] for the format).
//!
//! A group's outcome is in its last record, after its parts, so a reader that meets a part
//! reads ahead (a second reader, one record at a time: bounded memory) to the group's end.
//! A group is written under the writer's lock, so the end follows its parts directly; a
//! group without an end is the tail of a log cut by a crash, which the database ends with
//! `abort` when it opens ([`GroupOutcome::Unfinished`]).

use omen_wal::{Lsn, Wal, WalReader};

use crate::change::{GroupMarker, group_marker};
use crate::error::{ReplicatorError, Result};

/// How a group ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupOutcome {
    /// Its parts count; the `commit` record is at this LSN.
    Committed(u64),
    /// Its parts do not count; the `abort` record is at this LSN.
    Aborted(u64),
    /// The log ends inside it (only at the tail of a log cut by a crash): nothing counts,
    /// and the last part is at this LSN.
    Unfinished(u64),
}

impl GroupOutcome {
    /// Whether the group's parts count.
    pub fn committed(self) -> bool {
        matches!(self, Self::Committed(_))
    }

    /// The LSN of the group's last record.
    pub fn last_lsn(self) -> u64 {
        match self {
            Self::Committed(lsn) | Self::Aborted(lsn) | Self::Unfinished(lsn) => lsn,
        }
    }
}

/// Follows the groups of a log read in order: tells whether each record's rows count.
#[derive(Debug, Default)]
pub struct GroupFilter {
    /// The group being read: its first LSN and outcome.
    current: Option<(u64, GroupOutcome)>,
}

impl GroupFilter {
    /// A filter that has seen no record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the rows of the record at `lsn` with `payload` count. `next` reads the record
    /// after the one it was last given, from a reader started at the first part of a group:
    /// `Ok(None)` means the log ends there (see [`next_now`] and [`GroupFilter::counts`]).
    pub fn counts_with(
        &mut self,
        lsn: u64,
        payload: &[u8],
        mut next: impl FnMut(&mut WalReader) -> Result<Option<omen_wal::Record>>,
        wal: &Wal,
    ) -> Result<bool> {
        match group_marker(payload) {
            None => {
                self.current = None;
                Ok(true)
            }
            Some(GroupMarker::Commit(_) | GroupMarker::Abort(_)) => {
                // The end record holds no rows.
                self.current = None;
                Ok(false)
            }
            Some(GroupMarker::Part) => {
                if let Some((first, outcome)) = self.current
                    && first <= lsn
                    && lsn <= outcome.last_lsn()
                {
                    return Ok(outcome.committed());
                }
                let outcome = outcome_from(wal, lsn, &mut next)?;
                self.current = Some((lsn, outcome));
                Ok(outcome.committed())
            }
        }
    }

    /// The first LSN of the group the log ends inside, if it does (a crash cut it short).
    pub fn unfinished(&self) -> Option<u64> {
        match self.current {
            Some((first, GroupOutcome::Unfinished(_))) => Some(first),
            _ => None,
        }
    }

    /// [`GroupFilter::counts_with`] over a log that is not written meanwhile (replay,
    /// repair): the read-ahead stops at the end of the written records.
    pub fn counts(&mut self, wal: &Wal, lsn: u64, payload: &[u8]) -> Result<bool> {
        self.counts_with(lsn, payload, next_now, wal)
    }
}

/// The next written record, `None` at the end of the log.
pub fn next_now(reader: &mut WalReader) -> Result<Option<omen_wal::Record>> {
    Ok(reader.next_record()?)
}

/// The outcome of the group that holds the part at `first` (its first part, or a later one
/// where the reader began).
fn outcome_from(
    wal: &Wal,
    first: u64,
    next: &mut impl FnMut(&mut WalReader) -> Result<Option<omen_wal::Record>>,
) -> Result<GroupOutcome> {
    let mut reader = wal.reader(Lsn(first))?;
    let mut last = first;
    while let Some(record) = next(&mut reader)? {
        let lsn = record.lsn.0;
        match group_marker(&record.payload) {
            Some(GroupMarker::Part) => last = lsn,
            // A reader may begin inside a group (the replicator resumes at its checkpoint),
            // so the group may have begun before `first`.
            Some(GroupMarker::Commit(start)) if start <= first => {
                return Ok(GroupOutcome::Committed(lsn));
            }
            Some(GroupMarker::Abort(start)) if start <= first => {
                return Ok(GroupOutcome::Aborted(lsn));
            }
            _ => {
                return Err(ReplicatorError::BadGroup {
                    lsn,
                    reason: format!(
                        "the transaction group that holds LSN {first} is followed by a \
                         record that does not end it"
                    ),
                });
            }
        }
    }
    Ok(GroupOutcome::Unfinished(last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{ChangeEncoder, Value, group_end};
    use omen_wal::WalOptions;

    fn part() -> Vec<u8> {
        let mut part = ChangeEncoder::part();
        part.upsert("t", &[Value::Int64(1)]);
        part.finish()
    }

    fn whole() -> Vec<u8> {
        let mut record = ChangeEncoder::new();
        record.delete("t", 1);
        record.finish()
    }

    /// Which records count, read from `from` to the end.
    fn counted(wal: &Wal, from: u64) -> Vec<u64> {
        let mut filter = GroupFilter::new();
        let mut out = Vec::new();
        for record in wal.reader(Lsn(from)).expect("reader") {
            let record = record.expect("record");
            if filter
                .counts(wal, record.lsn.0, &record.payload)
                .expect("counts")
            {
                out.push(record.lsn.0);
            }
        }
        out
    }

    /// Committed parts count, aborted and unfinished ones do not, wherever the reader begins
    /// (a reader that resumes inside a group included).
    #[test]
    fn only_the_parts_of_committed_groups_count_from_any_start() {
        let dir = std::env::temp_dir().join(format!("omen-group-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let wal = Wal::open(&dir, WalOptions::default()).expect("wal");
        let records = [
            whole(),             // 1
            part(),              // 2
            part(),              // 3
            part(),              // 4
            group_end(2, true),  // 5
            whole(),             // 6
            part(),              // 7
            part(),              // 8
            group_end(7, false), // 9
            whole(),             // 10
            part(),              // 11: the log ends inside its group
        ];
        for record in &records {
            wal.append(record).expect("append");
        }
        assert_eq!(counted(&wal, 1), [1, 2, 3, 4, 6, 10]);
        assert_eq!(counted(&wal, 3), [3, 4, 6, 10]);
        assert_eq!(counted(&wal, 8), [10]);
        let mut filter = GroupFilter::new();
        for record in wal.reader(Lsn(1)).expect("reader") {
            let record = record.expect("record");
            filter
                .counts(&wal, record.lsn.0, &record.payload)
                .expect("counts");
        }
        assert_eq!(filter.unfinished(), Some(11));
        // A part followed by a record that does not end its group is an error.
        wal.append(&whole()).expect("append");
        let mut filter = GroupFilter::new();
        assert!(filter.counts(&wal, 11, &part()).is_err());
        drop(wal);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Recovery on open: validate every segment, classify damage as a torn tail or corruption in
//! the middle, and repair or refuse according to the [`RecoveryMode`].
//!
//! A torn tail is damage in the last segment after which nothing valid follows: a partial
//! last record, zeroes, or an atomic group without its last record. It is what a crash
//! mid-write leaves, it holds nothing that was acknowledged as durable, and it is cut off.
//! Anything else (a bad checksum with valid records after it, a gap in the LSNs, a damaged
//! segment that is not the last) is corruption: acknowledged records may sit behind it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Lsn;
use crate::error::{Result, WalError};
use crate::format::{
    HeaderError, SEGMENT_HEADER_LEN, ScanStop, decode_segment_header, find_frame_after,
    scan_segment,
};
use crate::fs::{WalFile, WalFs, read_all};
use crate::segment::{SegmentMeta, create_segment, parse_segment_name};

/// What recovery does with damage, named after RocksDB's `WALRecoveryMode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Cut off a torn tail (what a crash mid-write leaves); refuse to open on corruption in
    /// the middle of the log, reporting [`WalError::Corruption`]. The default.
    #[default]
    TolerateCorruptedTail,
    /// Refuse to open on any damage, a torn tail included. For logs that are always closed
    /// cleanly, or to inspect a tail before anything is cut.
    AbsoluteConsistency,
    /// Keep the log up to the first damage wherever it is, and set the rest aside: the
    /// damaged segment is cut there and later segments are renamed to `*.wal.corrupt`.
    /// Opens a consistent prefix of the log, losing the records after the damage.
    PointInTime,
}

/// The damage recovery cut off at the tail of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailTruncation {
    /// The segment that was cut.
    pub segment: PathBuf,
    /// The new length of that segment.
    pub offset: u64,
    /// Bytes cut off.
    pub bytes_dropped: u64,
    /// What the bytes were.
    pub reason: String,
}

/// What recovery found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments kept.
    pub segments: usize,
    /// Records in them.
    pub records: u64,
    /// The oldest LSN kept (the next LSN if the log is empty).
    pub first_lsn: Lsn,
    /// The last LSN kept ([`Lsn::ZERO`] if none).
    pub last_lsn: Lsn,
    /// Damage cut off the tail, if any.
    pub truncated: Option<TailTruncation>,
    /// Segments set aside by [`RecoveryMode::PointInTime`].
    pub quarantined: Vec<PathBuf>,
    /// Time recovery took.
    pub duration: Duration,
}

/// The state recovery leaves: the segments and the open tail to append to.
pub(crate) struct Recovered {
    pub(crate) segments: Vec<SegmentMeta>,
    pub(crate) next_lsn: u64,
    pub(crate) tail_file: Box<dyn WalFile>,
    pub(crate) tail_path: PathBuf,
    pub(crate) tail_offset: u64,
    pub(crate) tail_allocated: u64,
    pub(crate) report: RecoveryReport,
}

struct Damage {
    path: PathBuf,
    offset: u64,
    lsn: u64,
    reason: String,
}

impl Damage {
    fn into_error(self) -> WalError {
        WalError::Corruption {
            segment: self.path,
            offset: self.offset,
            lsn: Lsn(self.lsn),
            reason: self.reason,
        }
    }
}

fn describe(stop: ScanStop) -> String {
    match stop {
        ScanStop::Frame(error) => format!("record does not decode ({error:?})"),
        ScanStop::LsnOutOfOrder { expected, found } => {
            format!("record carries LSN {found} where LSN {expected} belongs")
        }
        ScanStop::GroupOutOfOrder => "record out of place in an atomic group".to_string(),
        ScanStop::UnfinishedGroup => "atomic group without its last record".to_string(),
    }
}

/// Recovers the WAL in `dir` (creating it if needed).
pub(crate) fn recover(
    fs: &Arc<dyn WalFs>,
    dir: &Path,
    mode: RecoveryMode,
    max_payload: u32,
) -> Result<Recovered> {
    let started = Instant::now();
    let entries = fs
        .list(dir)
        .map_err(|e| WalError::io("list directory", dir, e))?;
    let mut found: Vec<(u64, PathBuf)> = entries
        .into_iter()
        .filter_map(|path| parse_segment_name(&path).map(|lsn| (lsn, path)))
        .collect();
    found.sort();

    let mut segments: Vec<SegmentMeta> = Vec::new();
    // The segment to append to: file, path, end of data, file length.
    let mut tail: Option<(Box<dyn WalFile>, PathBuf, u64, u64)> = None;
    let mut report = RecoveryReport {
        segments: 0,
        records: 0,
        first_lsn: Lsn(found.first().map_or(1, |f| f.0)),
        last_lsn: Lsn::ZERO,
        truncated: None,
        quarantined: Vec::new(),
        duration: Duration::ZERO,
    };
    let mut next_lsn = report.first_lsn.0;

    for (index, (first_lsn, path)) in found.iter().enumerate() {
        let (first_lsn, is_last) = (*first_lsn, index + 1 == found.len());
        let file = fs
            .open_rw(path)
            .map_err(|e| WalError::io("open segment", path, e))?;
        let bytes = read_all(file.as_ref()).map_err(|e| WalError::io("read segment", path, e))?;
        let damage = |offset: usize, lsn: u64, reason: String| Damage {
            path: path.clone(),
            offset: offset as u64,
            lsn,
            reason,
        };

        // The segment must continue the LSNs of the one before and carry a valid header.
        let header_damage = if index > 0 && first_lsn != next_lsn {
            Some(damage(
                0,
                next_lsn,
                format!(
                    "segment starts at LSN {first_lsn} but the previous segment ends at LSN {}: \
                 records are missing",
                    next_lsn - 1
                ),
            ))
        } else {
            match decode_segment_header(&bytes) {
                Ok(lsn) if lsn == first_lsn => None,
                Ok(lsn) => Some(damage(
                    0,
                    first_lsn,
                    format!("segment header says first LSN {lsn}, its file name says {first_lsn}"),
                )),
                Err(HeaderError::Incomplete | HeaderError::Zeroed) if is_last => {
                    // Torn while being created: it never held a record.
                    if mode == RecoveryMode::AbsoluteConsistency {
                        return Err(
                            damage(0, first_lsn, "segment header is torn".into()).into_error()
                        );
                    }
                    drop(file);
                    fs.remove(path)
                        .map_err(|e| WalError::io("remove torn segment", path, e))?;
                    let (path, file) = create_segment(fs.as_ref(), dir, first_lsn)?;
                    report.truncated = Some(TailTruncation {
                        segment: path.clone(),
                        offset: SEGMENT_HEADER_LEN as u64,
                        bytes_dropped: bytes.len() as u64,
                        reason: "segment header torn while the segment was created".into(),
                    });
                    segments.push(SegmentMeta {
                        first_lsn,
                        path: path.clone(),
                    });
                    let header = SEGMENT_HEADER_LEN as u64;
                    tail = Some((file, path, header, header));
                    next_lsn = first_lsn;
                    continue;
                }
                Err(error) => Some(damage(
                    0,
                    first_lsn,
                    format!("segment header invalid ({error:?})"),
                )),
            }
        };
        if let Some(damage) = header_damage {
            if mode != RecoveryMode::PointInTime {
                return Err(damage.into_error());
            }
            quarantine(fs.as_ref(), dir, &found[index..], &mut report)?;
            break;
        }

        let scan = scan_segment(&bytes, first_lsn, max_payload);
        let mut valid_end = bytes.len();
        let mut allocated = bytes.len();
        // Zeroes after the data of the last segment are space the writer preallocated.
        let preallocated = is_last && bytes[scan.valid_end..].iter().all(|&b| b == 0);
        if preallocated {
            valid_end = scan.valid_end;
        } else if let Some(stop) = scan.stop {
            let resumes =
                find_frame_after(&bytes, scan.stop_offset + 1, scan.stop_lsn, max_payload);
            let in_middle = !is_last || resumes.is_some();
            let damage = damage(scan.stop_offset, scan.stop_lsn, describe(stop));
            let tolerated = match mode {
                RecoveryMode::AbsoluteConsistency => false,
                RecoveryMode::TolerateCorruptedTail => !in_middle,
                RecoveryMode::PointInTime => true,
            };
            if !tolerated {
                return Err(damage.into_error());
            }
            valid_end = scan.valid_end;
            allocated = valid_end;
            file.set_len(valid_end as u64)
                .and_then(|()| file.sync_data())
                .map_err(|e| WalError::io("truncate damaged tail", path, e))?;
            report.truncated = Some(TailTruncation {
                segment: path.clone(),
                offset: valid_end as u64,
                bytes_dropped: (bytes.len() - valid_end) as u64,
                reason: damage.reason,
            });
            if !is_last {
                quarantine(fs.as_ref(), dir, &found[index + 1..], &mut report)?;
            }
        }
        report.records += scan.records;
        next_lsn = scan.last_lsn + 1;
        segments.push(SegmentMeta {
            first_lsn,
            path: path.clone(),
        });
        tail = Some((file, path.clone(), valid_end as u64, allocated as u64));
        if scan.stop.is_some() {
            break;
        }
    }

    let (tail_file, tail_path, tail_offset, tail_allocated) = match tail {
        Some(tail) => tail,
        None => {
            // No segment (a new WAL), or PointInTime set aside even the first one.
            let (path, file) = create_segment(fs.as_ref(), dir, next_lsn)?;
            segments.push(SegmentMeta {
                first_lsn: next_lsn,
                path: path.clone(),
            });
            let header = SEGMENT_HEADER_LEN as u64;
            (file, path, header, header)
        }
    };
    report.segments = segments.len();
    report.first_lsn = Lsn(segments[0].first_lsn);
    report.last_lsn = Lsn(next_lsn - 1);
    report.duration = started.elapsed();
    Ok(Recovered {
        segments,
        next_lsn,
        tail_file,
        tail_path,
        tail_offset,
        tail_allocated,
        report,
    })
}

/// Renames segments aside as `*.wal.corrupt` (kept for inspection, ignored from now on).
fn quarantine(
    fs: &dyn WalFs,
    dir: &Path,
    segments: &[(u64, PathBuf)],
    report: &mut RecoveryReport,
) -> Result<()> {
    for (_, path) in segments {
        let mut aside = path.clone().into_os_string();
        aside.push(".corrupt");
        let aside = PathBuf::from(aside);
        fs.rename(path, &aside)
            .map_err(|e| WalError::io("set aside segment", path, e))?;
        report.quarantined.push(aside);
    }
    fs.sync_dir(dir)
        .map_err(|e| WalError::io("fsync directory", dir, e))
}

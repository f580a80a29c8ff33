//! A reader that follows the log across segment rotation and can wait for new records.

use std::sync::Arc;
use std::time::Duration;

use crate::Lsn;
use crate::error::{Result, WalError};
use crate::format::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN, decode_frame};
use crate::fs::WalFile;
use crate::segment::SegmentMeta;
use crate::wal::Shared;

/// Which records a reader may return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Visibility {
    /// Only records at or below the durable LSN.
    Durable,
    /// Records at or below the written LSN (may vanish in a power loss).
    Written,
}

/// A record read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its LSN.
    pub lsn: Lsn,
    /// Its payload.
    pub payload: Vec<u8>,
}

struct OpenSegment {
    meta: SegmentMeta,
    file: Box<dyn WalFile>,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    pos: usize,
}

const READ_CHUNK: usize = 1 << 20;

/// Reads records in LSN order from a live [`crate::Wal`], following segment rotation.
///
/// It never returns a record above the durable LSN (or, from
/// [`crate::Wal::reader_of_written`], the written LSN). [`WalReader::next_record`] returns
/// `None` when caught up; [`WalReader::wait_next`] waits for the next record. It also
/// implements `Iterator` (non-blocking: the iteration ends when caught up).
pub struct WalReader {
    shared: Arc<Shared>,
    visibility: Visibility,
    next: u64,
    segment: Option<OpenSegment>,
}

impl WalReader {
    pub(crate) fn new(shared: Arc<Shared>, from: Lsn, visibility: Visibility) -> Result<Self> {
        let from = from.0.max(1);
        let oldest = shared.segments.oldest_lsn();
        if from < oldest {
            return Err(WalError::Truncated {
                requested: Lsn(from),
                oldest: Lsn(oldest),
            });
        }
        let next_lsn = shared.committer.next_lsn();
        if from > next_lsn {
            return Err(WalError::FutureLsn {
                requested: Lsn(from),
                next: Lsn(next_lsn),
            });
        }
        Ok(Self {
            shared,
            visibility,
            next: from,
            segment: None,
        })
    }

    /// A reader of `wal`'s durable records from `lsn` on; the same as [`crate::Wal::reader`].
    pub fn from(wal: &crate::Wal, lsn: Lsn) -> Result<Self> {
        wal.reader(lsn)
    }

    /// The LSN of the next record this reader returns.
    pub fn next_lsn(&self) -> Lsn {
        Lsn(self.next)
    }

    fn limit(&self) -> u64 {
        match self.visibility {
            Visibility::Durable => self.shared.committer.durable(),
            Visibility::Written => self.shared.committer.written(),
        }
    }

    /// The next record if it is visible now, `None` if the reader is caught up.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        // Buffered bytes may predate the write of the record we want (a write in progress, or
        // zeroes the writer preallocated): on a decode failure, re-read once before judging.
        let mut refreshed = false;
        loop {
            if self.next > self.limit() {
                return Ok(None);
            }
            let max = self.shared.max_record_size;
            let next = self.next;
            let segment = match &mut self.segment {
                Some(segment) => segment,
                None => {
                    let segment = self.open_segment_holding(next)?;
                    self.segment.insert(segment)
                }
            };
            let offset = segment.buf_offset + segment.pos as u64;
            let error = match decode_frame(&segment.buf[segment.pos..], max) {
                Ok(frame) => {
                    segment.pos += frame.encoded_len();
                    refreshed = false;
                    if frame.lsn < next {
                        continue; // skipping to the starting LSN
                    }
                    if frame.lsn != next {
                        let reason = format!("found LSN {} where LSN {next} belongs", frame.lsn);
                        return Err(corruption(segment, offset, next, reason));
                    }
                    self.next += 1;
                    return Ok(Some(Record {
                        lsn: Lsn(frame.lsn),
                        payload: frame.payload.to_vec(),
                    }));
                }
                Err(error) => error,
            };
            if !refreshed {
                refreshed = true;
                segment.buf.truncate(segment.pos);
                read_more(segment)?;
                continue;
            }
            // Fresh bytes that end, or turn to zeroes, mean the segment holds no more: the
            // record is in the next one.
            let rest = &segment.buf[segment.pos..];
            if rest[..rest.len().min(FRAME_HEADER_LEN)]
                .iter()
                .all(|&b| b == 0)
            {
                if let Some(meta) = self.shared.segments.starting_at(next) {
                    self.segment = Some(self.open_segment(meta)?);
                    refreshed = false;
                    continue;
                }
                let reason = "segment ends before a visible record".to_string();
                return Err(corruption(segment, offset, next, reason));
            }
            let reason = format!("record does not decode ({error:?})");
            return Err(corruption(segment, offset, next, reason));
        }
    }

    /// The next record, waiting up to `timeout` for one to become visible. `None` on timeout
    /// (or when the WAL is closed or poisoned and nothing more will come).
    pub fn wait_next(&mut self, timeout: Duration) -> Result<Option<Record>> {
        if let Some(record) = self.next_record()? {
            return Ok(Some(record));
        }
        let durable = self.visibility == Visibility::Durable;
        if self.shared.committer.wait_for(self.next, durable, timeout) {
            self.next_record()
        } else {
            Ok(None)
        }
    }

    fn open_segment_holding(&self, lsn: u64) -> Result<OpenSegment> {
        let meta = self
            .shared
            .segments
            .find(lsn)
            .ok_or_else(|| WalError::Truncated {
                requested: Lsn(lsn),
                oldest: Lsn(self.shared.segments.oldest_lsn()),
            })?;
        self.open_segment(meta)
    }

    fn open_segment(&self, meta: SegmentMeta) -> Result<OpenSegment> {
        let file = self.shared.fs.open_read(&meta.path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                WalError::Truncated {
                    requested: Lsn(self.next),
                    oldest: Lsn(self.shared.segments.oldest_lsn()),
                }
            } else {
                WalError::io("open segment for reading", &meta.path, e)
            }
        })?;
        Ok(OpenSegment {
            meta,
            file,
            buf_offset: SEGMENT_HEADER_LEN as u64,
            buf: Vec::new(),
            pos: 0,
        })
    }
}

/// Reads more of the segment after what the buffer holds; returns the bytes read.
fn read_more(segment: &mut OpenSegment) -> Result<usize> {
    segment.buf.drain(..segment.pos);
    segment.buf_offset += segment.pos as u64;
    segment.pos = 0;
    // Read at least the whole frame that starts the buffer, if its header is there.
    let mut want = READ_CHUNK;
    if segment.buf.len() >= FRAME_HEADER_LEN {
        let mut len = [0u8; 4];
        len.copy_from_slice(&segment.buf[4..8]);
        want = want.max(FRAME_HEADER_LEN + u32::from_le_bytes(len) as usize);
    }
    let start = segment.buf.len();
    segment.buf.resize(start + want, 0);
    let read = segment
        .file
        .read_at(&mut segment.buf[start..], segment.buf_offset + start as u64);
    let read = match read {
        Ok(read) => read,
        Err(e) => {
            segment.buf.truncate(start);
            return Err(WalError::io("read segment", &segment.meta.path, e));
        }
    };
    segment.buf.truncate(start + read);
    Ok(read)
}

fn corruption(segment: &OpenSegment, offset: u64, lsn: u64, reason: String) -> WalError {
    WalError::Corruption {
        segment: segment.meta.path.clone(),
        offset,
        lsn: Lsn(lsn),
        reason,
    }
}

impl Iterator for WalReader {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

impl std::fmt::Debug for WalReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalReader")
            .field("next_lsn", &self.next)
            .field("visibility", &self.visibility)
            .finish()
    }
}

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

/// Most bytes one refresh reads (more only to complete one large frame).
const READ_CHUNK: usize = 1 << 20;
/// Fewest bytes one refresh reads.
const READ_MIN: usize = 4 << 10;

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
    /// Running average of the frames returned, in bytes (0 before the first): with the count of
    /// visible records it sizes a refresh. A reader that follows a live log then reads about
    /// the new records, not a chunk of the segment's preallocated zeroes (each refresh would
    /// otherwise zero-fill and copy 1 MiB to return one small record).
    frame_bytes_avg: usize,
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
            frame_bytes_avg: 0,
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
            let limit = self.limit();
            if self.next > limit {
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
                    let len = frame.encoded_len();
                    self.frame_bytes_avg = if self.frame_bytes_avg == 0 {
                        len
                    } else {
                        (self.frame_bytes_avg * 7 + len) / 8
                    };
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
                // The visible records not yet read, at their average size, with a margin.
                let visible = limit.saturating_sub(next).saturating_add(1);
                let wanted = match self.frame_bytes_avg {
                    0 => READ_CHUNK,
                    avg => (visible as usize).saturating_mul(avg).saturating_mul(5) / 4,
                };
                read_more(segment, wanted.clamp(READ_MIN, READ_CHUNK), max)?;
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

/// Reads more of the segment after what the buffer holds: about `wanted` bytes, and at least
/// the whole frame that starts the buffer (whose length is known once its header is read, and
/// trusted up to `max_payload`). Returns the bytes read.
fn read_more(segment: &mut OpenSegment, wanted: usize, max_payload: u32) -> Result<usize> {
    segment.buf.drain(..segment.pos);
    segment.buf_offset += segment.pos as u64;
    segment.pos = 0;
    let frame_len = |buf: &[u8]| {
        let len = buf.get(4..8)?;
        let len = u32::from_le_bytes(len.try_into().ok()?).min(max_payload);
        Some(FRAME_HEADER_LEN + len as usize)
    };
    let mut total = 0;
    // A second read only when the first brought in the header of a frame longer than it read.
    for _ in 0..2 {
        let start = segment.buf.len();
        let want = match frame_len(&segment.buf) {
            Some(frame) => wanted.max(frame.saturating_sub(start)),
            None => wanted.max(FRAME_HEADER_LEN),
        };
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
        total += read;
        let complete = frame_len(&segment.buf).is_some_and(|frame| segment.buf.len() >= frame);
        if read < want || complete {
            break;
        }
    }
    Ok(total)
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

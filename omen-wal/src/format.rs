//! The on-disk format: a segment header, then frames back to back.
//!
//! ```text
//! segment header (32 bytes)
//!   0..8   magic  b"OMENWAL\0"
//!   8..12  format version (u32 LE)
//!   12..16 reserved, zero
//!   16..24 first LSN of the segment (u64 LE); equals the LSN in the file name
//!   24..28 reserved, zero
//!   28..32 CRC32C of bytes 0..28
//!
//! frame (20-byte header + payload)
//!   0..4   CRC32C of the payload followed by bytes 4..20 of this header
//!   4..8   payload length (u32 LE)
//!   8..16  LSN (u64 LE)
//!   16     kind: 1 whole record, 2 first / 3 middle / 4 last record of an atomic group
//!   17..20 reserved, zero
//!   20..   payload
//! ```
//!
//! Every field is little-endian. The checksum covers the length, so a torn or flipped length
//! is caught before the payload is trusted. The decoder never panics and never allocates: it
//! borrows payloads from the buffer it is given, whatever bytes that buffer holds.

/// Bytes of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Bytes of a frame header.
pub const FRAME_HEADER_LEN: usize = 20;

const MAGIC: [u8; 8] = *b"OMENWAL\0";
const VERSION: u32 = 1;

/// Where a record stands in an atomic group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A record on its own.
    Whole = 1,
    /// The first record of a group of two or more.
    First = 2,
    /// A record inside a group.
    Middle = 3,
    /// The last record of a group.
    Last = 4,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Whole),
            2 => Some(Self::First),
            3 => Some(Self::Middle),
            4 => Some(Self::Last),
            _ => None,
        }
    }

    /// The kind of record `index` in a group of `count` records.
    pub(crate) fn in_group(index: usize, count: usize) -> Self {
        debug_assert!(index < count);
        match (index, count) {
            (_, 1) => Self::Whole,
            (0, _) => Self::First,
            (i, n) if i + 1 == n => Self::Last,
            _ => Self::Middle,
        }
    }
}

/// A decoded frame, borrowing its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The record's LSN.
    pub lsn: u64,
    /// Its place in an atomic group.
    pub kind: RecordKind,
    /// The payload bytes.
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Bytes the frame occupies on disk.
    pub fn encoded_len(&self) -> usize {
        FRAME_HEADER_LEN + self.payload.len()
    }
}

/// Why bytes did not decode as a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer ends inside the frame: a torn write, or more bytes are still to be read.
    Incomplete,
    /// The length field exceeds the configured maximum record size.
    TooLong,
    /// The checksum does not match the bytes.
    Checksum,
    /// The checksum matched but a field is invalid (kind, reserved bytes, LSN 0).
    Malformed,
}

/// The checksum of a frame: the payload first, so that it can be computed before the LSN is
/// known (outside the append lock), then the header fields.
pub(crate) fn frame_crc(payload_crc: u32, header_tail: &[u8]) -> u32 {
    crc32c::crc32c_append(payload_crc, header_tail)
}

/// Appends one encoded frame to `out`. `payload_crc` is `crc32c(payload)`.
pub(crate) fn encode_frame(
    out: &mut Vec<u8>,
    lsn: u64,
    kind: RecordKind,
    payload: &[u8],
    payload_crc: u32,
) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    debug_assert_eq!(
        len as usize,
        payload.len(),
        "record size checked by the caller"
    );
    let mut header = [0u8; FRAME_HEADER_LEN];
    header[4..8].copy_from_slice(&len.to_le_bytes());
    header[8..16].copy_from_slice(&lsn.to_le_bytes());
    header[16] = kind as u8;
    let crc = frame_crc(payload_crc, &header[4..]);
    header[0..4].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Decodes the frame at the start of `buf`. `max_payload` bounds the length field, so that a
/// corrupt length is rejected without looking further.
pub fn decode_frame(buf: &[u8], max_payload: u32) -> Result<Frame<'_>, FrameError> {
    if buf.len() < FRAME_HEADER_LEN {
        return Err(FrameError::Incomplete);
    }
    let len = u32_at(buf, 4);
    if len > max_payload {
        return Err(FrameError::TooLong);
    }
    let end = FRAME_HEADER_LEN + len as usize;
    if buf.len() < end {
        return Err(FrameError::Incomplete);
    }
    let payload = &buf[FRAME_HEADER_LEN..end];
    let crc = frame_crc(crc32c::crc32c(payload), &buf[4..FRAME_HEADER_LEN]);
    if crc != u32_at(buf, 0) {
        return Err(FrameError::Checksum);
    }
    let lsn = u64_at(buf, 8);
    let kind = RecordKind::from_byte(buf[16]).ok_or(FrameError::Malformed)?;
    if lsn == 0 || buf[17..20] != [0, 0, 0] {
        return Err(FrameError::Malformed);
    }
    Ok(Frame { lsn, kind, payload })
}

/// Encodes the header of a segment whose first record has LSN `first_lsn`.
pub(crate) fn encode_segment_header(first_lsn: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[0..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Why a segment header is not valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than a header: a segment torn while being created.
    Incomplete,
    /// The header bytes are all zero: created, never written.
    Zeroed,
    /// Magic or checksum wrong: not a segment, or a damaged one.
    Invalid,
    /// A format version this build does not read.
    UnsupportedVersion(u32),
}

/// Decodes a segment header, returning the segment's first LSN.
pub fn decode_segment_header(buf: &[u8]) -> Result<u64, HeaderError> {
    let Some(header) = buf.get(..SEGMENT_HEADER_LEN) else {
        return Err(HeaderError::Incomplete);
    };
    if header.iter().all(|&b| b == 0) {
        return Err(HeaderError::Zeroed);
    }
    if header[0..8] != MAGIC || crc32c::crc32c(&header[..28]) != u32_at(header, 28) {
        return Err(HeaderError::Invalid);
    }
    let version = u32_at(header, 8);
    if version != VERSION {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    Ok(u64_at(header, 16))
}

/// Why a scan of a segment's frames stopped before the end of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanStop {
    /// A frame failed to decode.
    Frame(FrameError),
    /// A frame decoded but carried the wrong LSN (a gap, a repeat, a stale frame).
    LsnOutOfOrder {
        /// The LSN the scan expected.
        expected: u64,
        /// The LSN the frame carried.
        found: u64,
    },
    /// A frame decoded but does not fit the group in progress (a `Middle` without a `First`).
    GroupOutOfOrder,
    /// The bytes end inside an atomic group whose last record is missing.
    UnfinishedGroup,
}

/// The outcome of scanning the frames of one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentScan {
    /// Offset just past the last complete record or group: where valid data ends.
    pub valid_end: usize,
    /// LSN of the last record before `valid_end`, or `first_lsn - 1` if there is none.
    pub last_lsn: u64,
    /// Number of records before `valid_end`.
    pub records: u64,
    /// Why the scan stopped before the end of the bytes, if it did.
    pub stop: Option<ScanStop>,
    /// Where the scan stopped: the offset of the frame that failed, or the end of the bytes.
    pub stop_offset: usize,
    /// The LSN the scan expected next when it stopped.
    pub stop_lsn: u64,
}

/// Scans the frames of a whole segment file (`bytes` includes the header, which the caller
/// has validated). Records must carry consecutive LSNs from `first_lsn` and form whole groups.
pub fn scan_segment(bytes: &[u8], first_lsn: u64, max_payload: u32) -> SegmentScan {
    let mut scan = SegmentScan {
        valid_end: SEGMENT_HEADER_LEN.min(bytes.len()),
        last_lsn: first_lsn.saturating_sub(1),
        records: 0,
        stop: None,
        stop_offset: bytes.len(),
        stop_lsn: first_lsn,
    };
    let mut offset = scan.valid_end;
    let mut expected = first_lsn;
    let mut in_group = false;
    let mut group_records = 0;
    fn stop(scan: &mut SegmentScan, reason: ScanStop, offset: usize, expected: u64) {
        scan.stop = Some(reason);
        scan.stop_offset = offset;
        scan.stop_lsn = expected;
    }
    while offset < bytes.len() {
        let frame = match decode_frame(&bytes[offset..], max_payload) {
            Ok(frame) => frame,
            Err(error) => {
                stop(&mut scan, ScanStop::Frame(error), offset, expected);
                return scan;
            }
        };
        if frame.lsn != expected {
            let reason = ScanStop::LsnOutOfOrder {
                expected,
                found: frame.lsn,
            };
            stop(&mut scan, reason, offset, expected);
            return scan;
        }
        let group_continues = matches!(frame.kind, RecordKind::Middle | RecordKind::Last);
        if group_continues != in_group {
            stop(&mut scan, ScanStop::GroupOutOfOrder, offset, expected);
            return scan;
        }
        offset += frame.encoded_len();
        expected += 1;
        group_records += 1;
        in_group = matches!(frame.kind, RecordKind::First | RecordKind::Middle);
        if !in_group {
            scan.valid_end = offset;
            scan.last_lsn = frame.lsn;
            scan.records += group_records;
            group_records = 0;
        }
    }
    if in_group {
        stop(&mut scan, ScanStop::UnfinishedGroup, bytes.len(), expected);
    }
    scan
}

/// Looks for a frame at any offset from `from` that decodes with an LSN that could follow
/// the damage: at least `min_lsn`, and no further than the remaining bytes could hold.
/// Recovery uses it to tell a torn tail (nothing valid follows the damage) from corruption in
/// the middle of the log (valid records follow it).
pub fn find_frame_after(
    bytes: &[u8],
    from: usize,
    min_lsn: u64,
    max_payload: u32,
) -> Option<usize> {
    let max_lsn = min_lsn.saturating_add((bytes.len() / FRAME_HEADER_LEN) as u64);
    (from..bytes.len()).find(|&offset| {
        matches!(decode_frame(&bytes[offset..], max_payload),
            Ok(frame) if (min_lsn..=max_lsn).contains(&frame.lsn))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(records: &[(u64, RecordKind, &[u8])]) -> Vec<u8> {
        let mut out = encode_segment_header(records.first().map_or(1, |r| r.0)).to_vec();
        for &(lsn, kind, payload) in records {
            encode_frame(&mut out, lsn, kind, payload, crc32c::crc32c(payload));
        }
        out
    }

    #[test]
    fn frames_round_trip() {
        let bytes = encoded(&[
            (7, RecordKind::Whole, b"hello"),
            (8, RecordKind::Whole, b""),
        ]);
        assert_eq!(decode_segment_header(&bytes), Ok(7));
        let first = decode_frame(&bytes[SEGMENT_HEADER_LEN..], 100).expect("frame");
        assert_eq!(
            (first.lsn, first.kind, first.payload),
            (7, RecordKind::Whole, &b"hello"[..])
        );
        let scan = scan_segment(&bytes, 7, 100);
        assert_eq!(scan.valid_end, bytes.len());
        assert_eq!((scan.last_lsn, scan.records, scan.stop), (8, 2, None));
    }

    #[test]
    fn an_unfinished_group_is_not_valid_data() {
        let bytes = encoded(&[
            (1, RecordKind::Whole, b"a"),
            (2, RecordKind::First, b"b"),
            (3, RecordKind::Middle, b"c"),
        ]);
        let scan = scan_segment(&bytes, 1, 100);
        assert_eq!(scan.stop, Some(ScanStop::UnfinishedGroup));
        assert_eq!((scan.last_lsn, scan.records), (1, 1));
        assert_eq!(scan.valid_end, SEGMENT_HEADER_LEN + FRAME_HEADER_LEN + 1);
    }

    #[test]
    fn a_flipped_length_bit_fails_the_checksum() {
        let mut bytes = encoded(&[(1, RecordKind::Whole, b"payload")]);
        bytes[SEGMENT_HEADER_LEN + 4] ^= 0x01;
        let result = decode_frame(&bytes[SEGMENT_HEADER_LEN..], 100);
        assert!(matches!(
            result,
            Err(FrameError::Checksum | FrameError::Incomplete)
        ));
    }

    #[test]
    fn zero_bytes_are_not_a_frame() {
        assert_eq!(decode_frame(&[0u8; 64], 100), Err(FrameError::Checksum));
        assert_eq!(decode_segment_header(&[0u8; 64]), Err(HeaderError::Zeroed));
    }
}

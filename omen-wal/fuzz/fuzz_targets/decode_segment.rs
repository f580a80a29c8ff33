//! Feeds arbitrary bytes to the segment decoder: it must never panic, and whatever it accepts
//! must be self-consistent (records inside the buffer, LSNs dense from the first).
#![no_main]

use libfuzzer_sys::fuzz_target;
use omen_wal::format::{SEGMENT_HEADER_LEN, decode_frame, decode_segment_header, scan_segment};

fuzz_target!(|bytes: &[u8]| {
    let first_lsn = decode_segment_header(bytes).unwrap_or(1).max(1);
    let scan = scan_segment(bytes, first_lsn, 1 << 20);
    assert!(scan.valid_end <= bytes.len());
    assert!(scan.stop_offset <= bytes.len());
    assert_eq!(scan.last_lsn + 1 - first_lsn, scan.records);
    let mut offset = SEGMENT_HEADER_LEN.min(bytes.len());
    for expected in first_lsn..first_lsn + scan.records {
        let frame = decode_frame(&bytes[offset..], 1 << 20).expect("scanned frames decode");
        assert_eq!(frame.lsn, expected);
        offset += frame.encoded_len();
    }
    assert_eq!(
        offset,
        scan.valid_end.max(SEGMENT_HEADER_LEN.min(bytes.len()))
    );
    let _ = omen_wal::format::find_frame_after(bytes, 0, 1, 1 << 20);
});

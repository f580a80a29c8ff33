//! Damaged logs: torn tails at every byte offset, single bit flips anywhere, trailing zeroes,
//! random bytes. Every case either recovers exactly the intact prefix or reports corruption
//! at the right place: never a panic, never a wrong record.

mod common;

use std::path::{Path, PathBuf};

use common::{TempDir, payload, read_all, segment_files};
use omen_wal::format::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use omen_wal::{Lsn, RecoveryMode, Wal, WalError, WalOptions};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

fn options(mode: RecoveryMode) -> WalOptions {
    WalOptions {
        segment_size: 4096,
        recovery_mode: mode,
        ..WalOptions::default()
    }
}

/// Where each record sits: (segment file, start offset, end offset, LSN).
struct Layout {
    records: Vec<(PathBuf, usize, usize, u64)>,
}

impl Layout {
    /// The record covering `offset` of `file`, if any.
    fn record_at(&self, file: &Path, offset: usize) -> Option<usize> {
        self.records
            .iter()
            .position(|(f, start, end, _)| f == file && (*start..*end).contains(&offset))
    }
}

/// Writes `count` test records and returns their layout on disk.
fn build(dir: &Path, count: u64) -> Layout {
    let wal = Wal::open(dir, options(RecoveryMode::TolerateCorruptedTail)).expect("open");
    for i in 0..count {
        wal.append(&payload(i)).expect("append");
    }
    drop(wal);
    let mut records = Vec::new();
    let mut lsn = 1;
    for file in segment_files(dir) {
        let bytes = std::fs::read(&file).expect("read");
        let mut offset = SEGMENT_HEADER_LEN;
        // Records until the end of the file or the zeroes preallocated after them.
        while let Ok(frame) = omen_wal::format::decode_frame(&bytes[offset..], 1 << 20) {
            assert_eq!(frame.lsn, lsn);
            let end = offset + FRAME_HEADER_LEN + payload(lsn - 1).len();
            records.push((file.clone(), offset, end, lsn));
            offset = end;
            lsn += 1;
        }
    }
    assert_eq!(records.len() as u64, count);
    Layout { records }
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).expect("create");
    for file in segment_files(from) {
        std::fs::copy(&file, to.join(file.file_name().expect("name"))).expect("copy");
    }
}

/// Copies the log from `original` to `work` and cuts `file` (in `work`) to `len` bytes.
fn copy_and_cut(original: &Path, work: &Path, file: &Path, len: usize) {
    copy_dir(original, work);
    let handle = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .expect("open");
    handle.set_len(len as u64).expect("cut");
}

/// Opens a damaged copy; on success checks that the records are exactly the first ones.
fn open_and_check(dir: &Path, mode: RecoveryMode) -> Result<u64, WalError> {
    let wal = Wal::open(dir, options(mode))?;
    let records = read_all(&wal);
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.lsn, Lsn(i as u64 + 1), "LSNs are dense from 1");
        assert_eq!(
            record.payload,
            payload(i as u64),
            "record {} is intact",
            i + 1
        );
    }
    // The log accepts appends after recovery and keeps them.
    let next = wal
        .append(b"after recovery")
        .expect("append after recovery");
    assert_eq!(next, Lsn(records.len() as u64 + 1));
    drop(wal);
    let wal = Wal::open(dir, options(mode)).expect("reopen after recovery");
    assert_eq!(read_all(&wal).len(), records.len() + 1);
    Ok(records.len() as u64)
}

#[test]
fn the_last_segment_cut_at_every_byte_offset_recovers_the_intact_prefix() {
    let original = TempDir::new("cut-original");
    let layout = build(original.path(), 60);
    let last_file = layout.records.last().expect("records").0.clone();
    let last_len = std::fs::metadata(&last_file).expect("metadata").len() as usize;
    let in_earlier_segments = layout.records.iter().filter(|r| r.0 != last_file).count() as u64;
    assert!(in_earlier_segments > 0, "the log spans several segments");
    let work = TempDir::new("cut-work");
    // Every offset up to a little past the last record; the preallocated zeroes after that
    // are all alike, so every 97th offset of them.
    let last_end = layout.records.last().expect("records").2;
    let cuts =
        (0..=last_len).filter(|&cut| cut <= last_end + 64 || cut % 97 == 0 || cut == last_len);
    for cut in cuts {
        let file = work.path().join(last_file.file_name().expect("name"));
        copy_and_cut(original.path(), work.path(), &file, cut);
        let intact = layout
            .records
            .iter()
            .filter(|(f, _, end, _)| *f != last_file || *end <= cut)
            .count() as u64;
        let recovered = open_and_check(work.path(), RecoveryMode::TolerateCorruptedTail)
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(recovered, intact, "cut at {cut}");

        // AbsoluteConsistency refuses any torn tail, and accepts a cut on a record boundary.
        copy_and_cut(original.path(), work.path(), &file, cut);
        // A cut on a record boundary, or in the preallocated zeroes after the last record.
        let on_boundary = cut == SEGMENT_HEADER_LEN
            || cut >= last_end
            || layout
                .records
                .iter()
                .any(|(f, _, end, _)| *f == last_file && *end == cut);
        match open_and_check(work.path(), RecoveryMode::AbsoluteConsistency) {
            Ok(recovered) => {
                assert!(on_boundary, "cut at {cut} accepted");
                assert_eq!(recovered, intact);
            }
            Err(WalError::Corruption { .. }) => assert!(!on_boundary, "cut at {cut} refused"),
            Err(e) => panic!("cut at {cut}: {e}"),
        }
    }
}

#[test]
fn trailing_zeroes_are_preallocated_space() {
    let dir = TempDir::new("zeroes");
    build(dir.path(), 30);
    let last = segment_files(dir.path()).pop().expect("segment");
    let len = std::fs::metadata(&last).expect("metadata").len();
    let handle = std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .expect("open");
    handle.set_len(len + 8192).expect("extend with zeroes");
    drop(handle);
    for mode in [
        RecoveryMode::AbsoluteConsistency,
        RecoveryMode::TolerateCorruptedTail,
    ] {
        let wal = Wal::open(dir.path(), options(mode)).expect("open");
        assert_eq!(
            wal.recovery_report().truncated,
            None,
            "zeroes are not damage"
        );
        assert_eq!(wal.recovery_report().records, 30);
    }
    assert_eq!(
        open_and_check(dir.path(), RecoveryMode::TolerateCorruptedTail).expect("open"),
        30
    );
}

/// Flips one bit and checks the outcome against where the bit is.
fn flip_and_check(
    layout: &Layout,
    original: &Path,
    work: &Path,
    file_index: usize,
    offset: usize,
    bit: u8,
) {
    copy_dir(original, work);
    let files = segment_files(work);
    let file = &files[file_index];
    let mut bytes = std::fs::read(file).expect("read");
    bytes[offset] ^= 1 << bit;
    std::fs::write(file, &bytes).expect("write");

    let original_file = original.join(file.file_name().expect("name"));
    let is_last_file = file_index + 1 == files.len();
    let result = open_and_check(work, RecoveryMode::TolerateCorruptedTail);
    let what = format!("bit {bit} at {} offset {offset}", file.display());
    match layout.record_at(&original_file, offset) {
        Some(index) if is_last_file && index + 1 == layout.records.len() => {
            // The very last record: a torn tail, cut off.
            assert_eq!(
                result.unwrap_or_else(|e| panic!("{what}: {e}")),
                index as u64,
                "{what}"
            );
        }
        Some(index) => match result {
            Err(WalError::Corruption { segment, lsn, .. }) => {
                assert_eq!(segment, *file, "{what}");
                assert_eq!(lsn, Lsn(layout.records[index].3), "{what}");
            }
            other => panic!("{what}: expected corruption, got {other:?}"),
        },
        None if offset >= SEGMENT_HEADER_LEN => {
            // The zeroes preallocated after the last record: garbage there is a torn tail.
            assert!(
                is_last_file,
                "{what}: only the last segment has preallocated space"
            );
            let all = layout.records.len() as u64;
            assert_eq!(
                result.unwrap_or_else(|e| panic!("{what}: {e}")),
                all,
                "{what}"
            );
        }
        None => {
            // The segment header.
            assert!(
                matches!(result, Err(WalError::Corruption { .. })),
                "{what}: {result:?}"
            );
        }
    }

    // PointInTime always opens, with exactly the records before the damage.
    copy_dir(original, work);
    std::fs::write(file, &bytes).expect("write");
    let kept =
        open_and_check(work, RecoveryMode::PointInTime).unwrap_or_else(|e| panic!("{what}: {e}"));
    let damaged_lsn = layout.record_at(&original_file, offset).map_or_else(
        || {
            if offset >= SEGMENT_HEADER_LEN {
                return layout.records.len() as u64 + 1; // preallocated zeroes
            }
            layout
                .records
                .iter()
                .find(|r| r.0 == original_file)
                .map_or(1, |r| r.3)
        },
        |i| layout.records[i].3,
    );
    assert_eq!(kept, damaged_lsn - 1, "{what}");
}

#[test]
fn single_bit_flips_are_cut_off_at_the_tail_and_reported_in_the_middle() {
    let original = TempDir::new("flip-original");
    let layout = build(original.path(), 60);
    let work = TempDir::new("flip-work");
    let files = segment_files(original.path());
    let trials: usize = std::env::var("OMEN_WAL_FLIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xF11B);
    for _ in 0..trials {
        let file_index = rng.random_range(0..files.len());
        let len = std::fs::metadata(&files[file_index])
            .expect("metadata")
            .len() as usize;
        let offset = rng.random_range(0..len);
        flip_and_check(
            &layout,
            original.path(),
            work.path(),
            file_index,
            offset,
            rng.random_range(0..8),
        );
    }
    // And every byte of the last record and of the last segment's header.
    let last_file_index = files.len() - 1;
    let (_, start, end, _) = layout.records.last().expect("records").clone();
    for offset in (0..SEGMENT_HEADER_LEN).chain(start..end) {
        flip_and_check(
            &layout,
            original.path(),
            work.path(),
            last_file_index,
            offset,
            0,
        );
    }
}

#[test]
fn a_missing_middle_segment_is_corruption() {
    let dir = TempDir::new("missing");
    build(dir.path(), 60);
    let files = segment_files(dir.path());
    assert!(files.len() >= 3);
    std::fs::remove_file(&files[1]).expect("remove");
    let error =
        Wal::open(dir.path(), options(RecoveryMode::TolerateCorruptedTail)).expect_err("gap");
    assert!(matches!(error, WalError::Corruption { .. }), "{error}");
    assert!(error.to_string().contains("missing"), "{error}");
    // PointInTime keeps the first segment and sets the rest aside.
    let wal = Wal::open(dir.path(), options(RecoveryMode::PointInTime)).expect("point in time");
    assert_eq!(wal.recovery_report().quarantined.len(), files.len() - 2);
    drop(wal);
    assert_eq!(segment_files(dir.path()), files[..1]);
}

fn write_segment(dir: &Path, bytes: &[u8]) -> Result<u64, WalError> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("create");
    std::fs::write(dir.join("00000000000000000001.wal"), bytes).expect("write");
    let wal = Wal::open(dir, options(RecoveryMode::TolerateCorruptedTail))?;
    let records = wal
        .reader(Lsn(1))
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("read");
    Ok(records.len() as u64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The decoder takes any bytes.
    #[test]
    fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = omen_wal::format::decode_frame(&bytes, 1 << 20);
        let _ = omen_wal::format::decode_segment_header(&bytes);
        let _ = omen_wal::format::scan_segment(&bytes, 1, 1 << 20);
        let _ = omen_wal::format::find_frame_after(&bytes, 0, 1, 1 << 20);
    }

    /// Recovery takes any file: random bytes after a valid header, or no header at all.
    #[test]
    fn recovering_random_segments_never_panics(
        tail in proptest::collection::vec(any::<u8>(), 0..1000),
        with_header in any::<bool>(),
    ) {
        let dir = TempDir::new("random");
        let mut bytes = if with_header {
            let base = TempDir::new("random-base");
            build(base.path(), 1);
            std::fs::read(&segment_files(base.path())[0]).expect("read")
        } else {
            Vec::new()
        };
        bytes.extend_from_slice(&tail);
        match write_segment(dir.path(), &bytes) {
            Ok(records) => prop_assert!(records <= 1),
            Err(WalError::Corruption { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }
}

#[test]
fn errors_name_the_segment_offset_and_lsn() {
    let original = TempDir::new("message");
    let layout = build(original.path(), 60);
    let (file, start, _, lsn) = layout.records[3].clone();
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[start + FRAME_HEADER_LEN] ^= 0xFF;
    std::fs::write(&file, &bytes).expect("write");
    let error = Wal::open(
        original.path(),
        options(RecoveryMode::TolerateCorruptedTail),
    )
    .expect_err("corrupt");
    let message = error.to_string();
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(message.contains(&format!("byte {start}")), "{message}");
    assert!(message.contains(&format!("LSN {lsn}")), "{message}");
    assert!(
        message.contains("PointInTime"),
        "says what to do: {message}"
    );
}

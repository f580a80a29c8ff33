//! Appends, reads, reopening, rotation, truncation, atomic groups, tailing, bad input.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TempDir, append_numbered, payload, read_all, segment_files, small_segments};
use omen_wal::{Lsn, SyncMode, Wal, WalError, WalOptions};

#[test]
fn records_survive_reopen_in_order_across_segments() {
    let dir = TempDir::new("reopen");
    let wal = Wal::open(dir.path(), small_segments()).expect("open");
    let lsns = append_numbered(&wal, 0, 200);
    assert_eq!(lsns, (1..=200).map(Lsn).collect::<Vec<_>>());
    assert_eq!(wal.last_lsn(), Lsn(200));
    assert_eq!(wal.durable_lsn(), Lsn(200));
    drop(wal);
    assert!(segment_files(dir.path()).len() > 5, "small segments rotate");

    let wal = Wal::open(dir.path(), small_segments()).expect("reopen");
    assert_eq!(wal.recovery_report().records, 200);
    assert_eq!(wal.recovery_report().truncated, None);
    let records = read_all(&wal);
    assert_eq!(records.len(), 200);
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.lsn, Lsn(i as u64 + 1));
        assert_eq!(record.payload, payload(i as u64));
    }
    // Appends continue the LSNs.
    assert_eq!(wal.append(b"next").expect("append"), Lsn(201));
}

#[test]
fn reader_starts_anywhere() {
    let dir = TempDir::new("reader-from");
    let wal = Wal::open(dir.path(), small_segments()).expect("open");
    append_numbered(&wal, 0, 100);
    for from in [1, 2, 37, 99, 100] {
        let records: Vec<_> = wal
            .reader(Lsn(from))
            .expect("reader")
            .map(|r| r.expect("record"))
            .collect();
        assert_eq!(records.len() as u64, 101 - from);
        assert_eq!(records[0].lsn, Lsn(from));
        assert_eq!(records[0].payload, payload(from - 1));
    }
    // Caught up: nothing yet, not an error.
    assert_eq!(wal.reader(Lsn(101)).expect("reader").count(), 0);
    assert!(matches!(
        wal.reader(Lsn(500)),
        Err(WalError::FutureLsn { .. })
    ));
}

#[test]
fn atomic_groups_get_consecutive_lsns() {
    let dir = TempDir::new("groups");
    let wal = Wal::open(dir.path(), WalOptions::default()).expect("open");
    wal.append(b"solo").expect("append");
    let range = wal.append_batch(&[b"a", b"b", b"c"]).expect("batch");
    assert_eq!((range.first, range.last), (Lsn(2), Lsn(4)));
    let one = wal.append_batch(&[b"d"]).expect("batch of one");
    assert_eq!((one.first, one.last), (Lsn(5), Lsn(5)));
    drop(wal);
    let wal = Wal::open(dir.path(), WalOptions::default()).expect("reopen");
    let payloads: Vec<Vec<u8>> = read_all(&wal).into_iter().map(|r| r.payload).collect();
    assert_eq!(payloads, [&b"solo"[..], b"a", b"b", b"c", b"d"]);
    assert!(matches!(
        wal.append_batch::<&[u8]>(&[]),
        Err(WalError::EmptyBatch)
    ));
}

#[test]
fn oversized_records_are_refused_and_nothing_is_written() {
    let dir = TempDir::new("too-large");
    let options = WalOptions {
        max_record_size: 1000,
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), options).expect("open");
    let error = wal.append(&[7u8; 1001]).expect_err("too large");
    assert!(
        matches!(
            error,
            WalError::RecordTooLarge {
                size: 1001,
                max: 1000
            }
        ),
        "{error}"
    );
    let error = wal
        .append_batch(&[vec![1u8; 10], vec![2u8; 2000]])
        .expect_err("a batch with one too-large record");
    assert!(matches!(error, WalError::RecordTooLarge { .. }));
    assert_eq!(wal.last_lsn(), Lsn::ZERO);
    assert_eq!(wal.append(&[7u8; 1000]).expect("at the limit"), Lsn(1));
}

#[test]
fn invalid_options_are_typed_errors() {
    let dir = TempDir::new("options");
    for options in [
        WalOptions {
            segment_size: 10,
            ..WalOptions::default()
        },
        WalOptions {
            max_record_size: 0,
            ..WalOptions::default()
        },
        WalOptions {
            sync_mode: SyncMode::Buffered {
                interval: Duration::ZERO,
            },
            ..WalOptions::default()
        },
    ] {
        let error = Wal::open(dir.path(), options).expect_err("invalid");
        assert!(matches!(error, WalError::InvalidOptions(_)), "{error}");
    }
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = TempDir::new("lock");
    let wal = Wal::open(dir.path(), WalOptions::default()).expect("open");
    let error = Wal::open(dir.path(), WalOptions::default()).expect_err("locked");
    assert!(matches!(error, WalError::Locked { .. }), "{error}");
    drop(wal);
    Wal::open(dir.path(), WalOptions::default()).expect("open after the first is dropped");
}

#[test]
fn truncate_before_deletes_whole_segments_below_the_checkpoint() {
    let dir = TempDir::new("truncate");
    let wal = Wal::open(dir.path(), small_segments()).expect("open");
    append_numbered(&wal, 0, 300);
    let before = segment_files(dir.path());
    assert_eq!(wal.truncate_before(Lsn(1)).expect("no-op"), 0);
    let deleted = wal.truncate_before(Lsn(150)).expect("truncate");
    assert!(deleted > 0);
    assert_eq!(segment_files(dir.path()).len(), before.len() - deleted);
    let oldest = wal.first_lsn();
    assert!(oldest <= Lsn(150) && oldest > Lsn(1), "oldest {oldest}");
    assert!(matches!(
        wal.reader(Lsn(1)),
        Err(WalError::Truncated { .. })
    ));
    let records = read_all(&wal);
    assert_eq!(records.first().map(|r| r.lsn), Some(oldest));
    assert_eq!(records.last().map(|r| r.lsn), Some(Lsn(300)));

    // Truncating everything keeps the segment being appended to.
    wal.truncate_before(Lsn(10_000)).expect("truncate all");
    assert_eq!(segment_files(dir.path()).len(), 1);
    let next = wal.append(b"after").expect("append");
    assert_eq!(next, Lsn(301));
    drop(wal);
    let wal = Wal::open(dir.path(), small_segments()).expect("reopen");
    assert_eq!(wal.last_lsn(), Lsn(301));
    assert!(read_all(&wal).iter().any(|r| r.payload == b"after"));
}

#[test]
fn a_tailing_reader_follows_appends_and_rotation() {
    let dir = TempDir::new("tail");
    let wal = Arc::new(Wal::open(dir.path(), small_segments()).expect("open"));
    let mut reader = wal.reader(Lsn(1)).expect("reader");
    assert_eq!(reader.next_record().expect("read"), None);
    let writer = {
        let wal = Arc::clone(&wal);
        std::thread::spawn(move || {
            for i in 0..500 {
                wal.append(&payload(i)).expect("append");
            }
        })
    };
    let mut seen = 0u64;
    while seen < 500 {
        match reader.wait_next(Duration::from_secs(10)).expect("read") {
            Some(record) => {
                assert_eq!(record.lsn, Lsn(seen + 1));
                assert_eq!(record.payload, payload(seen));
                assert!(
                    record.lsn <= wal.durable_lsn(),
                    "reader ran ahead of durability"
                );
                seen += 1;
            }
            None => panic!("no record within 10 s after {seen}"),
        }
    }
    writer.join().expect("writer");
    assert_eq!(
        reader.wait_next(Duration::from_millis(10)).expect("read"),
        None
    );
}

#[test]
fn readers_see_only_durable_records_unless_asked() {
    let dir = TempDir::new("visibility");
    let wal = Wal::open(dir.path(), WalOptions::default()).expect("open");
    wal.append_with(b"durable", SyncMode::Full).expect("append");
    wal.append_with(b"written", SyncMode::None).expect("append");
    assert_eq!(wal.durable_lsn(), Lsn(1));
    assert_eq!(wal.written_lsn(), Lsn(2));
    assert_eq!(wal.reader(Lsn(1)).expect("reader").count(), 1);
    assert_eq!(wal.reader_of_written(Lsn(1)).expect("reader").count(), 2);
    assert_eq!(wal.sync().expect("sync"), Lsn(2));
    assert_eq!(wal.reader(Lsn(1)).expect("reader").count(), 2);
}

#[test]
fn buffered_mode_syncs_in_the_background() {
    let dir = TempDir::new("buffered");
    let options = WalOptions {
        sync_mode: SyncMode::Buffered {
            interval: Duration::from_millis(5),
        },
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), options).expect("open");
    let lsn = wal.append(b"x").expect("append");
    assert!(wal.written_lsn() >= lsn);
    let mut reader = wal.reader(Lsn(1)).expect("reader");
    // The flusher makes it durable without anyone calling sync.
    let record = reader.wait_next(Duration::from_secs(10)).expect("read");
    assert_eq!(record.map(|r| r.lsn), Some(lsn));
}

#[test]
fn many_threads_get_unique_dense_lsns() {
    let dir = TempDir::new("threads");
    let wal = Arc::new(Wal::open(dir.path(), small_segments()).expect("open"));
    let modes = [
        SyncMode::Full,
        SyncMode::GroupCommit,
        SyncMode::None,
        SyncMode::GroupCommit,
    ];
    let threads: Vec<_> = modes
        .into_iter()
        .enumerate()
        .map(|(t, mode)| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                (0..100u64)
                    .map(|i| {
                        let body = payload(t as u64 * 1000 + i);
                        let lsn = wal.append_with(&body, mode).expect("append");
                        if mode != SyncMode::None {
                            assert!(wal.durable_lsn() >= lsn, "acknowledged before durable");
                        }
                        (lsn, body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    acked.sort();
    assert_eq!(
        acked.iter().map(|a| a.0).collect::<Vec<_>>(),
        (1..=400).map(Lsn).collect::<Vec<_>>()
    );
    wal.sync().expect("sync");
    let records = read_all(&wal);
    assert_eq!(records.len(), 400);
    for (record, (lsn, body)) in records.iter().zip(&acked) {
        assert_eq!((&record.lsn, &record.payload), (lsn, body));
    }
}

//! Tests of the embedded store: commit, recovery, snapshots and compaction.

use std::time::{Duration, SystemTime};

use super::*;

fn tick(secs: u64) -> Entry {
    Entry::Tick {
        at: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
    }
}

fn open(dir: &Path) -> Durable {
    let mut durable = Durable::open_dir(dir, &mut Registry::default()).expect("open");
    durable.recover().expect("recover");
    durable
}

fn reopen(dir: &Path) -> Recovered {
    let mut durable = Durable::open_dir(dir, &mut Registry::default()).expect("reopen");
    durable.recover().expect("recover")
}

#[tokio::test]
async fn committed_records_are_recovered_in_order_after_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut durable = open(dir.path());
        durable.commit(&[tick(1), tick(2)]).await.expect("commit");
        durable.commit(&[tick(3)]).await.expect("commit");
    }
    let found = reopen(dir.path());
    assert!(found.snapshot.is_none());
    assert_eq!(found.entries, vec![tick(1), tick(2), tick(3)]);
    assert_eq!(found.damaged, 0);
}

#[tokio::test]
async fn a_snapshot_drops_the_journal_before_it_and_recovery_replays_only_what_follows() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut durable = open(dir.path());
        let many: Vec<Entry> = (0..500).map(tick).collect();
        durable.commit(&many).await.expect("commit");
        assert!(durable.journal_bytes() > 0);
        let snapshot = Snapshot {
            next_exception: 7,
            last_exchange: 500,
            ..Snapshot::default()
        };
        durable.snapshot(&snapshot).await.expect("snapshot");
        assert_eq!(durable.journal_bytes(), 0);
        durable.commit(&[tick(1000)]).await.expect("commit");
    }
    let db = Database::create(dir.path().join(FILE_NAME)).expect("open file");
    let read = db.begin_read().expect("read");
    let journal = read.open_table(JOURNAL).expect("journal");
    assert_eq!(
        journal.len().expect("len"),
        1,
        "compacted to what followed the snapshot"
    );
    drop((journal, read, db));

    let found = reopen(dir.path());
    let snapshot = found.snapshot.expect("snapshot");
    assert_eq!(snapshot.next_exception, 7);
    assert_eq!(snapshot.last_exchange, 500);
    assert_eq!(found.entries, vec![tick(1000)]);
}

#[tokio::test]
async fn the_file_stays_bounded_when_snapshots_keep_replacing_the_journal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut durable = open(dir.path());
    let mut sizes = Vec::new();
    for round in 0..20u64 {
        let batch: Vec<Entry> = (0..200).map(|i| tick(round * 1000 + i)).collect();
        durable.commit(&batch).await.expect("commit");
        durable
            .snapshot(&Snapshot::default())
            .await
            .expect("snapshot");
        sizes.push(durable.file_bytes());
    }
    let (early, late) = (sizes[4], sizes[19]);
    assert!(
        late <= early * 2,
        "file grew from {early} to {late} bytes: {sizes:?}"
    );
}

#[tokio::test]
async fn a_damaged_record_is_skipped_and_counted_not_trusted() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut durable = open(dir.path());
        durable.commit(&[tick(1)]).await.expect("commit");
    }
    {
        // What a torn write or a flipped bit would leave: a record cut short.
        let db = Database::create(dir.path().join(FILE_NAME)).expect("open file");
        let write = db.begin_write().expect("write");
        {
            let mut journal = write.open_table(JOURNAL).expect("journal");
            let frame = tick(2).encode();
            journal
                .insert(2, &frame[..frame.len() - 4])
                .expect("insert");
            journal
                .insert(3, tick(3).encode().as_slice())
                .expect("insert");
        }
        write.commit().expect("commit");
    }
    let mut registry = Registry::default();
    let mut durable = Durable::open_dir(dir.path(), &mut registry).expect("reopen");
    let found = durable.recover().expect("recover");
    assert_eq!(found.entries, vec![tick(1), tick(3)]);
    assert_eq!(found.damaged, 1);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
    assert!(
        out.contains("waybill_state_damaged_records_total 1"),
        "{out}"
    );
    assert!(
        out.contains("waybill_state_recovered_observations_total 2"),
        "{out}"
    );
    // New records continue after the highest sequence number seen.
    durable.commit(&[tick(4)]).await.expect("commit");
    drop(durable);
    assert_eq!(reopen(dir.path()).entries, vec![tick(1), tick(3), tick(4)]);
}

#[test]
fn a_second_process_cannot_open_the_same_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _first = open(dir.path());
    let second = Durable::open_dir(dir.path(), &mut Registry::default());
    assert!(
        second.is_err(),
        "two writers on one journal would corrupt it"
    );
}

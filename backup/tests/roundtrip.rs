//! Full plus incremental backups, restored at every point.

mod common;

use std::sync::Arc;

use common::*;
use reservoir_backup::{
    restore, send_backup, BackupErrorKind, BackupId, BackupSource, ChangeSource, Client,
    Repository, RestoreOptions, RestoreTarget, Token, VolumeIdentity,
};
use reservoir_snapshot::{SnapshotEngine, SnapshotOptions};

fn vol(name: &str) -> VolumeIdentity {
    VolumeIdentity::new(name, 512).unwrap()
}

fn restore_file(client: &Client, id: BackupId, dir: &std::path::Path, parallel: usize) -> Vec<u8> {
    let path = dir.join(format!("restore-{id}-{parallel}.img"));
    let opts = RestoreOptions {
        parallel,
        segment_bytes: 1 << 20,
    };
    restore(
        client,
        id,
        &RestoreTarget::File(path.clone()),
        opts,
        &mut no_progress(),
    )
    .unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn malloc_full_and_incrementals_restore_every_point() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let s = server(&repo);
    let c = client(&s);
    let bdev = malloc("vol0", 8 << 20);
    scribble(&*bdev, 1, 40);
    let mut points = Vec::new();
    let mut reports = Vec::new();
    let info = send_backup(
        &c,
        &BackupSource {
            volume: vol("vol0"),
            snapshot: "s0".into(),
            view: bdev.clone(),
            parent: None,
            changes: full(&*bdev),
        },
        &mut |p| reports.push(*p),
    )
    .unwrap();
    assert!(reports.last().unwrap().finished);
    assert_eq!(info.source, ChangeSource::Full);
    assert!(info.zero_bytes > 0, "sparse chunks go as ZERO records");
    points.push((info.id, read_all(&*bdev)));
    let mut parent = info.id;
    for round in 1..=4u64 {
        let written = scribble(&*bdev, 100 + round, 10);
        let info = send_backup(
            &c,
            &BackupSource {
                volume: vol("vol0"),
                snapshot: format!("s{round}"),
                view: bdev.clone(),
                parent: Some(parent),
                changes: changed(&written),
            },
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(info.parent, Some(parent));
        assert_eq!(info.changed_chunks, written.len() as u64);
        assert!(info.bytes_sent < (written.len() as u64 + 2) * u64::from(CHUNK));
        points.push((info.id, read_all(&*bdev)));
        parent = info.id;
    }
    for (id, image) in &points {
        assert_same(
            &restore_file(&c, *id, tmp.path(), 1),
            image,
            &format!("backup {id}, one stream"),
        );
        assert_same(
            &restore_file(&c, *id, tmp.path(), 4),
            image,
            &format!("backup {id}, 4 streams"),
        );
        // Straight from the repository, into a bdev.
        let target = malloc("target", 8 << 20);
        common::scribble(&*target, 999, 20);
        Repository::open(&repo)
            .unwrap()
            .restore(
                *id,
                &RestoreTarget::Bdev(target.clone()),
                RestoreOptions::default(),
                &mut no_progress(),
            )
            .unwrap();
        assert_same(
            &read_all(&*target),
            image,
            &format!("backup {id}, local into a bdev"),
        );
    }
    let chains = c.list().unwrap();
    assert_eq!(chains.len(), 1);
    assert_eq!(chains[0].backups.len(), 5);
    assert!(c.verify(None).unwrap().damaged().is_empty());
    // JSON for `--json`.
    let json = serde_json::to_string(&chains).unwrap();
    assert!(json.contains("\"changed_chunks\""));
}

#[test]
fn snapshot_engine_chain_restores_every_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let s = server(&repo);
    let c = client(&s);
    let base = malloc("vol1", 4 << 20);
    let options = SnapshotOptions {
        chunk_size: reservoir_snapshot::ChunkSize::new(CHUNK).unwrap(),
        ..SnapshotOptions::default()
    };
    let (engine, _) =
        SnapshotEngine::open("vol1", base, &tmp.path().join("snap"), options).unwrap();
    let origin = engine.origin();
    let mut points = Vec::new();
    let mut last: Option<(String, BackupId)> = None;
    for round in 0..4u64 {
        scribble(&*origin, round, 12);
        let name = format!("snap{round}");
        engine.create(&name).unwrap();
        let view = engine.view(&name).unwrap();
        let copy = read_all(&*view);
        // Writes after the snapshot must not leak into its backup.
        scribble(&*origin, 50 + round, 5);
        let (parent, changes) = match &last {
            None => (None, full(&*view)),
            Some((prev, id)) => (
                Some(*id),
                reservoir_backup::ChangedChunks::from_changed_set(
                    &engine.changed(prev, Some(&name)).unwrap(),
                )
                .unwrap(),
            ),
        };
        let info = send_backup(
            &c,
            &BackupSource {
                volume: vol("vol1"),
                snapshot: name.clone(),
                view,
                parent,
                changes,
            },
            &mut |_| {},
        )
        .unwrap();
        // The appliance retires the older snapshot once the backup is in.
        if let Some((prev, _)) = &last {
            engine.delete(prev).unwrap();
        }
        points.push((info.id, copy));
        last = Some((name, info.id));
    }
    for (id, image) in &points {
        assert_same(
            &restore_file(&c, *id, tmp.path(), 3),
            image,
            &format!("backup {id}"),
        );
    }
}

#[test]
fn wrong_token_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(tmp.path());
    let bad = Client::new(s.local_addr(), Token::new(b"not-the-right-token!").unwrap()).unwrap();
    let err = bad.list().unwrap_err();
    assert_eq!(err.kind(), BackupErrorKind::Auth, "{err}");
    assert!(client(&s).list().unwrap().is_empty());
}

#[test]
fn retry_after_commit_returns_the_stored_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(tmp.path());
    let c = client(&s);
    let bdev = malloc("vol2", 1 << 20);
    scribble(&*bdev, 3, 4);
    let src = BackupSource {
        volume: vol("vol2"),
        snapshot: "a".into(),
        view: bdev.clone(),
        parent: None,
        changes: full(&*bdev),
    };
    let first = send_backup(&c, &src, &mut |_| {}).unwrap();
    let again = send_backup(&c, &src, &mut |_| {}).unwrap();
    assert_eq!(first, again);
    assert_eq!(c.list().unwrap()[0].backups.len(), 1);
}

#[test]
fn incremental_must_match_its_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(tmp.path());
    let c = client(&s);
    let bdev = malloc("vol3", 1 << 20);
    let src = |parent| BackupSource {
        volume: vol("vol3"),
        snapshot: "x".into(),
        view: bdev.clone(),
        parent,
        changes: changed(&[0]),
    };
    let err = send_backup(&c, &src(Some(BackupId(42))), &mut |_| {}).unwrap_err();
    assert_eq!(err.kind(), BackupErrorKind::NotFound, "{err}");
    let _ = Arc::clone(&bdev);
}

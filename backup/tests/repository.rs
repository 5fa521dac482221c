//! Verify, corruption, prune, and manifests from the future.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use reservoir_backup::{
    send_backup, BackupErrorKind, BackupId, BackupSource, Client, Repository, RestoreOptions,
    RestoreTarget, VolumeIdentity,
};

/// Five backups (full + 4 incrementals) of one volume; returns the
/// image at each.
fn chain(c: &Client, name: &str) -> Vec<(BackupId, Vec<u8>)> {
    let bdev = malloc(name, 4 << 20);
    scribble(&*bdev, 11, 30);
    let vol = VolumeIdentity::new(name, 512).unwrap();
    let mut points = Vec::new();
    let mut parent = None;
    for round in 0..5u64 {
        let changes = if round == 0 {
            full(&*bdev)
        } else {
            changed(&scribble(&*bdev, 20 + round, 6))
        };
        let info = send_backup(
            c,
            &BackupSource {
                volume: vol.clone(),
                snapshot: format!("s{round}"),
                view: bdev.clone(),
                parent,
                changes,
            },
            &mut |_| {},
        )
        .unwrap();
        points.push((info.id, read_all(&*bdev)));
        parent = Some(info.id);
    }
    points
}

fn local_restore(repo: &Path, id: BackupId) -> Result<Vec<u8>, reservoir_backup::BackupError> {
    let out = repo.parent().unwrap().join(format!("r{id}.img"));
    Repository::open(repo)?.restore(
        id,
        &RestoreTarget::File(out.clone()),
        RestoreOptions::default(),
        &mut |_| {},
    )?;
    Ok(std::fs::read(out).unwrap())
}

fn backup_dir(repo: &Path, id: BackupId) -> PathBuf {
    std::fs::read_dir(repo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(&format!("b{id}-g"))
        })
        .unwrap()
}

#[test]
fn a_flipped_byte_is_named_by_verify_and_refused_by_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let s = server(&repo);
    let c = client(&s);
    let points = chain(&c, "v");
    let victim = points[2].0;
    let dat = backup_dir(&repo, victim).join("chunks.dat");
    let mut bytes = std::fs::read(&dat).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&dat, bytes).unwrap();

    let report = c.verify(None).unwrap();
    assert_eq!(report.damaged(), vec![victim]);
    let verdict = report.backups.iter().find(|v| v.id == victim).unwrap();
    assert!(
        verdict.problems[0].contains("chunk at offset"),
        "{:?}",
        verdict.problems
    );
    let local = Repository::open(&repo)
        .unwrap()
        .verify(Some(victim))
        .unwrap();
    assert_eq!(local.damaged(), vec![victim]);

    // Restoring any point whose chain reads that chunk is refused, naming
    // the backup; the half-written image is not left behind.
    let err = local_restore(&repo, victim).unwrap_err();
    assert_eq!(err.kind(), BackupErrorKind::Corrupt);
    assert!(
        err.to_string().contains(&format!("backup {victim}")),
        "{err}"
    );
    assert!(!tmp.path().join(format!("r{victim}.img")).exists());
    let remote = reservoir_backup::restore(
        &c,
        victim,
        &RestoreTarget::File(tmp.path().join("remote.img")),
        RestoreOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        remote.to_string().contains(&format!("backup {victim}")),
        "{remote}"
    );
    // Points that do not read it still restore.
    assert_same(
        &local_restore(&repo, points[1].0).unwrap(),
        &points[1].1,
        "backup before",
    );
}

#[test]
fn damaged_index_and_manifest_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let s = server(&repo);
    let c = client(&s);
    let points = chain(&c, "v");
    let idx = backup_dir(&repo, points[1].0).join("chunks.idx");
    let mut bytes = std::fs::read(&idx).unwrap();
    bytes[3] ^= 1;
    std::fs::write(&idx, bytes).unwrap();
    let manifest = backup_dir(&repo, points[3].0).join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replacen("\"s3\"", "\"s9\"", 1)).unwrap();
    let report = c.verify(None).unwrap();
    // The child of the unreadable manifest cannot be restored either.
    assert_eq!(
        report.damaged(),
        vec![points[1].0, points[3].0, points[4].0]
    );
    let child = report.backups.iter().find(|v| v.id == points[4].0).unwrap();
    assert!(
        child.problems[0].contains("parent backup"),
        "{:?}",
        child.problems
    );
}

#[test]
fn a_manifest_from_the_future_is_refused_not_guessed() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let s = server(&repo);
    let c = client(&s);
    let points = chain(&c, "v");
    let last = points[4].0;
    let manifest = backup_dir(&repo, last).join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replacen("\"version\": 1", "\"version\": 7", 1),
    )
    .unwrap();
    let err = c.describe(last).unwrap_err();
    assert!(err.to_string().contains("format version 7"), "{err}");
    assert!(!c.list().unwrap()[0].backups.iter().any(|b| b.id == last));
    assert_eq!(c.verify(None).unwrap().damaged(), vec![last]);
}

#[test]
fn prune_keeps_every_kept_point_restorable() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let s = server(&repo);
    let c = client(&s);
    let a = chain(&c, "a");
    let b = chain(&c, "b");
    let report = c.prune(2).unwrap();
    let kept: Vec<BackupId> = [&a[3..], &b[3..]]
        .concat()
        .iter()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(report.kept, kept);
    assert_eq!(report.rebased, vec![a[3].0, b[3].0]);
    assert_eq!(report.removed.len(), 6);
    for (id, image) in a[3..].iter().chain(&b[3..]) {
        assert_same(
            &local_restore(&repo, *id).unwrap(),
            image,
            &format!("kept backup {id}"),
        );
    }
    for (id, _) in a[..3].iter().chain(&b[..3]) {
        assert_eq!(
            local_restore(&repo, *id).unwrap_err().kind(),
            BackupErrorKind::NotFound
        );
    }
    let chains = c.list().unwrap();
    assert_eq!(chains.len(), 2);
    let rebased = &chains[0].backups[0];
    assert_eq!(rebased.parent, None);
    assert_eq!(rebased.merged_from, vec![a[0].0, a[1].0, a[2].0]);
    assert!(c.verify(None).unwrap().damaged().is_empty());
    // Pruning again changes nothing and an incremental on top still works.
    assert!(c.prune(2).unwrap().removed.is_empty());
    let next = chain(&c, "c");
    assert_eq!(next.len(), 5);
}

#[test]
fn prune_interrupted_after_the_rewrite_recovers_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let points = {
        let s = server(&repo);
        chain(&client(&s), "v")
    };
    // A crash after the rewrite of backup 4 became visible and before the
    // old generation and the parents went: both generations are on disk.
    let kept = points[3].0;
    let old = backup_dir(&repo, kept);
    Repository::open(&repo).unwrap().prune(2).unwrap();
    let new = backup_dir(&repo, kept);
    assert_ne!(old, new);
    copy_dir(&new, &old);
    // A stale rewrite in progress too.
    std::fs::create_dir(repo.join(format!("prune-{}-g9.tmp", kept))).unwrap();
    let r = Repository::open(&repo).unwrap();
    assert_eq!(backup_dir(&repo, kept), new);
    assert!(!old.exists() && !repo.join(format!("prune-{kept}-g9.tmp")).exists());
    assert!(r.verify(None).unwrap().damaged().is_empty());
    assert_same(&local_restore(&repo, kept).unwrap(), &points[3].1, "kept");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

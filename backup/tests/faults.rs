//! Cut connections and server restarts mid-stream: the resumed backup is
//! identical to an uninterrupted one, and nothing half-done is listed.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;

use common::*;
use rand::{Rng, SeedableRng};
use reservoir_backup::{
    send_backup, BackupErrorKind, BackupInfo, BackupSource, Client, Repository, VolumeIdentity,
};
use reservoir_bdev::{Bdev, Durability, Lba};

/// Forwards one connection to `upstream`, cutting both directions once
/// `cut_after` bytes went from client to server (after calling `at_cut`).
fn cutting_proxy(
    upstream: SocketAddr,
    cut_after: u64,
    at_cut: impl FnOnce() + Send + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut server = TcpStream::connect(upstream).unwrap();
        let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        thread::spawn(move || {
            let _ = std::io::copy(&mut s2, &mut c2);
        });
        let mut buf = vec![0u8; 64 << 10];
        let mut sent = 0u64;
        while sent < cut_after {
            let n = match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n.min((cut_after - sent) as usize),
            };
            if server.write_all(&buf[..n]).is_err() {
                break;
            }
            sent += n as u64;
        }
        if sent >= cut_after {
            at_cut();
        }
        // The server sees the bytes forwarded so far, then end of stream in
        // the middle of whatever frame was crossing (a FIN, not a reset: a
        // reset would also discard what it had received but not yet read,
        // and how much that is depends on scheduling, not on the cut).
        let _ = server.shutdown(Shutdown::Write);
        let _ = client.shutdown(Shutdown::Both);
    });
    addr
}

fn random_volume(name: &str, bytes: u64, seed: u64) -> Arc<dyn Bdev> {
    let b = malloc(name, bytes);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut buf = vec![0u8; bytes as usize];
    rng.fill(&mut buf[..]);
    // A few zero chunks, so ZERO records cross the cut points too.
    for c in [3u64, 4, 5, 40, 41, 90] {
        let at = (c * u64::from(CHUNK)) as usize;
        buf[at..at + CHUNK as usize].fill(0);
    }
    b.write(Lba(0), &buf, Durability::Cached).unwrap();
    b
}

fn source(b: &Arc<dyn Bdev>) -> BackupSource {
    BackupSource {
        volume: VolumeIdentity::new("vol", 512).unwrap(),
        snapshot: "s1".into(),
        view: b.clone(),
        parent: None,
        changes: full(&**b),
    }
}

fn stored_files(repo: &Path, info: &BackupInfo) -> (Vec<u8>, Vec<u8>) {
    let dir = repo.join(format!("b{}-g1", info.id));
    (
        std::fs::read(dir.join("chunks.idx")).unwrap(),
        std::fs::read(dir.join("chunks.dat")).unwrap(),
    )
}

fn reference(b: &Arc<dyn Bdev>, tmp: &Path) -> (BackupInfo, (Vec<u8>, Vec<u8>)) {
    let repo = tmp.join("reference");
    let s = server(&repo);
    let info = send_backup(&client(&s), &source(b), &mut |_| {}).unwrap();
    let files = stored_files(&repo, &info);
    (info, files)
}

fn nothing_listed(repo: &Path) {
    let r = Repository::open(repo).unwrap();
    assert!(r.list().unwrap().is_empty(), "a partial backup is listed");
    assert!(
        std::fs::read_dir(repo).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("partial-")),
        "the partial backup is kept for resume"
    );
}

#[test]
fn cut_connections_resume_to_an_identical_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let b = random_volume("vol", 8 << 20, 7);
    let (want, want_files) = reference(&b, tmp.path());
    let repo = tmp.path().join("repo");
    let s = server(&repo);
    let token = token();
    let mut attempts = 0;
    let mut resumed_from = Vec::new();
    let got = loop {
        attempts += 1;
        assert!(attempts < 20, "no progress across resumes");
        // Cut at an uneven point, inside some frame.
        let proxy = cutting_proxy(s.local_addr(), 1_500_000 + attempts * 12_345, || {});
        let c = Client::new(proxy, token.clone()).unwrap();
        let mut first = None;
        match send_backup(&c, &source(&b), &mut |p| {
            first.get_or_insert(p.done_bytes);
        }) {
            Ok(info) => break info,
            Err(e) => {
                assert_eq!(e.kind(), BackupErrorKind::Disconnected, "{e}");
                nothing_listed(&repo);
            }
        }
        resumed_from.push(first);
    };
    assert!(attempts >= 5, "the proxy should have cut several times");
    // Later runs started where the server had acknowledged.
    assert!(resumed_from
        .iter()
        .skip(1)
        .all(|f| f.unwrap_or(0) > u64::from(CHUNK)));
    assert_eq!(got.bytes_sent, want.bytes_sent);
    assert_eq!(got.changed_chunks, want.changed_chunks);
    let got_files = stored_files(&repo, &got);
    assert!(
        got_files == want_files,
        "stored index or data differ from an uninterrupted backup"
    );
    assert!(client(&s).verify(None).unwrap().damaged().is_empty());
}

#[test]
fn server_restart_mid_stream_resumes_to_an_identical_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let b = random_volume("vol", 8 << 20, 9);
    let (_, want_files) = reference(&b, tmp.path());
    let repo = tmp.path().join("repo");
    let first_server = server(&repo);
    let addr = first_server.local_addr();
    // The server dies (every connection cut at once) 4 MiB into the stream.
    let proxy = cutting_proxy(addr, 4 << 20, move || first_server.shutdown());
    let err = send_backup(
        &Client::new(proxy, token()).unwrap(),
        &source(&b),
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(err.kind(), BackupErrorKind::Disconnected, "{err}");
    // What a crash leaves past the last checkpoint: unacknowledged bytes.
    let partial = std::fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("partial-")
        })
        .unwrap();
    let mut dat = std::fs::OpenOptions::new()
        .append(true)
        .open(partial.join("chunks.dat"))
        .unwrap();
    dat.write_all(&[0xAB; 12345]).unwrap();
    let mut idx = std::fs::OpenOptions::new()
        .append(true)
        .open(partial.join("chunks.idx"))
        .unwrap();
    idx.write_all(&[0xCD; 45]).unwrap();
    nothing_listed(&repo);

    // A new server process on the same repository.
    let s = server(&repo);
    let c = client(&s);
    let mut first = None;
    let got = loop {
        match send_backup(&c, &source(&b), &mut |p| {
            first.get_or_insert(p.done_bytes);
        }) {
            // The old connection may still hold the partial for a moment.
            Err(e) if e.kind() == BackupErrorKind::Busy => {
                thread::sleep(std::time::Duration::from_millis(50))
            }
            r => break r.unwrap(),
        }
    };
    assert!(first.unwrap() > u64::from(CHUNK), "resumed from {first:?}");
    assert!(stored_files(&repo, &got) == want_files);
}

//! Backups end to end: the real daemon with a file volume written through
//! an iSCSI initiator, a real `reservoir backup-server` process on
//! loopback, and the CLI in between. Full and incremental backups restore
//! to the volume's content at each point; a backup cut by `kill -9` of the
//! server resumes; verify names a damaged backup; a restore into a volume
//! in use is refused without --force; a wrong token is refused.

mod support;

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use reservoir_initiator::Initiator;
use serde_json::Value;
use support::{Backend, Config, Daemon, INITIATOR_1};

const IQN: &str = "iqn.2026-11.io.reservoir:backup";
const BLOCK: u32 = 512;
/// The snapshot engine's default chunk.
const CHUNK: usize = 64 << 10;
/// Bytes per WRITE or READ the tests issue.
const IO: usize = 128 << 10;

/// A `reservoir backup-server` child process with its repository and token.
struct BackupServer {
    child: Option<Child>,
    port: u16,
    repo: PathBuf,
    token: PathBuf,
    log: PathBuf,
}

impl BackupServer {
    fn start(root: &Path) -> BackupServer {
        let mut server = BackupServer {
            child: None,
            port: support::free_port(),
            repo: root.join("repo"),
            token: root.join("backup.token"),
            log: root.join("backup-server.log"),
        };
        server.spawn();
        assert!(server.token.is_file(), "the server creates its token file");
        server
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_reservoir"))
            .args(["backup-server", "--listen", &self.addr(), "--repo"])
            .arg(&self.repo)
            .arg("--token-file")
            .arg(&self.token)
            // Small checkpoints, so a cut backup resumes from well inside it.
            .args(["--checkpoint", "1MiB"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn reservoir backup-server");
        self.child = Some(child);
        let addr: SocketAddr = self.addr().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(
                Instant::now() < deadline,
                "backup server did not listen: {}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill_hard(&mut self) {
        let mut child = self.child.take().expect("server running");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for BackupServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn ok(what: &str, output: Output) -> String {
    support::succeeded(what, output)
}

fn json(what: &str, output: Output) -> Value {
    let text = ok(what, output);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

fn failed(what: &str, output: Output) -> String {
    assert!(
        !output.status.success(),
        "{what} succeeded but should not have:\n{}",
        support::stdout(&output)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Deterministic, never-all-zero data for `len` bytes at `offset` under `seed`.
fn data(seed: u64, offset: usize, len: usize) -> Vec<u8> {
    (offset / 8..(offset + len) / 8)
        .flat_map(|word| {
            let mut x =
                (word as u64 ^ seed.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            x ^= x >> 29;
            x.to_le_bytes()
        })
        .collect()
}

/// Writes `bytes` at `offset` through the initiator and into `model`.
fn write(host: &mut Initiator, model: &mut [u8], offset: usize, bytes: &[u8]) {
    for (i, piece) in bytes.chunks(IO).enumerate() {
        let at = offset + i * IO;
        host.write((at / BLOCK as usize) as u64, piece, BLOCK, false)
            .unwrap();
        model[at..at + piece.len()].copy_from_slice(piece);
    }
}

fn read_all(host: &mut Initiator, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    for at in (0..size).step_by(IO) {
        out.extend(
            host.read(
                (at / BLOCK as usize) as u64,
                (IO / BLOCK as usize) as u32,
                BLOCK,
            )
            .unwrap(),
        );
    }
    out
}

fn assert_image(path: &Path, expected: &[u8]) {
    let image = fs::read(path).unwrap();
    assert_eq!(image.len(), expected.len(), "{}", path.display());
    if let Some(at) = image.iter().zip(expected).position(|(a, b)| a != b) {
        panic!("{} differs at byte {at}", path.display());
    }
}

fn file_volume(mib: u64) -> Config {
    Config::default()
        .volume(
            "vol0",
            Backend::File {
                file_name: "vol0.img".into(),
            },
            mib,
        )
        .target(IQN, &["vol0"])
}

#[test]
fn full_and_incremental_backups_restore_each_point_and_verify_finds_damage() {
    const SIZE: usize = 16 << 20;
    let daemon = Daemon::start(&file_volume(16));
    let server = BackupServer::start(daemon.root());
    let token = server.token.to_str().unwrap().to_owned();
    let addr = server.addr();
    let mut host = support::connect(&daemon.url(IQN, 0), INITIATOR_1);
    let mut model = vec![0u8; SIZE];
    // Half the volume written, half left zero.
    write(&mut host, &mut model, 0, &data(1, 0, SIZE / 2));

    let run = [
        "backup",
        "run",
        "vol0",
        "--to",
        &addr,
        "--token-file",
        &token,
        "--json",
    ];
    let output = daemon.cli(&run);
    // Progress arrives as notifications before the response; off a
    // terminal the CLI prints it as plain lines, the last one finished.
    let progress = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        progress
            .lines()
            .any(|l| l.starts_with("100%") && l.contains("done in")),
        "{progress}"
    );
    let first = json("backup run (full)", output);
    assert_eq!(first["backup"]["parent"], Value::Null, "{first}");
    let point1 = model.clone();

    // Three chunks change, one of them twice.
    for chunk in [0usize, 5, 200, 5] {
        let at = chunk * CHUNK + 4096;
        write(&mut host, &mut model, at, &data(2 + chunk as u64, at, 8192));
    }
    let second = json("backup run (incremental)", daemon.cli(&run));
    assert_eq!(
        second["backup"]["parent"], first["backup"]["id"],
        "{second}"
    );
    assert_eq!(second["backup"]["changed_chunks"], 3, "{second}");
    assert!(
        second["retired_snapshot"] == first["backup"]["snapshot"],
        "{second}"
    );
    let snapshots = json(
        "snapshot list",
        daemon.cli(&["snapshot", "list", "vol0", "--json"]),
    );
    assert_eq!(
        snapshots["snapshots"].as_array().unwrap().len(),
        1,
        "only the base of the next incremental is kept: {snapshots}"
    );
    assert_eq!(
        read_all(&mut host, SIZE),
        model,
        "the initiator's view is the model"
    );

    let from = ["--from", &addr, "--token-file", &token];
    let list = json(
        "backup list",
        daemon.cli(&[&["backup", "list", "--json"][..], &from].concat()),
    );
    let chain = list[0]["backups"].as_array().unwrap();
    assert_eq!(chain.len(), 2, "{list}");
    assert_eq!(chain[1]["parent"], chain[0]["id"]);
    let (full_sent, incr_sent) = (
        chain[0]["bytes_sent"].as_u64().unwrap(),
        chain[1]["bytes_sent"].as_u64().unwrap(),
    );
    assert!(
        incr_sent * 20 < full_sent,
        "incremental {incr_sent} vs full {full_sent}"
    );
    let table = ok(
        "backup list (table)",
        daemon.cli(&[&["backup", "list"][..], &from].concat()),
    );
    assert!(
        table.contains("volume vol0") && table.contains("PARENT"),
        "{table}"
    );

    // Each point restores to a file, as it was.
    for (id, expected) in [(&chain[0]["id"], &point1), (&chain[1]["id"], &model)] {
        let file = daemon.root().join(format!("restore-{id}.img"));
        let id = id.to_string();
        let args = [
            &[
                "backup",
                "restore",
                "--backup",
                &id,
                "--to",
                file.to_str().unwrap(),
            ][..],
            &from,
        ]
        .concat();
        ok("backup restore to a file", daemon.cli(&args));
        assert_image(&file, expected);
    }

    // A wrong token is refused, whether the CLI or the daemon connects.
    let wrong = daemon.root().join("wrong.token");
    fs::write(&wrong, "0123456789abcdef0123456789abcdef\n").unwrap();
    let wrong = wrong.to_str().unwrap();
    for args in [
        vec!["backup", "list", "--from", &addr, "--token-file", wrong],
        vec![
            "backup",
            "run",
            "vol0",
            "--to",
            &addr,
            "--token-file",
            wrong,
        ],
    ] {
        let stderr = failed("a wrong token", daemon.cli(&args));
        assert!(stderr.contains("refused the token"), "{args:?}: {stderr}");
    }
    let snapshots = json(
        "snapshot list",
        daemon.cli(&["snapshot", "list", "vol0", "--json"]),
    );
    assert_eq!(
        snapshots["snapshots"].as_array().unwrap().len(),
        1,
        "a refused run leaves no snapshot behind: {snapshots}"
    );

    // Restoring into the volume while the initiator is logged in is
    // refused, and done with --force.
    let id1 = chain[0]["id"].to_string();
    let restore = [
        &["backup", "restore", "--backup", &id1, "--to", "vol0"][..],
        &from,
    ]
    .concat();
    let stderr = failed("restore into a volume in use", daemon.cli(&restore));
    assert!(
        stderr.contains("in use") && stderr.contains(INITIATOR_1) && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        read_all(&mut host, SIZE),
        model,
        "a refused restore writes nothing"
    );
    ok(
        "restore into a volume with --force",
        daemon.cli(&[&restore[..], &["--force"]].concat()),
    );
    assert_eq!(
        read_all(&mut host, SIZE),
        point1,
        "the volume is back at point 1"
    );
    // The restore's writes are tracked (it writes every block), so the
    // next backup is an incremental that restores to point 1 again.
    let third = json("backup run after a restore", daemon.cli(&run));
    assert_eq!(third["backup"]["parent"], second["backup"]["id"], "{third}");
    let file = daemon.root().join("restore-3.img");
    let id3 = third["backup"]["id"].to_string();
    ok(
        "restore the third backup",
        daemon.cli(
            &[
                &[
                    "backup",
                    "restore",
                    "--backup",
                    &id3,
                    "--to",
                    file.to_str().unwrap(),
                ][..],
                &from,
            ]
            .concat(),
        ),
    );
    assert_image(&file, &point1);

    // verify: clean, then one flipped byte in the full backup's data.
    let verify = [&["backup", "verify"][..], &from].concat();
    ok("backup verify", daemon.cli(&verify));
    let dir = fs::read_dir(&server.repo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&format!("b{id1}-"))
        })
        .expect("the full backup's directory");
    let data_file = dir.join("chunks.dat");
    let mut bytes = fs::read(&data_file).unwrap();
    bytes[1000] ^= 0x40;
    fs::write(&data_file, bytes).unwrap();
    let stderr = failed("verify of a damaged repository", daemon.cli(&verify));
    assert!(stderr.contains(&format!("backup {id1}")), "{stderr}");
    let local = failed(
        "verify --repo",
        daemon.cli(&["backup", "verify", "--repo", server.repo.to_str().unwrap()]),
    );
    assert!(local.contains(&format!("backup {id1}")), "{local}");
}

#[test]
fn a_backup_cut_by_kill_9_of_the_server_resumes_and_restores_identically() {
    const MIB: u64 = 48;
    const SIZE: usize = (MIB as usize) << 20;
    let daemon = Daemon::start(&file_volume(MIB));
    let mut server = BackupServer::start(daemon.root());
    let token = server.token.to_str().unwrap().to_owned();
    let addr = server.addr();
    let mut model = vec![0u8; SIZE];
    {
        let mut host = support::connect(&daemon.url(IQN, 0), INITIATOR_1);
        write(&mut host, &mut model, 0, &data(7, 0, SIZE));
    }

    let run = [
        "backup",
        "run",
        "vol0",
        "--to",
        &addr,
        "--token-file",
        &token,
        "--json",
    ];
    let cut = Command::new(env!("CARGO_BIN_EXE_reservoir"))
        .arg("--config")
        .arg(daemon.config_path())
        .args(run)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once it has acknowledged a good part of the stream
    // (the partial's checkpoint record says how far).
    const CUT_AT: u64 = 8 << 20;
    let deadline = Instant::now() + Duration::from_secs(30);
    let acknowledged = || -> u64 {
        let Ok(dir) = fs::read_dir(&server.repo) else {
            return 0;
        };
        dir.map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("partial-")
            })
            .filter_map(|p| fs::read(p.join("progress")).ok())
            .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
            .filter_map(|v| v["body"]["resume"]["next_offset"].as_u64())
            .max()
            .unwrap_or(0)
    };
    let mut cut_at = 0;
    while cut_at < CUT_AT {
        assert!(
            Instant::now() < deadline,
            "not {CUT_AT} bytes acknowledged within 30 s"
        );
        thread::sleep(Duration::from_millis(2));
        cut_at = acknowledged();
    }
    server.kill_hard();
    let output = cut.wait_with_output().unwrap();
    let stderr = failed("the backup whose server was killed", output);
    assert!(
        stderr.contains("run the command again to resume"),
        "{stderr}"
    );

    server.spawn();
    let resumed = json("the resumed backup", daemon.cli(&run));
    let sent = resumed["wire_bytes_this_run"].as_u64().unwrap();
    // At most what was not acknowledged, plus the records' framing.
    assert!(
        sent <= SIZE as u64 - cut_at + (64 << 10),
        "the resumed run sent {sent} of {SIZE} bytes though {cut_at} were acknowledged"
    );
    let snapshots = json(
        "snapshot list",
        daemon.cli(&["snapshot", "list", "vol0", "--json"]),
    );
    assert_eq!(
        snapshots["snapshots"].as_array().unwrap().len(),
        1,
        "the retry reused the pending snapshot: {snapshots}"
    );

    let from = ["--from", &addr, "--token-file", &token];
    let list = json(
        "backup list",
        daemon.cli(&[&["backup", "list", "--json"][..], &from].concat()),
    );
    let chain = list[0]["backups"].as_array().unwrap();
    assert_eq!(chain.len(), 1, "no half backup is listed: {list}");
    assert_eq!(chain[0]["id"], resumed["backup"]["id"]);
    ok(
        "verify",
        daemon.cli(&[&["backup", "verify"][..], &from].concat()),
    );
    let file = daemon.root().join("resumed.img");
    let id = chain[0]["id"].to_string();
    ok(
        "restore",
        daemon.cli(
            &[
                &[
                    "backup",
                    "restore",
                    "--backup",
                    &id,
                    "--to",
                    file.to_str().unwrap(),
                ][..],
                &from,
            ]
            .concat(),
        ),
    );
    assert_image(&file, &model);
}

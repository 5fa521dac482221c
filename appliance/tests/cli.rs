//! The appliance as an operator drives it: `reservoir serve` and the CLI
//! over the control socket, shutdown on SIGTERM, and bad input — an invalid
//! config, garbage on the control socket, malformed PDUs on the portal —
//! answered with a clear error while everything else carries on.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use support::{succeeded as ok, Config, Daemon, INITIATOR_1};

const IQN: &str = "iqn.2026-11.io.reservoir:cli";

fn json(what: &str, output: Output) -> Value {
    serde_json::from_str(&ok(what, output)).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"))
}

#[test]
fn volumes_targets_and_sessions_through_the_cli() {
    let daemon = Daemon::start(&Config::single_malloc("vol0", 64, IQN));

    let volumes = json("volume list", daemon.cli(&["volume", "list", "--json"]));
    assert_eq!(volumes[0]["name"], "vol0", "{volumes}");
    assert_eq!(volumes[0]["size_bytes"], 64u64 << 20);
    assert_eq!(volumes[0]["exported_by"][0], format!("{IQN}/0"));

    let created = json(
        "volume create",
        daemon.cli(&["volume", "create", "scratch", "--size", "8MiB", "--json"]),
    );
    assert_eq!(created["size_bytes"], 8u64 << 20, "{created}");
    let resized = json(
        "volume resize",
        daemon.cli(&["volume", "resize", "scratch", "16MiB", "--json"]),
    );
    assert_eq!(resized["size_bytes"], 16u64 << 20, "{resized}");
    let table = ok("volume list", daemon.cli(&["volume", "list"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("scratch ") && l.contains("16MiB")),
        "{table}"
    );

    // Refusals say why.
    let refused = daemon.cli(&["volume", "delete", "vol0"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("config file"));
    let refused = daemon.cli(&["volume", "create", "scratch", "--size", "1MiB"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already exists"));
    ok(
        "volume delete",
        daemon.cli(&["volume", "delete", "scratch"]),
    );

    let targets = json("target list", daemon.cli(&["target", "list", "--json"]));
    assert_eq!(targets[0]["iqn"], IQN, "{targets}");
    assert_eq!(targets[0]["luns"][0]["volume"], "vol0");

    // A logged-in host shows up with its ISID and negotiated parameters.
    let _host = support::connect(&daemon.url(IQN, 0), INITIATOR_1);
    let sessions = json("session list", daemon.cli(&["session", "list", "--json"]));
    let session = &sessions.as_array().unwrap()[0];
    assert_eq!(session["initiator"], INITIATOR_1, "{sessions}");
    assert_eq!(session["target"], IQN);
    assert_eq!(session["isid"].as_str().unwrap().len(), 12);
    assert!(
        session["params"]["MaxRecvDataSegmentLength"].is_string(),
        "{sessions}"
    );
    let table = ok("session list", daemon.cli(&["session", "list"]));
    assert!(table.contains(INITIATOR_1), "{table}");
}

#[test]
fn sigterm_flushes_and_exits_zero() {
    let mut daemon = Daemon::start(&Config::single_malloc("vol0", 16, IQN));
    let status = daemon.stop();
    assert!(status.success(), "exit status {status}");
    assert!(
        daemon.log().contains("every volume flushed"),
        "{}",
        daemon.log()
    );
}

#[test]
fn invalid_config_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\ndata_dir = \"/tmp/x\"\n[[portal]]\nlisten = \"127.0.0.1:3260\"\n\
         [[volume]]\nname = \"v\"\nbackend = \"malloc\"\nsize = \"lots\"\n",
    )
    .unwrap();
    let output = support::run(
        std::process::Command::new(env!("CARGO_BIN_EXE_reservoir"))
            .args(["serve", "--config"])
            .arg(&path),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("volume[0].size"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn garbage_on_the_control_socket_gets_json_rpc_errors() {
    let daemon = Daemon::start(&Config::single_malloc("vol0", 16, IQN));
    let socket = daemon.root().join("data").join("rpc.sock");
    let stream = UnixStream::connect(&socket).expect("control socket");
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for (line, code) in [
        ("{{{{\n", -32700),
        (
            "{\"jsonrpc\":\"2.0\",\"method\":\"nope\",\"id\":1}\n",
            -32601,
        ),
        (
            "{\"jsonrpc\":\"2.0\",\"method\":\"volume_resize\",\"params\":{\"name\":7},\"id\":2}\n",
            -32602,
        ),
    ] {
        writer.write_all(line.as_bytes()).unwrap();
        let mut reply = String::new();
        reader.read_line(&mut reply).unwrap();
        let reply: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["error"]["code"], code, "{line} -> {reply}");
    }
    // The same connection, and the daemon, still work.
    writer
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"volume_list\",\"id\":3}\n")
        .unwrap();
    let mut reply = String::new();
    reader.read_line(&mut reply).unwrap();
    assert!(reply.contains("vol0"), "{reply}");
}

/// Reads until the target closes the connection; false if it stays open.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn malformed_pdus_close_their_connection_and_spare_the_others() {
    let daemon = Daemon::start(&Config::single_malloc("vol0", 16, IQN));
    let mut host = support::connect(&daemon.url(IQN, 0), INITIATOR_1);
    let data = vec![0x5a; 4096];
    host.write(8, &data, 512, false).unwrap();

    let portal = format!("127.0.0.1:{}", daemon.port());
    // An unknown opcode before login.
    let mut garbage = TcpStream::connect(&portal).unwrap();
    garbage.write_all(&[0xff; 48]).unwrap();
    assert!(
        closed_within(&mut garbage, Duration::from_secs(5)),
        "garbage left open"
    );
    // A login PDU announcing a 16 MiB data segment: refused before any allocation.
    let mut oversized = TcpStream::connect(&portal).unwrap();
    let mut bhs = [0u8; 48];
    bhs[0] = 0x43; // Login Request, immediate
    bhs[1] = 0x87; // T, CSG=1, NSG=3
    bhs[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    oversized.write_all(&bhs).unwrap();
    assert!(
        closed_within(&mut oversized, Duration::from_secs(5)),
        "oversized left open"
    );
    // A truncated header, then silence: the login timer, not a panic, ends it.
    let mut truncated = TcpStream::connect(&portal).unwrap();
    truncated.write_all(&bhs[..20]).unwrap();
    drop(truncated);

    // The logged-in host never noticed.
    assert_eq!(host.read(8, 8, 512).unwrap(), data);
    ok("volume list", daemon.cli(&["volume", "list"]));
}

#[test]
fn resizing_an_exported_volume_raises_capacity_data_has_changed() {
    let daemon = Daemon::start(&Config::single_malloc("vol0", 16, IQN));
    let mut host = support::connect(&daemon.url(IQN, 0), INITIATOR_1);
    assert_eq!(host.read_capacity().unwrap().blocks, (16 << 20) / 512);

    ok(
        "volume resize",
        daemon.cli(&["volume", "resize", "vol0", "32MiB"]),
    );
    // SPC-4 5.14: the next command reports CAPACITY DATA HAS CHANGED (2Ah/09h).
    let error = host.test_unit_ready().expect_err("a unit attention");
    let sense = error.sense().expect("sense data");
    assert_eq!(
        sense.key,
        reservoir_initiator::SenseKey::UnitAttention,
        "{error}"
    );
    assert_eq!((sense.asc, sense.ascq), (0x2a, 0x09), "{error}");
    assert_eq!(host.read_capacity().unwrap().blocks, (32 << 20) / 512);
}

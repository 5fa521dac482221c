//! End to end on loopback: one real `reservoir serve` (malloc replica LUNs
//! and a shared volume) and three node agents ([`Node`] runtimes in this
//! process, each with its own state directory, heartbeat port and iSCSI
//! sessions). The shared volume's owner is stopped without any cleanup,
//! as `kill -9` would; the test measures how long until another node owns
//! the volume, checks the bound, and checks that the dead node's
//! registration is gone and a write through its I_T nexus is refused with
//! RESERVATION CONFLICT. The nodes share a secret, and while the owner is
//! dead a forger heartbeats in its name without it: the failover must not
//! notice.
//!
//! The daemon binary is located next to this test's own executable
//! (`<target>/debug/reservoir`) and built with `cargo build -p reservoir`
//! first if it is missing.

use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use reservoir_cluster::{
    failover_bound_ms, node_isid, request, Generation, Heartbeat, KeyRole, Node, NodeConfig,
    NodeId, Request, Response, Role, Sealer, Secret, Status,
};
use reservoir_initiator::{ConnectOptions, Initiator};

const D: u64 = 1000;
const IQN: &str = "iqn.2026-11.io.reservoir.test:cluster";

fn daemon_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let debug = exe
        .parent()
        .and_then(Path::parent)
        .expect("<target>/debug/deps/<test>");
    let binary = debug.join("reservoir");
    if !binary.is_file() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "reservoir"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env(
                "CARGO_TARGET_DIR",
                debug.parent().expect("<target> above debug"),
            )
            .status()
            .expect("run cargo build -p reservoir");
        assert!(status.success(), "cargo build -p reservoir failed");
    }
    binary
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "daemon log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn start_daemon(dir: &Path, port: u16) -> Daemon {
    let mut toml = format!(
        "[server]\ndata_dir = \"{}\"\n\n[[portal]]\nlisten = \"127.0.0.1:{port}\"\n\n",
        dir.join("data").display()
    );
    for (name, mib) in [("q0", 1), ("q1", 1), ("q2", 1), ("shared", 8)] {
        writeln!(
            toml,
            "[[volume]]\nname = \"{name}\"\nbackend = \"malloc\"\nsize = \"{mib}MiB\"\n"
        )
        .unwrap();
    }
    writeln!(
        toml,
        "[[target]]\niqn = \"{IQN}\"\nluns = [\"q0\", \"q1\", \"q2\", \"shared\"]\n"
    )
    .unwrap();
    let config = dir.join("reservoir.toml");
    std::fs::write(&config, toml).unwrap();
    let log = dir.join("daemon.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(daemon_binary())
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn reservoir serve");
    let daemon = Daemon { child, log };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "reservoir serve did not start");
        thread::sleep(Duration::from_millis(50));
    }
    daemon
}

/// Every node shares the secret in `dir/cluster.key`.
fn node_config(dir: &Path, me: u8, portal: u16, heartbeat: &[u16; 3]) -> NodeConfig {
    let secret = dir.join("cluster.key");
    std::fs::write(&secret, "an e2e cluster secret\n").unwrap();
    let mut toml = format!(
        "cluster = \"e2e\"\nnode = {me}\nstate_dir = \"{}\"\ndefense_interval_ms = {D}\n\
         portals = [\"127.0.0.1:{portal}\"]\nsecret_file = \"{}\"\n\n",
        dir.join(format!("node{me}")).display(),
        secret.display()
    );
    for (i, port) in heartbeat.iter().enumerate() {
        writeln!(
            toml,
            "[[nodes]]\nid = {}\naddress = \"127.0.0.1:{port}\"\n",
            i + 1
        )
        .unwrap();
    }
    writeln!(
        toml,
        "[[volumes]]\nname = \"shared\"\ntarget = \"{IQN}\"\nlun = 3\n"
    )
    .unwrap();
    for lun in 0..3 {
        writeln!(toml, "[[quorum]]\ntarget = \"{IQN}\"\nlun = {lun}\n").unwrap();
    }
    NodeConfig::parse(&toml).unwrap()
}

/// Sends `dead`'s heartbeats, sealed with a wrong secret and a generation
/// above any real one, to every node until `forging` is cleared.
fn forge_heartbeats(dead: NodeId, ports: &[u16; 3], forging: &AtomicBool) {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let generation = Generation::new(1_000_000).unwrap();
    let wrong = Secret::new(b"not the cluster secret").unwrap();
    let mut sealer = Sealer::new("e2e", dead, generation, Some(wrong));
    while forging.load(Ordering::SeqCst) {
        let heartbeat = Heartbeat {
            node: dead,
            generation,
            epoch: u64::MAX,
            quorum_owner: true,
            degraded: false,
        };
        let datagram = sealer.seal(&serde_json::json!({ "Heartbeat": heartbeat }));
        for port in ports {
            let _ = udp.send_to(&datagram, ("127.0.0.1", *port));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn owner(statuses: &[(u8, Status)]) -> Option<u8> {
    statuses
        .iter()
        .find(|(_, s)| s.core.volumes[0] == Role::Owner)
        .map(|(id, _)| *id)
}

fn statuses(nodes: &[(u8, Node)]) -> Vec<(u8, Status)> {
    nodes
        .iter()
        .map(|(id, n)| (*id, n.status().unwrap()))
        .collect()
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killing_the_volume_and_quorum_owner_fails_over_and_fences_it() {
    kill_the_owner(false);
}

/// The volume is first moved (`reservoir node move`, over the control
/// socket) to a node that is not the quorum owner, so only the volume
/// fails over.
#[test]
fn killing_a_volume_owner_that_is_not_the_quorum_owner_fails_over_faster() {
    kill_the_owner(true);
}

fn kill_the_owner(move_first: bool) {
    let dir = tempfile::tempdir().unwrap();
    let portal = free_tcp_port();
    let _daemon = start_daemon(dir.path(), portal);
    let heartbeat = [free_udp_port(), free_udp_port(), free_udp_port()];
    let configs: Vec<NodeConfig> = (1..=3)
        .map(|id| node_config(dir.path(), id, portal, &heartbeat))
        .collect();
    let mut nodes: Vec<(u8, Node)> = configs
        .iter()
        .map(|c| (c.me.get(), Node::start(c.clone()).unwrap()))
        .collect();

    let formed = Instant::now();
    let first = wait_for("a volume owner", Duration::from_secs(60), || {
        let s = statuses(&nodes);
        let all_in = s
            .iter()
            .all(|(_, s)| s.core.volumes_active && s.core.record.members.len() == 3);
        owner(&s).filter(|_| all_in)
    });
    eprintln!(
        "cluster formed and node {first} owns the volume after {:?}",
        formed.elapsed()
    );
    let status = nodes[0].1.status().unwrap();
    let quorum_owner = status.core.record.owner.map(NodeId::get);
    let first = if move_first && quorum_owner == Some(first) {
        let to = (1..=3).find(|&n| Some(n) != quorum_owner).unwrap();
        // Asked of the third node, which forwards it to the owner.
        let via = (1..=3).find(|&n| n != first && n != to).unwrap();
        let asked = Instant::now();
        let answer = request(
            &configs[usize::from(via) - 1].socket_path(),
            &Request::Move {
                volume: "shared".into(),
                to: NodeId::new(to).unwrap(),
            },
        )
        .unwrap();
        assert!(matches!(answer, Response::MoveRequested), "{answer:?}");
        wait_for("the planned move", Duration::from_millis(4 * D), || {
            (owner(&statuses(&nodes)) == Some(to)).then_some(())
        });
        eprintln!("MOVE: node {first} -> node {to} took {:?}", asked.elapsed());
        to
    } else {
        first
    };

    // Kill the owner: its threads stop, its sessions drop, nothing is
    // released or unregistered. Meanwhile a forger that does not know the
    // secret heartbeats in the dead node's name; were it believed, the
    // dead node would look alive and nobody would take over.
    let i = nodes.iter().position(|(id, _)| *id == first).unwrap();
    let (_, victim) = nodes.remove(i);
    let killed = Instant::now();
    drop(victim);
    let forging = Arc::new(AtomicBool::new(true));
    let forger = {
        let forging = forging.clone();
        let dead = NodeId::new(first).unwrap();
        thread::spawn(move || forge_heartbeats(dead, &heartbeat, &forging))
    };
    // Twice the documented bound, as the process tests: a loaded machine
    // may add a round; a failover that never happens still fails.
    let bound = Duration::from_millis(2 * failover_bound_ms(D));
    let next = wait_for("the next owner", bound, || owner(&statuses(&nodes)));
    let failover = killed.elapsed();
    forging.store(false, Ordering::SeqCst);
    forger.join().unwrap();
    eprintln!(
        "FAILOVER: node {first} (quorum owner: {}) killed; node {next} owns the volume after {failover:?} (D = {D} ms, bound {bound:?})",
        quorum_owner == Some(first)
    );

    // The dead node leaves the record and its key leaves the LUN.
    let j = nodes.iter().position(|(id, _)| *id == next).unwrap();
    let dead = NodeId::new(first).unwrap();
    wait_for(
        "the dead node's registration to go",
        Duration::from_millis(6 * D),
        || {
            let s = nodes[j].1.status().unwrap();
            let keys = &s.volumes[0].keys;
            (!s.core.record.members.contains_key(&dead)
                && !keys.is_empty()
                && keys.iter().all(|k| k.node != Some(dead))
                && keys.iter().any(|k| {
                    k.node == Some(NodeId::new(next).unwrap()) && k.role == Some(KeyRole::Owner)
                }))
            .then_some(())
        },
    );

    // A write through the dead node's I_T nexus is refused.
    let mut options = ConnectOptions::new(format!("iqn.2026-11.io.reservoir.node:e2e-{first}"));
    options.isid = Some(node_isid(dead, 3));
    let mut lu =
        Initiator::connect(&format!("iscsi://127.0.0.1:{portal}/{IQN}/3"), options).unwrap();
    let bs = lu.read_capacity().unwrap().block_size;
    let err = lu
        .write(0, &vec![0xee; bs as usize], bs, true)
        .expect_err("a fenced node's write must not land");
    assert!(err.is_reservation_conflict(), "{err}");
}

//! Cluster node agents as operators run them: one `reservoir node run`
//! process per node with its own TOML, state directory and log, queried
//! with `reservoir --json node status`; sessions that log in as a node's
//! own I_T nexus (its initiator name and `node_isid`) to write and read the
//! shared volume; and network namespaces with veth pairs, so a test can cut
//! one node off from its peers.

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use reservoir_cluster::{
    load_last_surviving, node_isid, ClusterKey, ClusterSignature, NodeId, Status,
};
use reservoir_initiator::{ConnectOptions, Error as IscsiError, Initiator, Pattern, SenseKey};

/// A loopback UDP port that was free a moment ago (a node's heartbeats).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .expect("bind an ephemeral UDP port")
        .local_addr()
        .expect("local address")
        .port()
}

/// Polls `check` every 100 ms until it yields a value; returns it with the
/// time it took. Fails the test after `limit`.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return (value, start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The median of measured durations (the upper one of an even count).
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// A LUN as a node configuration names it.
#[derive(Debug, Clone)]
pub struct LunSpec {
    pub target: String,
    pub lun: u16,
    /// `IP:port` when it is not on the node's first portal.
    pub portal: Option<String>,
}

impl LunSpec {
    pub fn new(target: &str, lun: u16) -> Self {
        LunSpec {
            target: target.to_owned(),
            lun,
            portal: None,
        }
    }

    pub fn on(mut self, portal: &str) -> Self {
        self.portal = Some(portal.to_owned());
        self
    }
}

/// What every node of one test cluster shares; rendered per node by
/// [`ClusterSpec::node_toml`].
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub name: String,
    pub defense_ms: u64,
    /// Heartbeat `IP:port` of node 1, 2, … in order.
    pub heartbeats: Vec<String>,
    /// The shared volume, named `shared`.
    pub volume: LunSpec,
    pub quorum: Vec<LunSpec>,
    pub witness: Option<LunSpec>,
}

impl ClusterSpec {
    /// `nodes` nodes heartbeating on loopback.
    pub fn loopback(name: &str, defense_ms: u64, nodes: u8, volume: LunSpec) -> Self {
        ClusterSpec {
            name: name.to_owned(),
            defense_ms,
            heartbeats: (0..nodes)
                .map(|_| format!("127.0.0.1:{}", free_udp_port()))
                .collect(),
            volume,
            quorum: Vec::new(),
            witness: None,
        }
    }

    pub fn signature(&self) -> ClusterSignature {
        ClusterSignature::of(&self.name)
    }

    /// The initiator name `reservoir node run` uses for node `me`.
    pub fn initiator(&self, me: u8) -> String {
        format!("iqn.2026-11.io.reservoir.node:{}-{me}", self.name)
    }

    /// Node `me`'s TOML; `portal` is how it reaches the appliance.
    pub fn node_toml(&self, me: u8, state_dir: &Path, portal: &str) -> String {
        let mut toml = format!(
            "cluster = \"{}\"\nnode = {me}\nstate_dir = \"{}\"\ndefense_interval_ms = {}\n\
             portals = [\"{portal}\"]\n\n",
            self.name,
            state_dir.display(),
            self.defense_ms
        );
        for (i, address) in self.heartbeats.iter().enumerate() {
            writeln!(toml, "[[nodes]]\nid = {}\naddress = \"{address}\"\n", i + 1).unwrap();
        }
        let lun = |toml: &mut String, header: &str, name: Option<&str>, l: &LunSpec| {
            writeln!(toml, "{header}").unwrap();
            if let Some(name) = name {
                writeln!(toml, "name = \"{name}\"").unwrap();
            }
            writeln!(toml, "target = \"{}\"\nlun = {}", l.target, l.lun).unwrap();
            if let Some(portal) = &l.portal {
                writeln!(toml, "portal = \"{portal}\"").unwrap();
            }
            toml.push('\n');
        };
        lun(&mut toml, "[[volumes]]", Some("shared"), &self.volume);
        for q in &self.quorum {
            lun(&mut toml, "[[quorum]]", None, q);
        }
        if let Some(w) = &self.witness {
            lun(&mut toml, "[witness]", None, w);
        }
        toml
    }
}

/// One `reservoir node run` process. Dropping it SIGKILLs the process and,
/// if the test is failing, prints the agent's log.
#[derive(Debug)]
pub struct Agent {
    pub id: u8,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    log: PathBuf,
    /// Runs inside this network namespace (`ip netns exec`).
    netns: Option<String>,
    child: Option<Child>,
    starts: u32,
}

impl Agent {
    /// Writes node `id`'s configuration under `dir` and starts its agent;
    /// `portal` is how it reaches the appliance, `netns` where it runs.
    pub fn start(
        spec: &ClusterSpec,
        id: u8,
        dir: &Path,
        portal: &str,
        netns: Option<String>,
    ) -> Agent {
        let state_dir = dir.join(format!("node{id}"));
        let config = dir.join(format!("node{id}.toml"));
        fs::write(&config, spec.node_toml(id, &state_dir, portal)).expect("write node config");
        let mut agent = Agent {
            id,
            config,
            state_dir,
            log: dir.join(format!("node{id}.log")),
            netns,
            child: None,
            starts: 0,
        };
        agent.spawn();
        agent
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open agent log");
        {
            use std::io::Write as _;
            writeln!(log, "--- start #{} ---", self.starts).expect("write agent log");
        }
        let binary = env!("CARGO_BIN_EXE_reservoir");
        let mut command = match &self.netns {
            // `ip netns exec` execs the program: the child's pid is the agent's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, binary]);
                c
            }
            None => Command::new(binary),
        };
        let child = command
            .args(["node", "run"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn reservoir node run");
        self.child = Some(child);
    }

    /// SIGKILL: nothing is released or unregistered.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the agent");
            child.wait().expect("reap the agent");
        }
    }

    /// Starts the agent again with the same configuration and state.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill the agent before restarting it");
        self.spawn();
    }

    /// `reservoir --json node status`, or `None` while the agent is not
    /// answering (starting, or dead).
    pub fn status(&self) -> Option<Status> {
        let output = Command::new(env!("CARGO_BIN_EXE_reservoir"))
            .args(["--json", "node", "status"])
            .arg(&self.config)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| serde_json::from_slice(&output.stdout).ok())
            .flatten()
    }

    /// The persisted last-surviving flag in the agent's state directory.
    pub fn last_surviving(&self) -> bool {
        load_last_surviving(&self.state_dir).expect("read the last-surviving flag")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill_hard();
        if thread::panicking() {
            eprintln!(
                "---- node {} log ({}) ----\n{}---- end of log ----",
                self.id,
                self.log.display(),
                self.log()
            );
        }
    }
}

/// The holder of the shared volume's reservation as every agent in
/// `agents` sees it, if they all answer and agree.
pub fn agreed_owner(agents: &[&Agent]) -> Option<u8> {
    let owners: Vec<Option<NodeId>> = agents
        .iter()
        .map(|a| a.status().and_then(|s| s.volume_owner("shared")))
        .collect();
    match owners.first() {
        Some(Some(first)) if owners.iter().all(|o| o == &Some(*first)) => Some(first.get()),
        _ => None,
    }
}

/// Nodes whose keys are registered on a LUN, read with READ KEYS through a
/// session of its own (any nexus may read them).
pub fn registered_nodes(url: &str, spec: &ClusterSpec) -> Vec<NodeId> {
    let mut lu = super::connect(url, super::INITIATOR_1);
    let keys = lu.pr_read_keys().expect("READ KEYS");
    keys.keys
        .iter()
        .filter_map(|k| ClusterKey::decode(k.0, spec.signature()).map(|k| k.node))
        .collect()
}

/// A session as node `node` itself: its initiator name and the ISID its
/// agent uses for `lun`, so the target sees the node's own I_T nexus and
/// its registration. Logging in reinstates the agent's session on that
/// nexus (RFC 7143 §6.3.5); the agent logs in again on its next command,
/// which may in turn end this session, so every command here retries on a
/// dropped connection.
pub struct NodeSession {
    lu: Initiator,
    pub block_size: u32,
}

/// Either the command's result, or RESERVATION CONFLICT.
pub type Fenced<T> = Result<T, IscsiError>;

impl NodeSession {
    pub fn login(url: &str, spec: &ClusterSpec, node: u8, lun: u16) -> NodeSession {
        let mut options = ConnectOptions::new(spec.initiator(node));
        options.isid = Some(node_isid(NodeId::new(node).unwrap(), lun));
        options.timeout = Duration::from_secs(5);
        let mut lu = Initiator::connect(url, options).expect("log in as the node");
        let block_size = retry(&mut lu, |lu| lu.read_capacity())
            .expect("READ CAPACITY")
            .block_size;
        NodeSession { lu, block_size }
    }

    /// Writes `pattern` to `blocks` blocks from `lba`, one FUA write per
    /// block; stops at the first RESERVATION CONFLICT and returns it.
    pub fn write(&mut self, pattern: Pattern, lba: u64, blocks: u64) -> Fenced<()> {
        let bs = self.block_size;
        let mut buf = vec![0u8; bs as usize];
        for at in lba..lba + blocks {
            pattern.fill(at, bs as usize, &mut buf);
            retry(&mut self.lu, |lu| lu.write(at, &buf, bs, true))?;
        }
        Ok(())
    }

    pub fn read(&mut self, lba: u64, blocks: u32) -> Vec<u8> {
        let bs = self.block_size;
        retry(&mut self.lu, |lu| lu.read(lba, blocks, bs)).expect("READ through the node")
    }
}

/// Runs `command`, logging in again after a dropped connection and
/// repeating it after a unit attention; any other error (RESERVATION
/// CONFLICT among them) is returned.
fn retry<T>(
    lu: &mut Initiator,
    mut command: impl FnMut(&mut Initiator) -> Result<T, IscsiError>,
) -> Result<T, IscsiError> {
    let mut last = None;
    for _ in 0..20 {
        match command(lu) {
            Ok(value) => return Ok(value),
            Err(e) if e.is_reservation_conflict() => return Err(e),
            Err(e) if e.sense().is_some_and(|s| s.key == SenseKey::UnitAttention) => last = Some(e),
            Err(e) if e.needs_reconnect() => {
                last = Some(e);
                thread::sleep(Duration::from_millis(20));
                let _ = lu.reconnect();
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("at least one attempt failed"))
}

/// The record block of a quorum replica, read through a session of its own.
pub fn read_block(url: &str, lba: u64) -> Vec<u8> {
    let mut lu = super::connect(url, super::INITIATOR_2);
    let bs = lu.read_capacity().expect("READ CAPACITY").block_size;
    lu.read(lba, 1, bs).expect("READ")
}

/// Network namespaces for one test, removed on drop (also when the test
/// panics). Node `i` (1-based) lives in its own namespace with two links:
///
/// ```text
///   root namespace (the appliance)        switch namespace
///     rv<pid>h<i> 10.A.B.(4i+1)/30          br0 ── b<i>
///          │ veth                                   │ veth
///     up0 10.A.B.(4i+2)/30 ── node i ── hb 192.168.77.i/24
/// ```
///
/// `up0` reaches the appliance (which listens on the root-side address as
/// well); `hb` reaches the other nodes through a bridge in a namespace of
/// its own. [`Network::cut`] downs a node's `hb`: it loses its peers but
/// keeps its iSCSI sessions. A.B come from the test's pid, so concurrent
/// runs do not collide; the root namespace gains only the /30s of the veth
/// ends, which go away with the namespaces.
pub struct Network {
    prefix: String,
    nodes: u8,
    net: [u8; 2],
    /// Namespaces created so far, for cleanup.
    created: Vec<String>,
}

fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `ip` ({e}): the partition test needs iproute2 \
                 (scripts/test.sh installs it) and root"
            )
        });
    assert!(
        output.status.success(),
        "ip {} failed: {} (the partition test needs root for network namespaces)",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

impl Network {
    pub fn create(nodes: u8) -> Network {
        let pid = std::process::id();
        let mut net = Network {
            prefix: format!("rv{pid}"),
            nodes,
            net: [100 + ((pid >> 8) % 100) as u8, (pid & 0xff) as u8],
            created: Vec::new(),
        };
        let switch = net.switch();
        ip(&["netns", "add", &switch]);
        net.created.push(switch.clone());
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for i in 1..=nodes {
            let ns = net.namespace(i);
            ip(&["netns", "add", &ns]);
            net.created.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            // The appliance link.
            let host = format!("{}h{i}", net.prefix);
            ip(&[
                "link", "add", &host, "type", "veth", "peer", "name", "up0", "netns", &ns,
            ]);
            ip(&[
                "addr",
                "add",
                &format!("{}/30", net.host_addr(i)),
                "dev",
                &host,
            ]);
            ip(&["link", "set", &host, "up"]);
            let up = format!("{}/30", net.upstream_addr(i));
            ip(&["-n", &ns, "addr", "add", &up, "dev", "up0"]);
            ip(&["-n", &ns, "link", "set", "up0", "up"]);
            // The heartbeat link, to the switch's bridge.
            let port = format!("b{i}");
            ip(&[
                "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "hb", "netns",
                &ns,
            ]);
            ip(&["-n", &switch, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &switch, "link", "set", &port, "up"]);
            let hb = format!("{}/24", net.heartbeat_addr(i));
            ip(&["-n", &ns, "addr", "add", &hb, "dev", "hb"]);
            ip(&["-n", &ns, "link", "set", "hb", "up"]);
        }
        net
    }

    fn switch(&self) -> String {
        format!("{}sw", self.prefix)
    }

    /// Node `i`'s namespace.
    pub fn namespace(&self, i: u8) -> String {
        format!("{}n{i}", self.prefix)
    }

    /// The root namespace's end of node `i`'s appliance link.
    pub fn host_addr(&self, i: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net[0], self.net[1], 4 * i + 1)
    }

    fn upstream_addr(&self, i: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net[0], self.net[1], 4 * i + 2)
    }

    /// Node `i`'s heartbeat address (inside the namespaces only).
    pub fn heartbeat_addr(&self, i: u8) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, 77, i)
    }

    pub fn nodes(&self) -> u8 {
        self.nodes
    }

    /// Cuts node `i` off from its peers; its appliance link stays up.
    pub fn cut(&self, i: u8) {
        ip(&["-n", &self.namespace(i), "link", "set", "hb", "down"]);
    }

    pub fn heal(&self, i: u8) {
        ip(&["-n", &self.namespace(i), "link", "set", "hb", "up"]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends, and with them their
        // peers in the root namespace.
        for ns in self.created.drain(..).rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stdin(Stdio::null())
                .output();
        }
    }
}

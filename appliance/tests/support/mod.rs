//! Shared helpers for the appliance's integration tests: start the real
//! `reservoir serve` daemon on a free loopback port with a generated
//! configuration, and locate the libiscsi command-line tools.
//!
//! Every test crate under `tests/` includes this module and uses a different
//! subset of it, hence the crate-level `dead_code` allowance below.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod cluster;

/// How long the daemon may take to accept TCP connections after spawn.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the daemon may take to exit after SIGTERM before it is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Initiator names used by every test, so target logs read alike.
pub const INITIATOR_1: &str = "iqn.2026-11.io.reservoir.test:initiator-1";
pub const INITIATOR_2: &str = "iqn.2026-11.io.reservoir.test:initiator-2";

/// Returns the full path of a libiscsi tool, or fails the test with the
/// instruction that installs it. A missing tool must never let a test pass.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: run scripts/test.sh as root \
                 (it installs Debian's libiscsi-bin), or `apt-get install libiscsi-bin`"
            )
        })
}

/// Runs a command to completion, capturing stdout and stderr.
pub fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// A command's stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts the command succeeded and returns its stdout.
pub fn succeeded(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(&output)
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener.local_addr().expect("local address").port()
}

/// Where a volume keeps its blocks.
#[derive(Debug, Clone)]
pub enum Backend {
    /// RAM; contents are lost when the daemon exits.
    Malloc,
    /// A regular file, named relative to the daemon's scratch directory.
    File { file_name: String },
}

#[derive(Debug, Clone)]
pub struct Volume {
    pub name: String,
    pub backend: Backend,
    pub size_mib: u64,
}

#[derive(Debug, Clone)]
pub struct Chap {
    pub user: String,
    pub secret: String,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub iqn: String,
    pub luns: Vec<String>,
    pub read_only: bool,
    pub chap: Option<Chap>,
    pub mutual_chap: Option<Chap>,
    pub allowed_initiators: Option<Vec<String>>,
}

/// The part of `reservoir serve`'s configuration a test chooses; the data
/// directory and the portal are filled in by [`Daemon::start`].
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub volumes: Vec<Volume>,
    pub targets: Vec<Target>,
    /// Addresses the daemon also listens on, at the same port as loopback.
    pub listen_also: Vec<std::net::IpAddr>,
    /// `[server] io_workers`, when the test sets it.
    pub io_workers: Option<usize>,
}

impl Config {
    /// One malloc volume `name` of `size_mib` MiB exported as LUN 0 of `iqn`.
    pub fn single_malloc(name: &str, size_mib: u64, iqn: &str) -> Self {
        Config::default()
            .volume(name, Backend::Malloc, size_mib)
            .target(iqn, &[name])
    }

    pub fn volume(mut self, name: &str, backend: Backend, size_mib: u64) -> Self {
        self.volumes.push(Volume {
            name: name.to_owned(),
            backend,
            size_mib,
        });
        self
    }

    pub fn target(mut self, iqn: &str, luns: &[&str]) -> Self {
        self.targets.push(Target {
            iqn: iqn.to_owned(),
            luns: luns.iter().map(|l| (*l).to_owned()).collect(),
            read_only: false,
            chap: None,
            mutual_chap: None,
            allowed_initiators: None,
        });
        self
    }

    /// Also listen on `address` (same port), e.g. the root end of a veth.
    pub fn listen_also(mut self, address: std::net::IpAddr) -> Self {
        self.listen_also.push(address);
        self
    }

    /// Runs file and device I/O on `count` worker threads.
    pub fn io_workers(mut self, count: usize) -> Self {
        self.io_workers = Some(count);
        self
    }

    /// Marks the most recently added target read-only.
    pub fn read_only(mut self) -> Self {
        self.last_target().read_only = true;
        self
    }

    /// Requires CHAP on the most recently added target.
    pub fn chap(mut self, user: &str, secret: &str) -> Self {
        self.last_target().chap = Some(Chap {
            user: user.to_owned(),
            secret: secret.to_owned(),
        });
        self
    }

    /// The most recently added target also authenticates itself to the
    /// initiator (mutual CHAP).
    pub fn mutual_chap(mut self, user: &str, secret: &str) -> Self {
        self.last_target().mutual_chap = Some(Chap {
            user: user.to_owned(),
            secret: secret.to_owned(),
        });
        self
    }

    /// Only these initiators may log in to (or discover) the most recently
    /// added target.
    pub fn allowed_initiators(mut self, names: &[&str]) -> Self {
        self.last_target().allowed_initiators =
            Some(names.iter().map(|n| (*n).to_owned()).collect());
        self
    }

    fn last_target(&mut self) -> &mut Target {
        self.targets
            .last_mut()
            .expect("add a target before setting its options")
    }

    /// Renders the TOML that `reservoir serve --config` reads.
    fn render(&self, root: &Path, port: u16) -> String {
        let mut toml = String::new();
        let data_dir = root.join("data");
        writeln!(toml, "[server]\ndata_dir = {}", quoted(&data_dir)).unwrap();
        if let Some(count) = self.io_workers {
            writeln!(toml, "io_workers = {count}").unwrap();
        }
        toml.push('\n');
        writeln!(toml, "[[portal]]\nlisten = \"127.0.0.1:{port}\"\n").unwrap();
        for address in &self.listen_also {
            writeln!(toml, "[[portal]]\nlisten = \"{address}:{port}\"\n").unwrap();
        }
        for volume in &self.volumes {
            writeln!(toml, "[[volume]]\nname = {}", quoted(&volume.name)).unwrap();
            match &volume.backend {
                Backend::Malloc => writeln!(toml, "backend = \"malloc\"").unwrap(),
                Backend::File { file_name } => writeln!(
                    toml,
                    "backend = \"file\"\npath = {}",
                    quoted(root.join(file_name))
                )
                .unwrap(),
            }
            writeln!(toml, "size = \"{}MiB\"\n", volume.size_mib).unwrap();
        }
        for target in &self.targets {
            writeln!(toml, "[[target]]\niqn = {}", quoted(&target.iqn)).unwrap();
            let luns: Vec<String> = target.luns.iter().map(quoted).collect();
            writeln!(toml, "luns = [{}]", luns.join(", ")).unwrap();
            if target.read_only {
                writeln!(toml, "read_only = true").unwrap();
            }
            if let Some(chap) = &target.chap {
                writeln!(
                    toml,
                    "chap = {{ user = {}, secret = {} }}",
                    quoted(&chap.user),
                    quoted(&chap.secret)
                )
                .unwrap();
            }
            if let Some(chap) = &target.mutual_chap {
                writeln!(
                    toml,
                    "mutual_chap = {{ user = {}, secret = {} }}",
                    quoted(&chap.user),
                    quoted(&chap.secret)
                )
                .unwrap();
            }
            if let Some(names) = &target.allowed_initiators {
                let names: Vec<String> = names.iter().map(quoted).collect();
                writeln!(toml, "allowed_initiators = [{}]", names.join(", ")).unwrap();
            }
            toml.push('\n');
        }
        toml
    }
}

/// A TOML basic string.
fn quoted(value: impl AsRef<Path>) -> String {
    let text = value.as_ref().to_str().expect("test paths are UTF-8");
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => write!(out, "\\u{:04X}", u32::from(c)).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A running `reservoir serve`. Dropping it sends SIGTERM (SIGKILL after
/// [`SHUTDOWN_TIMEOUT`]); if the test is failing, the daemon's log is printed.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    port: u16,
    root: TempDir,
    config_path: PathBuf,
    log_path: PathBuf,
    starts: u32,
}

impl Daemon {
    /// Starts the daemon on a free loopback port with a fresh scratch
    /// directory and waits until the portal accepts connections.
    pub fn start(config: &Config) -> Daemon {
        let root = tempfile::Builder::new()
            .prefix("reservoir-test-")
            .tempdir()
            .expect("create a scratch directory");
        for volume in &config.volumes {
            if let Backend::File { file_name } = &volume.backend {
                // A sparse file of the volume's size, as an operator would provide.
                let file = File::create(root.path().join(file_name)).expect("create backing file");
                file.set_len(volume.size_mib << 20)
                    .expect("size backing file");
            }
        }
        let port = free_port();
        let config_path = root.path().join("reservoir.toml");
        fs::write(&config_path, config.render(root.path(), port)).expect("write config");
        let log_path = root.path().join("daemon.log");
        let mut daemon = Daemon {
            child: None,
            port,
            root,
            config_path,
            log_path,
            starts: 0,
        };
        daemon.spawn();
        daemon
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon is running").id()
    }

    /// The scratch directory holding the config, the data dir, file volumes and the log.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// `iscsi://127.0.0.1:PORT/IQN/LUN`
    pub fn url(&self, iqn: &str, lun: u32) -> String {
        format!("iscsi://127.0.0.1:{}/{iqn}/{lun}", self.port)
    }

    /// `iscsi://USER%SECRET@127.0.0.1:PORT/IQN/LUN`
    pub fn chap_url(&self, user: &str, secret: &str, iqn: &str, lun: u32) -> String {
        format!(
            "iscsi://{user}%{secret}@127.0.0.1:{}/{iqn}/{lun}",
            self.port
        )
    }

    /// The config file the daemon was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Runs the `reservoir` CLI against this daemon (`--config` its file).
    pub fn cli(&self, args: &[&str]) -> Output {
        run(Command::new(env!("CARGO_BIN_EXE_reservoir"))
            .arg("--config")
            .arg(&self.config_path)
            .args(args))
    }

    /// `iscsi://127.0.0.1:PORT`, the form `iscsi-ls` takes.
    pub fn portal_url(&self) -> String {
        format!("iscsi://127.0.0.1:{}", self.port)
    }

    /// Everything the daemon wrote to stdout and stderr so far, across restarts.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the daemon process is still alive (it may have crashed).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("poll daemon").is_none(),
            None => false,
        }
    }

    /// SIGKILL: no chance to flush or clean up, like a power cut of the process.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the daemon");
            child.wait().expect("reap the daemon");
        }
    }

    /// SIGTERM, then waits for a clean exit; returns its status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon is running");
        terminate(&mut child)
    }

    /// Starts the daemon again with the same configuration, port and data.
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "stop or kill the daemon before restarting it"
        );
        self.spawn();
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open daemon log");
        writeln_io(&mut log, &format!("--- start #{} ---", self.starts));
        let stderr = log.try_clone().expect("clone log handle");
        let child = Command::new(env!("CARGO_BIN_EXE_reservoir"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .expect("spawn reservoir serve");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("daemon spawned");
            if let Some(status) = child.try_wait().expect("poll daemon") {
                self.child = None;
                panic!(
                    "reservoir serve exited during startup ({status}); config {}:\n{}\nlog:\n{}",
                    self.config_path.display(),
                    fs::read_to_string(&self.config_path).unwrap_or_default(),
                    self.log()
                );
            }
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => panic!(
                    "reservoir serve did not accept on {addr} within {STARTUP_TIMEOUT:?} ({e}); log:\n{}",
                    self.log()
                ),
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
        if thread::panicking() {
            eprintln!(
                "---- reservoir serve log ({}) ----\n{}---- end of log ----",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

fn writeln_io(file: &mut File, line: &str) {
    use std::io::Write as _;
    writeln!(file, "{line}").expect("write daemon log");
}

/// SIGTERM, wait up to [`SHUTDOWN_TIMEOUT`], then SIGKILL.
fn terminate(child: &mut Child) -> ExitStatus {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) takes plain integers; `pid` is our own unreaped child,
    // so it cannot name a recycled process.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(
        rc,
        0,
        "SIGTERM the daemon: {}",
        std::io::Error::last_os_error()
    );
    let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("poll daemon") {
            return status;
        }
        if Instant::now() > deadline {
            eprintln!("reservoir serve ignored SIGTERM for {SHUTDOWN_TIMEOUT:?}; killing it");
            child.kill().expect("SIGKILL the daemon");
            return child.wait().expect("reap the daemon");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Logs in to `url` as `initiator` through the project's own initiator and
/// takes the unit attentions a new I_T nexus starts with (power-on reset,
/// SPC-4 5.14), so the caller's first command sees the LUN itself.
pub fn connect(url: &str, initiator: &str) -> reservoir_initiator::Initiator {
    connect_with(url, reservoir_initiator::ConnectOptions::new(initiator))
}

/// [`connect`] with explicit options (a fixed ISID, digests, a timeout).
pub fn connect_with(
    url: &str,
    options: reservoir_initiator::ConnectOptions,
) -> reservoir_initiator::Initiator {
    let mut session = reservoir_initiator::Initiator::connect(url, options)
        .unwrap_or_else(|e| panic!("login to {url} failed: {e}"));
    for _ in 0..8 {
        match session.test_unit_ready() {
            Ok(()) => return session,
            Err(e)
                if e.sense()
                    .is_some_and(|s| s.key == reservoir_initiator::SenseKey::UnitAttention) => {}
            Err(e) => panic!("TEST UNIT READY on {url} failed: {e}"),
        }
    }
    panic!("{url} keeps reporting unit attentions");
}

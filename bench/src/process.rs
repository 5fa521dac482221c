//! Children the bench starts: every one is owned by a guard that stops it
//! on drop, so an error, a panic or Ctrl-C never leaves a target running.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Turns SIGINT/SIGTERM into a flag that every wait loop checks, so the
/// run unwinds through the guards instead of dying with children alive.
pub fn install_interrupt_handler() -> Result<()> {
    ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst))
        .context("installing the SIGINT/SIGTERM handler")
}

pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted: stopping every target and client");
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1 (bound, then released for the target).
pub fn free_loopback_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// How a guarded child is asked to stop before it is killed.
#[derive(Debug, Clone)]
pub enum Stop {
    /// SIGTERM (reservoir, istgt), then SIGKILL after a grace period.
    Terminate,
    /// These commands first (tgtd ignores SIGTERM; `tgtadm` shuts it
    /// down), then SIGKILL.
    Commands(Vec<Vec<String>>),
}

/// A started daemon, stopped when dropped.
#[derive(Debug)]
pub struct Guarded {
    name: &'static str,
    child: Child,
    stop: Stop,
}

const STOP_GRACE: Duration = Duration::from_secs(5);

impl Guarded {
    /// Spawns `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &'static str, mut command: Command, log: &Path, stop: Stop) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        Ok(Guarded { name, child, stop })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the daemon has exited (it should run until we stop it).
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("{} exited unexpectedly ({status})", self.name),
        }
    }

    /// Waits until `addr` accepts TCP connections.
    pub fn wait_listening(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            check_interrupted()?;
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} did not listen on {addr} within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        match &self.stop {
            Stop::Terminate => {
                let pid = libc::pid_t::try_from(self.child.id()).unwrap_or(libc::pid_t::MAX);
                // SAFETY: kill(2) with a pid we spawned and still own (not yet
                // reaped, so the pid cannot have been reused).
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            Stop::Commands(commands) => {
                for (program, args) in commands.iter().filter_map(|argv| argv.split_first()) {
                    let _ = Command::new(program)
                        .args(args)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        if !self.wait_exit(STOP_GRACE) {
            eprintln!("reservoir-bench: {} did not stop; killing it", self.name);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a client to completion with its stdout captured to `out`, killing
/// it after `limit` or on Ctrl-C: every run is bounded.
pub fn run_bounded(
    mut command: Command,
    out: &Path,
    limit: Duration,
) -> Result<(ExitStatus, String)> {
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let deadline = Instant::now() + limit;
    // Polls back off from 1 ms to 50 ms, so a short client (a CLI call the
    // snapshot suite times) is not rounded up to the poll interval.
    let mut poll = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let interrupted = check_interrupted();
        if interrupted.is_err() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            interrupted?;
            bail!("{program} ran longer than {limit:?}; killed");
        }
        std::thread::sleep(poll);
        poll = (poll * 2).min(Duration::from_millis(50));
    };
    let text =
        std::fs::read_to_string(out).with_context(|| format!("reading {}", out.display()))?;
    Ok((status, text))
}

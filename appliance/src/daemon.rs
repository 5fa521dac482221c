//! `reservoir serve`: opens the volumes, builds the targets, starts the
//! reactors and the control socket, and runs until SIGINT or SIGTERM.

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use reservoir_iscsi::{Access, Credentials, PortalContext, Sessions};
use reservoir_reactor::ReactorPool;
use reservoir_scsi::{Lun, LunOptions};
use reservoir_target_config::{ChapCredentials, Config};

use crate::reservations::{FileStore, Reservations};
use crate::rpc::{Api, RpcServer};
use crate::targets::{LunView, TargetRegistry, TargetView, PORTAL_GROUP_TAG};
use crate::volumes::Volumes;

pub fn serve(config: &Config) -> Result<()> {
    let data_dir = &config.server.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let _lock = lock_data_dir(data_dir)?;
    // Blocked before any thread starts so that every thread inherits the
    // mask and the signals reach only the sigwait below.
    let signals = block_shutdown_signals()?;

    let volumes = Arc::new(Volumes::open(data_dir, &config.volumes)?);
    let targets = Arc::new(TargetRegistry::new(data_dir));
    let mut reservations = Reservations::default();
    let exports = |volume: &str| {
        config
            .targets
            .iter()
            .flat_map(|t| &t.luns)
            .filter(|l| l.as_str() == volume)
            .count()
    };
    for target in &config.targets {
        let iqn = target.iqn.to_string();
        let mut luns = Vec::new();
        let mut lun_views = Vec::new();
        for (index, name) in target.luns.iter().enumerate() {
            let volume = volumes
                .get(name.as_str())
                .with_context(|| format!("target {iqn} names unknown volume {name}"))?;
            let store = FileStore::new(
                data_dir,
                name.as_str(),
                (&iqn, index as u64),
                exports(name.as_str()) > 1,
            );
            let lun = Arc::new(
                Lun::open(
                    volume.bdev.clone(),
                    LunOptions {
                        read_only: target.read_only,
                        identity: volume.identity.clone(),
                        reservations: Some(Arc::new(store)),
                    },
                )
                .with_context(|| format!("volume {name} of target {iqn}"))?,
            );
            volume.attach_lun(lun.clone());
            reservations.add(name.as_str(), &iqn, index as u64, lun.clone());
            luns.push((index as u64, lun));
            lun_views.push(LunView {
                lun: index as u64,
                volume: name.to_string(),
            });
        }
        let allowed_initiators: Option<Vec<String>> = target
            .allowed_initiators
            .as_ref()
            .map(|list| list.iter().map(ToString::to_string).collect());
        let access = Access {
            allowed_initiators: allowed_initiators.clone(),
            chap: target.chap.as_ref().map(credentials),
            mutual_chap: target.mutual_chap.as_ref().map(credentials),
        };
        let view = TargetView {
            iqn: iqn.clone(),
            luns: lun_views,
            allowed_initiators,
            chap: target.chap.is_some(),
            mutual_chap: target.mutual_chap.is_some(),
            read_only: target.read_only,
            snapshot: None,
        };
        targets.add(&iqn, luns, access, view);
    }
    targets.restore_exports(&volumes)?;

    let sessions = Arc::new(Sessions::new());
    let portals: Vec<SocketAddr> = config.portals.iter().map(|p| p.listen).collect();
    let context = Arc::new(PortalContext::new(
        targets.nodes(),
        sessions.clone(),
        PORTAL_GROUP_TAG,
        portals.clone(),
    ));
    // The control socket is up before the portals, so a client that sees a
    // portal accept can already reach it.
    let socket = config.server.rpc_socket_path();
    let rpc = RpcServer::start(
        &socket,
        Arc::new(
            Api::new(volumes.clone(), sessions, targets.clone())
                .with_reservations(Arc::new(reservations))
                .with_backups(data_dir),
        ),
    )?;
    let reactors = match ReactorPool::start(
        config.server.reactors.as_deref(),
        config.server.io_workers,
        &portals,
        context,
    ) {
        Ok(reactors) => reactors,
        Err(error) => {
            rpc.stop();
            return Err(error.into());
        }
    };

    print_banner(config, &targets.views(), &reactors, &socket);
    let signal = wait_for(&signals)?;
    eprintln!("reservoir: {signal}: stopping");
    rpc.stop();
    reactors.stop();
    let failures = volumes.close_all();
    for (name, error) in &failures {
        eprintln!("reservoir: flushing volume {name} failed: {error:#}");
    }
    if !failures.is_empty() {
        bail!("{} volume(s) could not be flushed", failures.len());
    }
    eprintln!("reservoir: stopped; every volume flushed");
    Ok(())
}

fn credentials(chap: &ChapCredentials) -> Credentials {
    Credentials {
        user: chap.user.clone(),
        secret: chap.secret.clone().into_bytes(),
    }
}

fn print_banner(config: &Config, views: &[TargetView], reactors: &ReactorPool, socket: &Path) {
    let cores: Vec<String> = reactors
        .stats()
        .iter()
        .map(|s| s.core.to_string())
        .collect();
    println!(
        "reservoir: {} reactor(s) on core(s) {}, {} I/O worker(s) for file and device LUNs; data in {}",
        cores.len(),
        cores.join(","),
        config.server.io_workers,
        config.server.data_dir.display()
    );
    for volume in &config.volumes {
        println!(
            "reservoir: volume {} ({}, {})",
            volume.name,
            volume.backend.kind(),
            volume
                .size
                .map(|s| s.to_string())
                .unwrap_or_else(|| "device size".into())
        );
    }
    for portal in &config.portals {
        println!("reservoir: listening on {}", portal.listen);
    }
    for target in views {
        for lun in &target.luns {
            println!(
                "reservoir: target {} LUN {} = volume {}{}",
                target.iqn,
                lun.lun,
                lun.volume,
                if target.read_only { " (read-only)" } else { "" }
            );
        }
    }
    if let (Some(portal), Some(target)) = (config.portals.first(), views.first()) {
        println!(
            "reservoir: connect with  iscsi-ls iscsi://{}",
            portal.listen
        );
        println!(
            "reservoir:           or  iscsi-inq iscsi://{}/{}/0",
            portal.listen, target.iqn
        );
    }
    println!("reservoir: control socket {}", socket.display());
}

/// Holds an exclusive lock on the data directory for the daemon's life, so
/// two daemons never share reservation tables or volume state.
fn lock_data_dir(data_dir: &Path) -> Result<File> {
    let path = data_dir.join("lock");
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!(
            "another `reservoir serve` is using {}; stop it or choose another data_dir",
            data_dir.display()
        );
    }
    Ok(file)
}

fn block_shutdown_signals() -> Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset before use;
    // pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            bail!(
                "cannot block SIGINT/SIGTERM: {}",
                std::io::Error::from_raw_os_error(rc)
            );
        }
        Ok(set)
    }
}

fn wait_for(set: &libc::sigset_t) -> Result<&'static str> {
    let mut signal = 0;
    // SAFETY: `set` is an initialised signal set and `signal` a valid out-pointer.
    let rc = unsafe { libc::sigwait(set, &mut signal) };
    if rc != 0 {
        bail!("sigwait failed: {}", std::io::Error::from_raw_os_error(rc));
    }
    Ok(if signal == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    })
}

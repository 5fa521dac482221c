//! One authenticated connection, seen from the client, and the client
//! handle the CLI uses for the requests that are one round trip.

use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::maintain::{PruneReport, VerifyReport};
use crate::repo::{BackupInfo, VolumeChain};
use crate::stream::frame_name;
use crate::types::{BackupId, Token};
use crate::wire::{self, Frame, Reply, Request};
use crate::BackupError;

/// How long a peer may stay silent before the connection is considered
/// dead (a verify or prune of a large repository answers within it).
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(600);

/// Where the backup server is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct Client {
    addr: SocketAddr,
    token: Token,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub reader: BufReader<TcpStream>,
    pub writer: BufWriter<TcpStream>,
}

impl Conn {
    pub(crate) fn send(&mut self, r: &Request) -> Result<(), BackupError> {
        wire::write_request(&mut self.writer, r)
            .and_then(|()| self.writer.flush())
            .map_err(BackupError::disconnected("request"))
    }

    /// The next frame; a server-side error reply becomes the error.
    pub(crate) fn frame(&mut self, op: &'static str) -> Result<Frame, BackupError> {
        let frame = wire::read_frame(&mut self.reader)
            .map_err(BackupError::disconnected(op))?
            .ok_or_else(|| BackupError::Disconnected {
                op,
                source: std::io::ErrorKind::UnexpectedEof.into(),
            })??;
        match frame {
            Frame::Reply(Reply::Error { kind, message }) => {
                Err(BackupError::Remote { kind, message })
            }
            f => Ok(f),
        }
    }

    pub(crate) fn reply(&mut self, op: &'static str) -> Result<Reply, BackupError> {
        match self.frame(op)? {
            Frame::Reply(r) => Ok(r),
            other => Err(BackupError::protocol(format!(
                "expected a reply to {op}, got {}",
                frame_name(&other)
            ))),
        }
    }
}

fn unexpected(op: &str, r: &Reply) -> BackupError {
    BackupError::protocol(format!("unexpected reply to {op}: {r:?}"))
}

impl Client {
    pub fn new(addr: impl ToSocketAddrs, token: Token) -> Result<Client, BackupError> {
        let addr = addr
            .to_socket_addrs()
            .map_err(BackupError::disconnected("resolve address"))?
            .next()
            .ok_or_else(|| BackupError::InvalidArgument {
                what: "backup server address",
                why: "resolves to no address".into(),
            })?;
        Ok(Client { addr, token })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn connect(&self) -> Result<Conn, BackupError> {
        let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10))
            .map_err(BackupError::disconnected("connect"))?;
        let setup = |s: &TcpStream| {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))
        };
        setup(&stream).map_err(BackupError::disconnected("connect"))?;
        let reader = BufReader::with_capacity(
            1 << 20,
            stream
                .try_clone()
                .map_err(BackupError::disconnected("connect"))?,
        );
        let mut conn = Conn {
            reader,
            writer: BufWriter::with_capacity(1 << 20, stream),
        };
        wire::write_hello(&mut conn.writer, self.token.as_bytes())
            .and_then(|()| conn.writer.flush())
            .map_err(BackupError::disconnected("hello"))?;
        match conn.reply("hello")? {
            Reply::Welcome => Ok(conn),
            r => Err(unexpected("hello", &r)),
        }
    }

    fn call(&self, op: &'static str, r: Request) -> Result<Reply, BackupError> {
        let mut conn = self.connect()?;
        conn.send(&r)?;
        conn.reply(op)
    }

    /// Every complete backup, per volume, oldest first.
    pub fn list(&self) -> Result<Vec<VolumeChain>, BackupError> {
        match self.call("list", Request::List)? {
            Reply::Listing { volumes } => Ok(volumes),
            r => Err(unexpected("list", &r)),
        }
    }

    pub fn describe(&self, backup: BackupId) -> Result<BackupInfo, BackupError> {
        match self.call("describe", Request::Describe { backup })? {
            Reply::Described { info } => Ok(info),
            r => Err(unexpected("describe", &r)),
        }
    }

    /// Server-side verify of one backup or all.
    pub fn verify(&self, backup: Option<BackupId>) -> Result<VerifyReport, BackupError> {
        match self.call("verify", Request::Verify { backup })? {
            Reply::Verified { report } => Ok(report),
            r => Err(unexpected("verify", &r)),
        }
    }

    pub fn prune(&self, keep: usize) -> Result<PruneReport, BackupError> {
        match self.call("prune", Request::Prune { keep })? {
            Reply::Pruned { report } => Ok(report),
            r => Err(unexpected("prune", &r)),
        }
    }
}

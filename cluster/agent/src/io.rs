//! The I/O edge: a [`SharedDisk`] over one iSCSI session to one LUN.
//!
//! Each node logs in to each LUN with a fixed ISID derived from its id and
//! the LUN number ([`node_isid`]), so its I_T nexus — and with it every
//! registration it made — is the same after a reconnect or a restart
//! (SPC-4 §5.14). A command that fails on
//! the transport reconnects once and reports [`DiskFault::Unavailable`]; the
//! state machines re-check (and re-register with REGISTER AND IGNORE
//! EXISTING KEY) on their next round.

use reservoir_initiator::{
    ConnectOptions, Error as IscsiError, Initiator, Isid, PrOutAction, PrOutFlags, ReservationKey,
    ReservationType,
};

use crate::disk::{DiskFault, DiskOp, DiskReply, DiskResult, SharedDisk};
use crate::keys::NodeId;

/// The ISID of `node`'s session to LUN `lun`: Random format (T=10b, RFC
/// 7143 §10.12.5) with "RS" and the node id in the random field and the
/// LUN number as qualifier. One session per LUN, each with its own ISID:
/// two logins to one target with the same initiator name and ISID are one
/// session, and the second would reinstate (end) the first (RFC 7143 §6.3.5).
pub fn node_isid(node: NodeId, lun: u16) -> Isid {
    let [hi, lo] = lun.to_be_bytes();
    Isid::new([0x80, b'R', b'S', node.get(), hi, lo]).expect("T=10b with A=0 is a valid ISID")
}

/// The only reservation type the agent takes (SPC-4 §5.14.2).
const WERO: ReservationType = ReservationType::WriteExclusiveRegistrantsOnly;

/// One LUN reached over iSCSI. Not connected until the first command
/// succeeds in logging in; every later failure drops the session.
#[derive(Debug)]
pub struct IscsiDisk {
    url: String,
    options: ConnectOptions,
    lu: Option<Initiator>,
    block_size: usize,
}

impl IscsiDisk {
    /// `url`: `iscsi://host:port/iqn/lun`. Nothing is sent yet.
    pub fn new(url: String, options: ConnectOptions) -> Self {
        IscsiDisk {
            url,
            options,
            lu: None,
            block_size: 0,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn session(&mut self) -> Result<&mut Initiator, IscsiError> {
        if self.lu.is_none() {
            let mut lu = Initiator::connect(&self.url, self.options.clone())?;
            self.block_size = lu.read_capacity()?.block_size as usize;
            self.lu = Some(lu);
        }
        Ok(self.lu.as_mut().expect("connected above"))
    }

    fn run(&mut self, op: &DiskOp) -> Result<DiskReply, IscsiError> {
        let lu = self.session()?;
        let pr_out = |lu: &mut Initiator, action, key: u64, sa_key: u64| {
            lu.pr_out(
                action,
                ReservationKey(key),
                ReservationKey(sa_key),
                WERO,
                PrOutFlags::default(),
            )
            .map(|()| DiskReply::Done)
        };
        match *op {
            DiskOp::ReadKeys => Ok(DiskReply::Keys(
                lu.pr_read_keys()?.keys.into_iter().map(|k| k.0).collect(),
            )),
            DiskOp::ReadReservation => Ok(DiskReply::Reservation(
                lu.pr_read_reservation()?.reservation.map(|(k, _)| k.0),
            )),
            DiskOp::Register { new } => {
                pr_out(lu, PrOutAction::RegisterAndIgnoreExistingKey, 0, new)
            }
            DiskOp::ChangeKey { current, new } => pr_out(lu, PrOutAction::Register, current, new),
            DiskOp::Reserve { key } => pr_out(lu, PrOutAction::Reserve, key, 0),
            DiskOp::Release { key } => pr_out(lu, PrOutAction::Release, key, 0),
            DiskOp::PreemptAndAbort { key, victim } => {
                pr_out(lu, PrOutAction::PreemptAndAbort, key, victim)
            }
            DiskOp::ReadBlock { lba } => {
                let bs = self.block_size;
                let lu = self.session()?;
                Ok(DiskReply::Block(lu.read(lba, 1, bs as u32)?))
            }
            DiskOp::WriteBlock { lba, ref data } => {
                // Records are written in 512-byte units; a larger block is
                // zero-padded (every decoder reads a prefix).
                let bs = self.block_size;
                let mut block = data.clone();
                block.resize(bs.max(block.len()), 0);
                let lu = self.session()?;
                lu.write(lba, &block, bs as u32, true)?;
                Ok(DiskReply::Done)
            }
        }
    }
}

impl SharedDisk for IscsiDisk {
    fn block_size(&self) -> usize {
        self.block_size
    }

    fn execute(&mut self, op: &DiskOp) -> DiskResult {
        match self.run(op) {
            Ok(reply) => Ok(reply),
            Err(e) if e.is_reservation_conflict() => Err(DiskFault::Conflict),
            Err(e) => {
                if e.needs_reconnect() {
                    // Log in again now (same ISID, same nexus) so the next
                    // round finds a session; if that fails, the next command
                    // tries again.
                    if let Some(lu) = self.lu.as_mut() {
                        if lu.reconnect().is_err() {
                            self.lu = None;
                        }
                    }
                }
                Err(DiskFault::Unavailable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isids_are_fixed_per_node_and_distinct() {
        let a = node_isid(NodeId::new(1).unwrap(), 3);
        assert_eq!(a, node_isid(NodeId::new(1).unwrap(), 3));
        assert_ne!(a, node_isid(NodeId::new(2).unwrap(), 3));
        assert_ne!(a, node_isid(NodeId::new(1).unwrap(), 4));
        assert_eq!(a.bytes()[0] >> 6, 0b10);
    }
}

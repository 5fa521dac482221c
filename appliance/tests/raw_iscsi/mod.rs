//! A minimal raw-PDU iSCSI initiator for tests that must hold a command in
//! flight, which libiscsi cannot: it answers every R2T at once.
//!
//! One connection, no digests, ERL 0, LUN 0. Login negotiates
//! InitialR2T=Yes and ImmediateData=No (RFC 7143 §13.10-13.11), so a WRITE
//! sends no data until the target solicits it; [`RawSession::start_write`]
//! stops right there, with the task waiting on the target, and
//! [`RawSession::finish`] sends the data later.
//!
//! Incoming PDUs are decoded once into [`Incoming`]; every read has an exact
//! length, a bound checked before allocating, and a deadline (the socket's
//! read timeout). Anything unexpected is an error, never skipped.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Longest wait for any one PDU.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// What we declare as MaxRecvDataSegmentLength and so the largest data
/// segment we accept (RFC 7143 §13.12).
const MAX_RECV: u32 = 65_536;
/// RFC 7143 §13.12: the default when a side declares nothing.
const DEFAULT_MAX_RECV: u32 = 8_192;
const BHS_LEN: usize = 48;
/// A tag the target sets when no task is meant (RFC 7143 §11.18, §11.19).
const RESERVED_TAG: u32 = 0xffff_ffff;

mod opcode {
    pub const NOP_OUT: u8 = 0x00;
    pub const SCSI_COMMAND: u8 = 0x01;
    pub const LOGIN: u8 = 0x03;
    pub const DATA_OUT: u8 = 0x05;
    pub const NOP_IN: u8 = 0x20;
    pub const SCSI_RESPONSE: u8 = 0x21;
    pub const LOGIN_RESPONSE: u8 = 0x23;
    pub const DATA_IN: u8 = 0x25;
    pub const R2T: u8 = 0x31;
    pub const REJECT: u8 = 0x3f;
    /// Set in byte 0 of a request delivered immediately (§11.2.1.2).
    pub const IMMEDIATE: u8 = 0x40;
}

/// Login stages (RFC 7143 §11.12.3).
const SECURITY: u8 = 0;
const OPERATIONAL: u8 = 1;
const FULL_FEATURE: u8 = 3;

fn protocol(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// The fields of a target PDU these tests act on (RFC 7143 §11).
#[derive(Debug)]
enum Incoming {
    LoginResponse {
        transit: bool,
        nsg: u8,
        status_class: u8,
        status_detail: u8,
        stat_sn: u32,
        exp_cmd_sn: u32,
        max_cmd_sn: u32,
        keys: Vec<u8>,
    },
    ScsiResponse {
        itt: u32,
        stat_sn: u32,
        max_cmd_sn: u32,
        response: u8,
        status: u8,
        data: Vec<u8>,
    },
    DataIn {
        itt: u32,
        max_cmd_sn: u32,
        offset: u32,
        /// Status, when the S bit is set (§11.7.5).
        status: Option<(u8, u32)>,
        data: Vec<u8>,
    },
    R2t {
        itt: u32,
        ttt: u32,
        max_cmd_sn: u32,
        offset: u32,
        len: u32,
    },
    NopIn {
        ttt: u32,
    },
    Reject {
        reason: u8,
    },
    Other {
        opcode: u8,
    },
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Incoming {
    fn decode(bhs: &[u8; BHS_LEN], data: Vec<u8>) -> Incoming {
        let flags = bhs[1];
        let itt = be32(&bhs[16..]);
        let stat_sn = be32(&bhs[24..]);
        let max_cmd_sn = be32(&bhs[32..]);
        match bhs[0] & 0x3f {
            opcode::LOGIN_RESPONSE => Incoming::LoginResponse {
                transit: flags & 0x80 != 0,
                nsg: flags & 0x03,
                status_class: bhs[36],
                status_detail: bhs[37],
                stat_sn,
                exp_cmd_sn: be32(&bhs[28..]),
                max_cmd_sn,
                keys: data,
            },
            opcode::SCSI_RESPONSE => Incoming::ScsiResponse {
                itt,
                stat_sn,
                max_cmd_sn,
                response: bhs[2],
                status: bhs[3],
                data,
            },
            opcode::DATA_IN => Incoming::DataIn {
                itt,
                max_cmd_sn,
                offset: be32(&bhs[40..]),
                status: (flags & 0x01 != 0).then_some((bhs[3], stat_sn)),
                data,
            },
            opcode::R2T => Incoming::R2t {
                itt,
                ttt: be32(&bhs[20..]),
                max_cmd_sn,
                offset: be32(&bhs[40..]),
                len: be32(&bhs[44..]),
            },
            opcode::NOP_IN => Incoming::NopIn {
                ttt: be32(&bhs[20..]),
            },
            opcode::REJECT => Incoming::Reject { reason: bhs[2] },
            opcode => Incoming::Other { opcode },
        }
    }
}

/// How a SCSI command ended (RFC 7143 §11.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: u8,
    /// Sense key, ASC and ASCQ of a CHECK CONDITION.
    pub sense: Option<(u8, u8, u8)>,
    pub data_in: Vec<u8>,
}

impl Outcome {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
    pub const RESERVATION_CONFLICT: u8 = 0x18;
    pub const TASK_ABORTED: u8 = 0x40;
}

/// Sense data behind its two-byte SenseLength (§11.4.7.2), fixed or
/// descriptor format (SPC-4 §4.5).
fn decode_sense(data: &[u8]) -> Option<(u8, u8, u8)> {
    let len = usize::from(u16::from_be_bytes([*data.first()?, *data.get(1)?]));
    let sense = data.get(2..2 + len)?;
    match sense.first()? & 0x7f {
        0x70 | 0x71 => Some((sense.get(2)? & 0x0f, *sense.get(12)?, *sense.get(13)?)),
        0x72 | 0x73 => Some((sense.get(1)? & 0x0f, *sense.get(2)?, *sense.get(3)?)),
        _ => None,
    }
}

/// One command of [`RawSession::pipelined`].
#[derive(Debug, Clone)]
#[allow(dead_code)] // not every test binary pipelines
pub enum PipelinedOp {
    Read { lba: u32, blocks: u16 },
    Write { lba: u32, data: Vec<u8> },
}

/// A WRITE whose data the target has asked for and not yet received.
#[derive(Debug)]
#[must_use = "the task stays open on the target until finish() sends its data"]
pub struct HeldWrite {
    itt: u32,
    ttt: u32,
    offset: u32,
    len: u32,
    data: Vec<u8>,
}

/// One logged-in session: an I_T nexus of its own (initiator name + ISID).
#[derive(Debug)]
pub struct RawSession {
    stream: TcpStream,
    cmd_sn: u32,
    max_cmd_sn: u32,
    exp_stat_sn: u32,
    next_itt: u32,
    /// The target's MaxRecvDataSegmentLength: our Data-Out segments' limit.
    target_max_recv: u32,
}

impl RawSession {
    /// Connects and logs in to LUN 0's target through the security and the
    /// operational stage (RFC 7143 §6.3, §11.12-11.13).
    pub fn login(
        portal: SocketAddr,
        initiator: &str,
        isid: [u8; 6],
        target: &str,
    ) -> io::Result<RawSession> {
        let stream = TcpStream::connect_timeout(&portal, READ_TIMEOUT)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut session = RawSession {
            stream,
            cmd_sn: 1,
            max_cmd_sn: 1,
            exp_stat_sn: 0,
            next_itt: 1,
            target_max_recv: DEFAULT_MAX_RECV,
        };
        let security = [
            ("InitiatorName", initiator.to_owned()),
            ("TargetName", target.to_owned()),
            ("SessionType", "Normal".to_owned()),
            ("AuthMethod", "None".to_owned()),
        ];
        session.login_step(isid, SECURITY, OPERATIONAL, &security)?;
        let operational = [
            ("HeaderDigest", "None".to_owned()),
            ("DataDigest", "None".to_owned()),
            ("InitialR2T", "Yes".to_owned()),
            ("ImmediateData", "No".to_owned()),
            ("MaxRecvDataSegmentLength", MAX_RECV.to_string()),
            ("MaxBurstLength", "262144".to_owned()),
            ("FirstBurstLength", "65536".to_owned()),
            ("MaxOutstandingR2T", "1".to_owned()),
            ("ErrorRecoveryLevel", "0".to_owned()),
            ("MaxConnections", "1".to_owned()),
        ];
        let answers = session.login_step(isid, OPERATIONAL, FULL_FEATURE, &operational)?;
        // The whole point: data only when solicited.
        for (key, want) in [("InitialR2T", "Yes"), ("ImmediateData", "No")] {
            if answers.get(key).map(String::as_str) != Some(want) {
                return Err(protocol(format!(
                    "target answered {key}={:?}",
                    answers.get(key)
                )));
            }
        }
        if let Some(n) = answers.get("MaxRecvDataSegmentLength") {
            session.target_max_recv = n
                .parse()
                .ok()
                .filter(|n| (512..=0xff_ffff).contains(n))
                .ok_or_else(|| protocol(format!("MaxRecvDataSegmentLength={n}")))?;
        }
        Ok(session)
    }

    /// One Login Request with T set, csg → nsg; returns the target's keys.
    fn login_step(
        &mut self,
        isid: [u8; 6],
        csg: u8,
        nsg: u8,
        keys: &[(&str, String)],
    ) -> io::Result<HashMap<String, String>> {
        let mut text = Vec::new();
        for (k, v) in keys {
            text.extend_from_slice(format!("{k}={v}\0").as_bytes());
        }
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = opcode::IMMEDIATE | opcode::LOGIN;
        bhs[1] = 0x80 | csg << 2 | nsg;
        bhs[8..14].copy_from_slice(&isid);
        let itt = self.itt();
        bhs[16..20].copy_from_slice(&itt.to_be_bytes());
        bhs[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
        bhs[28..32].copy_from_slice(&self.exp_stat_sn.to_be_bytes());
        self.send(bhs, &text)?;
        match self.receive()? {
            Incoming::LoginResponse {
                status_class: 0,
                transit: true,
                nsg: got,
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
                keys,
                ..
            } if got == nsg => {
                self.exp_stat_sn = stat_sn.wrapping_add(1);
                self.cmd_sn = exp_cmd_sn;
                self.max_cmd_sn = max_cmd_sn;
                parse_keys(&keys)
            }
            Incoming::LoginResponse {
                status_class,
                status_detail,
                transit,
                nsg,
                ..
            } => Err(protocol(format!(
                "login stage {csg}: status {status_class:02x}/{status_detail:02x}, \
                 T={transit} NSG={nsg}"
            ))),
            other => Err(protocol(format!("login stage {csg}: got {other:?}"))),
        }
    }

    /// Sends WRITE (10) of `data` at `lba` and waits for the target's R2T,
    /// then stops: the task stays open on the target until [`Self::finish`].
    pub fn start_write(
        &mut self,
        lba: u32,
        data: Vec<u8>,
        block_size: u32,
    ) -> io::Result<HeldWrite> {
        let cdb = write10(lba, &data, block_size)?;
        let itt = self.command(&cdb, true, data.len() as u32)?;
        match self.receive()? {
            Incoming::R2t {
                itt: got,
                ttt,
                max_cmd_sn,
                offset,
                len,
            } if got == itt => {
                self.max_cmd_sn = max_cmd_sn;
                Ok(HeldWrite {
                    itt,
                    ttt,
                    offset,
                    len,
                    data,
                })
            }
            other => Err(protocol(format!(
                "WRITE (10): expected an R2T, got {other:?}"
            ))),
        }
    }

    /// Sends the data a held write's R2T asked for, answers any further
    /// R2Ts, and returns how the command ended.
    pub fn finish(&mut self, held: HeldWrite) -> io::Result<Outcome> {
        self.data_out(held.itt, &held.data, held.ttt, held.offset, held.len)?;
        self.complete(held.itt, Some(&held.data), 0)
    }

    /// WRITE (10) from start to end, with no pause.
    pub fn write(&mut self, lba: u32, data: &[u8], block_size: u32) -> io::Result<Outcome> {
        let cdb = write10(lba, data, block_size)?;
        let itt = self.command(&cdb, true, data.len() as u32)?;
        self.complete(itt, Some(data), 0)
    }

    /// Runs `ops` with as many in flight at once as the target's window
    /// allows (up to `depth`): every command goes out before its turn to be
    /// answered, R2Ts and Data-In are matched to their task by ITT, and
    /// responses may come in any order. Returns the outcomes in `ops` order
    /// and the largest number of commands that were outstanding together.
    #[allow(dead_code)] // not every test binary pipelines
    pub fn pipelined(
        &mut self,
        ops: &[PipelinedOp],
        block_size: u32,
        depth: usize,
    ) -> io::Result<(Vec<Outcome>, usize)> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; ops.len()];
        let mut open: HashMap<u32, (usize, Vec<u8>)> = HashMap::new();
        let mut next = 0;
        let mut peak = 0;
        while next < ops.len() || !open.is_empty() {
            let in_window = self.cmd_sn.wrapping_sub(self.max_cmd_sn) as i32 <= 0;
            if next < ops.len() && open.len() < depth && in_window {
                let itt = match &ops[next] {
                    PipelinedOp::Read { lba, blocks } => self.command(
                        &read10(*lba, *blocks),
                        false,
                        u32::from(*blocks) * block_size,
                    )?,
                    PipelinedOp::Write { lba, data } => {
                        let cdb = write10(*lba, data, block_size)?;
                        self.command(&cdb, true, data.len() as u32)?
                    }
                };
                open.insert(itt, (next, Vec::new()));
                next += 1;
                peak = peak.max(open.len());
                continue;
            }
            let (itt, outcome) = match self.receive()? {
                Incoming::R2t {
                    itt,
                    ttt,
                    max_cmd_sn,
                    offset,
                    len,
                } => {
                    self.max_cmd_sn = max_cmd_sn;
                    let i = open.get(&itt).ok_or_else(|| protocol("R2T for no task"))?.0;
                    let PipelinedOp::Write { data, .. } = &ops[i] else {
                        return Err(protocol("R2T for a READ"));
                    };
                    self.data_out(itt, data, ttt, offset, len)?;
                    continue;
                }
                Incoming::DataIn {
                    itt,
                    max_cmd_sn,
                    offset,
                    status,
                    data,
                } => {
                    self.max_cmd_sn = max_cmd_sn;
                    let (_, buffer) = open
                        .get_mut(&itt)
                        .ok_or_else(|| protocol("Data-In for no task"))?;
                    if offset as usize != buffer.len() {
                        return Err(protocol("Data-In out of order"));
                    }
                    buffer.extend_from_slice(&data);
                    let Some((status, stat_sn)) = status else {
                        continue;
                    };
                    self.exp_stat_sn = stat_sn.wrapping_add(1);
                    (
                        itt,
                        Outcome {
                            status,
                            sense: None,
                            data_in: Vec::new(),
                        },
                    )
                }
                Incoming::ScsiResponse {
                    itt,
                    stat_sn,
                    max_cmd_sn,
                    response,
                    status,
                    data,
                } => {
                    self.exp_stat_sn = stat_sn.wrapping_add(1);
                    self.max_cmd_sn = max_cmd_sn;
                    if response != 0 {
                        return Err(protocol(format!("iSCSI response {response:#04x}")));
                    }
                    let sense = decode_sense(&data);
                    (
                        itt,
                        Outcome {
                            status,
                            sense,
                            data_in: Vec::new(),
                        },
                    )
                }
                other => return Err(protocol(format!("unexpected {other:?}"))),
            };
            let (i, data_in) = open
                .remove(&itt)
                .ok_or_else(|| protocol("status for no task"))?;
            outcomes[i] = Some(Outcome { data_in, ..outcome });
        }
        Ok((outcomes.into_iter().map(Option::unwrap).collect(), peak))
    }

    /// A command without data-out (TEST UNIT READY, READ (10), …) expecting
    /// up to `data_in_len` bytes.
    /// Takes the unit attentions a new I_T nexus starts with (power-on
    /// reset, SPC-4 5.14), so the next command sees the LUN itself.
    pub fn clear_unit_attentions(&mut self) -> io::Result<()> {
        for _ in 0..8 {
            let outcome = self.execute(&TEST_UNIT_READY, 0)?;
            match outcome.sense {
                None if outcome.status == Outcome::GOOD => return Ok(()),
                Some((0x6, _, _)) => {}
                _ => return Err(protocol(format!("TEST UNIT READY: {outcome:?}"))),
            }
        }
        Err(protocol("unit attentions never cleared"))
    }

    pub fn execute(&mut self, cdb: &[u8], data_in_len: u32) -> io::Result<Outcome> {
        let itt = self.command(cdb, false, data_in_len)?;
        self.complete(itt, None, data_in_len)
    }

    /// Sends a SCSI Command PDU (§11.3), simple task attribute, F set.
    fn command(&mut self, cdb: &[u8], write: bool, expected_len: u32) -> io::Result<u32> {
        if cdb.len() > 16 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "CDB longer than 16 bytes",
            ));
        }
        // §3.2.2.1: a non-immediate command must fall inside the window.
        if self.cmd_sn.wrapping_sub(self.max_cmd_sn) as i32 > 0 {
            return Err(protocol(format!(
                "CmdSN {} beyond MaxCmdSN {}",
                self.cmd_sn, self.max_cmd_sn
            )));
        }
        let itt = self.itt();
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = opcode::SCSI_COMMAND;
        let direction = match (write, expected_len) {
            (true, _) => 0x20,
            (false, 0) => 0,
            (false, _) => 0x40,
        };
        bhs[1] = 0x80 | direction | 0x01;
        bhs[16..20].copy_from_slice(&itt.to_be_bytes());
        bhs[20..24].copy_from_slice(&expected_len.to_be_bytes());
        bhs[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
        bhs[28..32].copy_from_slice(&self.exp_stat_sn.to_be_bytes());
        bhs[32..32 + cdb.len()].copy_from_slice(cdb);
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        self.send(bhs, &[])?;
        Ok(itt)
    }

    /// Reads until the command `itt` ends: answers R2Ts from `data_out`,
    /// gathers Data-In, and returns the status.
    fn complete(
        &mut self,
        itt: u32,
        data_out: Option<&[u8]>,
        data_in_len: u32,
    ) -> io::Result<Outcome> {
        let mut data_in = Vec::new();
        loop {
            match self.receive()? {
                Incoming::R2t {
                    itt: got,
                    ttt,
                    max_cmd_sn,
                    offset,
                    len,
                } if got == itt => {
                    self.max_cmd_sn = max_cmd_sn;
                    let data =
                        data_out.ok_or_else(|| protocol("R2T for a command without data-out"))?;
                    self.data_out(itt, data, ttt, offset, len)?;
                }
                Incoming::DataIn {
                    itt: got,
                    offset,
                    status,
                    data,
                    ..
                } if got == itt => {
                    if offset as usize != data_in.len()
                        || data_in.len() + data.len() > data_in_len as usize
                    {
                        return Err(protocol("Data-In out of order or beyond the allocation"));
                    }
                    data_in.extend_from_slice(&data);
                    if let Some((status, stat_sn)) = status {
                        self.exp_stat_sn = stat_sn.wrapping_add(1);
                        return Ok(Outcome {
                            status,
                            sense: None,
                            data_in,
                        });
                    }
                }
                Incoming::ScsiResponse {
                    itt: got,
                    stat_sn,
                    max_cmd_sn,
                    response,
                    status,
                    data,
                } if got == itt => {
                    self.exp_stat_sn = stat_sn.wrapping_add(1);
                    self.max_cmd_sn = max_cmd_sn;
                    if response != 0 {
                        return Err(protocol(format!("iSCSI response {response:#04x}")));
                    }
                    return Ok(Outcome {
                        status,
                        sense: decode_sense(&data),
                        data_in,
                    });
                }
                other => return Err(protocol(format!("task {itt:#x}: unexpected {other:?}"))),
            }
        }
    }

    /// Data-Out PDUs for `len` bytes at `offset` of an R2T (§11.7), each
    /// within the target's MaxRecvDataSegmentLength, F on the last.
    fn data_out(
        &mut self,
        itt: u32,
        data: &[u8],
        ttt: u32,
        offset: u32,
        len: u32,
    ) -> io::Result<()> {
        let (start, end) = (offset as usize, offset as usize + len as usize);
        let burst = data
            .get(start..end)
            .ok_or_else(|| protocol("R2T beyond the write's data"))?;
        let chunks = burst.chunks(self.target_max_recv as usize);
        let count = chunks.len();
        for (data_sn, chunk) in chunks.enumerate() {
            let mut bhs = [0u8; BHS_LEN];
            bhs[0] = opcode::DATA_OUT;
            if data_sn + 1 == count {
                bhs[1] = 0x80;
            }
            bhs[16..20].copy_from_slice(&itt.to_be_bytes());
            bhs[20..24].copy_from_slice(&ttt.to_be_bytes());
            bhs[28..32].copy_from_slice(&self.exp_stat_sn.to_be_bytes());
            bhs[36..40].copy_from_slice(&(data_sn as u32).to_be_bytes());
            let at = offset + (data_sn * self.target_max_recv as usize) as u32;
            bhs[40..44].copy_from_slice(&at.to_be_bytes());
            self.send(bhs, chunk)?;
        }
        Ok(())
    }

    fn itt(&mut self) -> u32 {
        let itt = self.next_itt;
        self.next_itt = self.next_itt.wrapping_add(1).max(1);
        itt
    }

    /// Writes one PDU: header with DataSegmentLength filled in, then the
    /// data padded to four bytes (§11.2.1.1).
    fn send(&mut self, mut bhs: [u8; BHS_LEN], data: &[u8]) -> io::Result<()> {
        let len = u32::try_from(data.len())
            .ok()
            .filter(|&n| n <= 0xff_ffff)
            .ok_or_else(|| protocol("data segment too long"))?;
        bhs[5..8].copy_from_slice(&len.to_be_bytes()[1..]);
        let mut pdu = Vec::with_capacity(BHS_LEN + data.len() + 3);
        pdu.extend_from_slice(&bhs);
        pdu.extend_from_slice(data);
        pdu.resize(pdu.len().next_multiple_of(4), 0);
        self.stream.write_all(&pdu)
    }

    /// Reads one PDU; NOP-In pings are answered here (§11.18-11.19), so
    /// callers only see PDUs about their tasks.
    fn receive(&mut self) -> io::Result<Incoming> {
        loop {
            let mut bhs = [0u8; BHS_LEN];
            self.stream.read_exact(&mut bhs)?;
            if bhs[4] != 0 {
                return Err(protocol("AHS in a target PDU"));
            }
            let len = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]);
            if len > MAX_RECV {
                return Err(protocol(format!(
                    "data segment of {len} bytes exceeds our MaxRecvDataSegmentLength"
                )));
            }
            let mut data = vec![0u8; (len as usize).next_multiple_of(4)];
            self.stream.read_exact(&mut data)?;
            data.truncate(len as usize);
            match Incoming::decode(&bhs, data) {
                Incoming::NopIn { ttt } if ttt == RESERVED_TAG => {}
                Incoming::NopIn { ttt } => self.pong(ttt)?,
                Incoming::Reject { reason } => {
                    return Err(protocol(format!(
                        "target rejected a PDU: reason {reason:#04x}"
                    )))
                }
                Incoming::Other { opcode } => {
                    return Err(protocol(format!("unexpected opcode {opcode:#04x}")))
                }
                pdu => return Ok(pdu),
            }
        }
    }

    /// NOP-Out answering a target's ping: immediate, ITT reserved, its TTT.
    fn pong(&mut self, ttt: u32) -> io::Result<()> {
        let mut bhs = [0u8; BHS_LEN];
        bhs[0] = opcode::IMMEDIATE | opcode::NOP_OUT;
        bhs[1] = 0x80;
        bhs[16..20].copy_from_slice(&RESERVED_TAG.to_be_bytes());
        bhs[20..24].copy_from_slice(&ttt.to_be_bytes());
        bhs[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
        bhs[28..32].copy_from_slice(&self.exp_stat_sn.to_be_bytes());
        self.send(bhs, &[])
    }
}

/// `key=value` pairs, NUL-separated (RFC 7143 §6.1).
fn parse_keys(text: &[u8]) -> io::Result<HashMap<String, String>> {
    text.split(|&b| b == 0)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let item =
                std::str::from_utf8(item).map_err(|_| protocol("login text is not UTF-8"))?;
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| protocol(format!("login text item {item:?}")))?;
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// WRITE (10) (SBC-4 §5.40) covering exactly `data`.
fn write10(lba: u32, data: &[u8], block_size: u32) -> io::Result<[u8; 10]> {
    let whole = block_size > 0 && data.len().is_multiple_of(block_size as usize);
    let blocks = whole
        .then(|| data.len() / block_size as usize)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "WRITE (10) takes 1 to 65535 whole blocks",
            )
        })?;
    let mut cdb = [0u8; 10];
    cdb[0] = 0x2a;
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    Ok(cdb)
}

/// READ (10) (SBC-4 §5.15) of `blocks` blocks at `lba`.
pub fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut cdb = [0u8; 10];
    cdb[0] = 0x28;
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    cdb
}

/// TEST UNIT READY (SPC-4 §6.47).
pub const TEST_UNIT_READY: [u8; 6] = [0; 6];

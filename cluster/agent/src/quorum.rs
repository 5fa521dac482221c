//! The quorum: a majority of replica LUNs, each owned through the
//! reservation ([`Ownership`] with [`Policy::Replica`]) after Lamport's
//! arbitration ([`FastMutex`]), holding the cluster record.
//!
//! A node is the *quorum owner* while it owns a majority of the replicas
//! **and** has brought each of them up to date: on taking a replica it reads
//! the record there; once it has read a majority it takes the highest epoch
//! among them and writes it to every owned replica that is behind. Only then
//! does the replica count. A membership change is a new record with the next
//! epoch, written to every owned replica and committed once a majority has
//! it. Two quorum owners cannot coexist: each would need a majority of the
//! reservations, and a reservation has one holder.
//!
//! Nodes that are not the quorum owner read the record from every replica
//! each interval and adopt the highest epoch once a majority answered.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::arbitration::{FastMutex, MutexEffect, MutexInput};
use crate::disk::{DiskOp, DiskReply, DiskResult};
use crate::keys::{ClusterSignature, Generation, NodeId};
use crate::membership::{lease_ms, max_delay_ms};
use crate::ownership::{self, challenge_wait, Ownership, Policy, Role, Standing, View};
use crate::time::Millis;

/// Block of the cluster record on every replica (blocks 1..16 hold the
/// arbitration variables, 16.. the per-node flags).
pub const LBA_RECORD: u64 = 8;

const RECORD_MAGIC: &[u8; 4] = b"RSVQ";
const RECORD_VERSION: u8 = 1;
/// Members that fit a 512-byte block: header 23 + 5 per member + CRC 4.
pub const MAX_MEMBERS: usize = 96;

/// The cluster's operational data, versioned by `epoch`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterRecord {
    /// Grows with every new quorum owner: of two records with the same
    /// epoch (one a deposed owner's unfinished write), the later owner's wins.
    pub term: u64,
    /// Grows with every committed change.
    pub epoch: u64,
    /// Members and the generation each joined with; volume owners validate
    /// reservation keys against this.
    pub members: BTreeMap<NodeId, Generation>,
    /// The quorum owner that wrote it: a node holding a replica while
    /// another node is the quorum owner hands it over.
    pub owner: Option<NodeId>,
}

impl ClusterRecord {
    /// Layout (big-endian): magic "RSVQ", version, member count, term,
    /// epoch, owner (0: none), then (node id u8, generation u32) per member, then CRC32C of all the
    /// preceding bytes. Zero-filled to the block size.
    ///
    /// # Panics
    /// With more than [`MAX_MEMBERS`] members: the configuration refuses
    /// larger clusters, so this is a bug.
    pub fn encode(&self, block_size: usize) -> Vec<u8> {
        assert!(
            self.members.len() <= MAX_MEMBERS,
            "cluster record over {MAX_MEMBERS} members"
        );
        let mut out = Vec::with_capacity(block_size);
        out.extend_from_slice(RECORD_MAGIC);
        out.push(RECORD_VERSION);
        out.push(self.members.len() as u8);
        out.extend_from_slice(&self.term.to_be_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.push(self.owner.map_or(0, NodeId::get));
        for (node, generation) in &self.members {
            out.push(node.get());
            out.extend_from_slice(&generation.get().to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out.resize(block_size.max(out.len()), 0);
        out
    }

    /// `None` for a blank, torn or foreign block: such a replica counts as
    /// epoch 0 and is overwritten when it is brought up to date.
    /// Which of two records is newer.
    pub fn version(&self) -> (u64, u64) {
        (self.term, self.epoch)
    }

    pub fn decode(block: &[u8]) -> Option<Self> {
        if block.get(..4)? != RECORD_MAGIC || *block.get(4)? != RECORD_VERSION {
            return None;
        }
        let count = usize::from(*block.get(5)?);
        let end = 23 + 5 * count;
        let crc = u32::from_be_bytes(block.get(end..end + 4)?.try_into().ok()?);
        if crc32c::crc32c(&block[..end]) != crc {
            return None;
        }
        let term = u64::from_be_bytes(block[6..14].try_into().ok()?);
        let epoch = u64::from_be_bytes(block[14..22].try_into().ok()?);
        let owner = NodeId::new(block[22]).ok();
        let mut members = BTreeMap::new();
        for entry in block[23..end].chunks_exact(5) {
            let node = NodeId::new(entry[0]).ok()?;
            let generation =
                Generation::new(u32::from_be_bytes(entry[1..5].try_into().ok()?)).ok()?;
            members.insert(node, generation);
        }
        Some(ClusterRecord {
            term,
            epoch,
            members,
            owner,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuorumInput {
    Tick,
    Reply {
        replica: usize,
        result: DiskResult,
    },
    /// `active`: connected to enough of the cluster to hold or contend for
    /// the quorum; `suspected`: nodes whose heartbeats stopped; `heard`:
    /// peers whose heartbeats arrive.
    Connectivity {
        active: bool,
        suspected: BTreeSet<NodeId>,
        heard: BTreeSet<NodeId>,
    },
    /// Quorum owner: record this membership.
    Propose(BTreeMap<NodeId, Generation>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuorumEffect {
    Issue {
        replica: usize,
        op: DiskOp,
    },
    /// This node became (true) or stopped being (false) the quorum owner.
    Quorate(bool),
    /// A record with a higher epoch was committed (quorum owner) or read
    /// from a majority (everyone else).
    Record(ClusterRecord),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src {
    Own,
    Mutex,
    Record,
    /// A record read while not the quorum owner.
    Peek,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Sync {
    /// Not owned, or owned but not read yet.
    Unknown,
    Reading,
    /// Owned and read: the record found there.
    Read(ClusterRecord),
    Writing {
        epoch: u64,
        /// Already counted towards the quorum (was synced before).
        counted: bool,
    },
    /// Owned and holding the record of this epoch.
    Synced(u64),
}

#[derive(Debug, Clone)]
struct Replica {
    own: Ownership,
    mutex: FastMutex,
    queue: VecDeque<(Src, DiskOp)>,
    inflight: Option<Src>,
    sync: Sync,
    /// Non-owners: the record last read here this round.
    seen: Option<Option<ClusterRecord>>,
    entered_at: Option<Millis>,
    /// Since when the ownership machine has wanted to challenge.
    wanting_since: Option<Millis>,
}

/// One node's view and handling of the replica set.
#[derive(Debug, Clone)]
pub struct Quorum {
    me: NodeId,
    replicas: Vec<Replica>,
    defense_ms: u64,
    block_size: usize,
    record: ClusterRecord,
    active: bool,
    suspected: BTreeSet<NodeId>,
    heard: BTreeSet<NodeId>,
    /// Membership the quorum owner wants recorded.
    wanted: Option<BTreeMap<NodeId, Generation>>,
    /// The record being written; never changed until committed or the
    /// quorum is lost, so one epoch never has two contents.
    proposal: Option<ClusterRecord>,
    quorate: bool,
    next_read: Millis,
    last_claim: Option<Millis>,
}

impl Quorum {
    pub fn new(
        signature: ClusterSignature,
        me: NodeId,
        generation: Generation,
        replicas: usize,
        max_node: u8,
        block_size: usize,
        defense_ms: u64,
    ) -> Self {
        let replica = || Replica {
            own: Ownership::new(signature, me, generation, Policy::Replica, defense_ms),
            mutex: FastMutex::new(me, max_node, block_size, defense_ms / 10, 2 * defense_ms),
            queue: VecDeque::new(),
            inflight: None,
            sync: Sync::Unknown,
            seen: None,
            entered_at: None,
            wanting_since: None,
        };
        Quorum {
            me,
            replicas: (0..replicas).map(|_| replica()).collect(),
            defense_ms,
            block_size,
            record: ClusterRecord::default(),
            active: false,
            suspected: Default::default(),
            heard: Default::default(),
            wanted: None,
            proposal: None,
            quorate: false,
            next_read: Millis(0),
            last_claim: None,
        }
    }

    fn majority(&self) -> usize {
        self.replicas.len() / 2 + 1
    }

    /// True while this node is the quorum owner.
    pub fn is_quorate(&self) -> bool {
        self.quorate
    }

    /// The newest record this node knows.
    pub fn record(&self) -> &ClusterRecord {
        &self.record
    }

    /// Replicas this node owns and has brought up to date: holding the
    /// current record (or the proposal after it). One left at an older
    /// epoch (its write was in flight when the next change began) does not
    /// count until it is rewritten.
    pub fn synced(&self) -> Vec<usize> {
        (0..self.replicas.len())
            .filter(|&i| {
                self.replicas[i].own.is_owner()
                    && match self.replicas[i].sync {
                        Sync::Synced(epoch) => epoch >= self.record.epoch,
                        Sync::Writing { counted, .. } => counted,
                        _ => false,
                    }
            })
            .collect()
    }

    /// Did the ownership of any replica lapse within `window`?
    pub fn lapsed_within(&self, now: Millis, window: u64) -> bool {
        self.replicas
            .iter()
            .any(|r| r.own.lapsed_within(now, window))
    }

    pub fn roles(&self) -> Vec<Role> {
        self.replicas.iter().map(|r| r.own.role()).collect()
    }

    fn view(&self, contend: bool) -> View {
        View {
            standing: if self.active {
                Standing::Active
            } else {
                Standing::Fenced
            },
            members: self.record.members.clone(),
            suspected: self.suspected.clone(),
            contend,
        }
    }

    pub fn apply(&mut self, now: Millis, input: QuorumInput) -> Vec<QuorumEffect> {
        let mut fx = Vec::new();
        match input {
            QuorumInput::Tick => {}
            QuorumInput::Reply { replica, result } => {
                match self.replicas[replica].inflight.take() {
                    Some(Src::Own) => {
                        let out = self.replicas[replica]
                            .own
                            .apply(now, ownership::Input::Reply(result));
                        self.own_effects(replica, out);
                    }
                    Some(Src::Mutex) => {
                        let out = self.replicas[replica]
                            .mutex
                            .apply(now, MutexInput::Reply(result));
                        self.mutex_effects(now, replica, out);
                    }
                    Some(Src::Record) => self.record_reply(replica, result),
                    Some(Src::Peek) => {
                        self.replicas[replica].seen = match result {
                            Ok(DiskReply::Block(block)) => Some(ClusterRecord::decode(&block)),
                            _ => Some(None),
                        };
                    }
                    None => {}
                }
            }
            QuorumInput::Connectivity {
                active,
                suspected,
                heard,
            } => {
                self.active = active;
                self.suspected = suspected;
                self.heard = heard;
                self.push_views(now);
            }
            QuorumInput::Propose(members) => self.wanted = Some(members),
        }
        for i in 0..self.replicas.len() {
            let out = self.replicas[i].own.apply(now, ownership::Input::Tick);
            self.own_effects(i, out);
            self.gather(now, i);
            self.arbitrate(now, i);
        }
        let epoch = self.record.epoch;
        self.reconcile();
        self.read_round(now);
        // Quorate from our first commit until we hold fewer than a majority.
        let quorate = self.quorate && self.synced().len() >= self.majority();
        if quorate != self.quorate {
            self.quorate = quorate;
            fx.push(QuorumEffect::Quorate(quorate));
        }
        self.commit(now, &mut fx);
        self.non_owner_adopt(&mut fx);
        if self.record.epoch != epoch {
            // Volume and replica owners validate keys against the record.
            self.push_views(now);
        }
        for (i, r) in self.replicas.iter_mut().enumerate() {
            if r.inflight.is_none() {
                if let Some((src, op)) = r.queue.pop_front() {
                    r.inflight = Some(src);
                    fx.push(QuorumEffect::Issue { replica: i, op });
                }
            }
        }
        fx
    }

    fn push_views(&mut self, now: Millis) {
        for i in 0..self.replicas.len() {
            let contend = self.replicas[i].mutex.is_inside();
            let view = self.view(contend);
            let out = self.replicas[i]
                .own
                .apply(now, ownership::Input::View(view));
            self.own_effects(i, out);
        }
    }

    fn own_effects(&mut self, i: usize, out: Vec<ownership::Effect>) {
        let r = &mut self.replicas[i];
        for effect in out {
            match effect {
                ownership::Effect::Issue(op) => r.queue.push_back((Src::Own, op)),
                ownership::Effect::BecameOwner | ownership::Effect::LostOwnership(_) => {
                    r.sync = Sync::Unknown
                }
                // Replicas are never moved on purpose.
                ownership::Effect::AskToTakeOver(_) => {}
            }
        }
    }

    fn mutex_effects(&mut self, now: Millis, i: usize, out: Vec<MutexEffect>) {
        for effect in out {
            match effect {
                MutexEffect::Issue(op) => self.replicas[i].queue.push_back((Src::Mutex, op)),
                MutexEffect::Entered => {
                    self.replicas[i].entered_at = Some(now);
                    let view = self.view(true);
                    let out = self.replicas[i]
                        .own
                        .apply(now, ownership::Input::View(view));
                    self.own_effects(i, out);
                }
            }
        }
    }

    /// Lamport's arbitration in front of each challenge: enter when the
    /// ownership machine wants to challenge; leave once it has started (or
    /// after two intervals if it never did).
    ///
    /// The [leader](Self::leader) contends at once; the others only after
    /// it had time for a whole challenge, so that survivors do not split
    /// the replicas between them (which costs a second challenge round)
    /// unless the leader cannot reach them.
    fn arbitrate(&mut self, now: Millis, i: usize) {
        let wanting = self.active && self.replicas[i].own.wants_to_challenge();
        let since = if wanting {
            *self.replicas[i].wanting_since.get_or_insert(now)
        } else {
            self.replicas[i].wanting_since = None;
            now
        };
        let head_start = challenge_wait(self.defense_ms) + self.defense_ms;
        let wants = wanting && (self.leader() == self.me || now - since > head_start);
        let r = &self.replicas[i];
        let input = if r.mutex.is_inside() {
            let done = matches!(r.own.role(), Role::Challenging | Role::Owner)
                || r.entered_at.is_some_and(|t| now - t > 2 * self.defense_ms);
            done.then_some(MutexInput::Exit)
        } else if wants && r.mutex.is_idle() {
            Some(MutexInput::Enter)
        } else if !self.active && !r.mutex.is_idle() {
            Some(MutexInput::Exit)
        } else {
            Some(MutexInput::Tick)
        };
        if let Some(input) = input {
            if input == MutexInput::Exit {
                self.replicas[i].entered_at = None;
                let view = self.view(false);
                let out = self.replicas[i]
                    .own
                    .apply(now, ownership::Input::View(view));
                self.own_effects(i, out);
            }
            // The mutex keeps one command outstanding itself: Enter and
            // Exit while one is queued take effect when it completes.
            let out = self.replicas[i].mutex.apply(now, input);
            self.mutex_effects(now, i, out);
        }
    }

    /// The node every replica should go to: the recorded quorum owner
    /// while it is heard, otherwise the lowest-numbered node heard (this
    /// one included). Nodes that hear the same peers and read the same
    /// record agree on it, which breaks the tie when live nodes hold a
    /// minority of the replicas each and defend them against each other.
    fn leader(&self) -> NodeId {
        match self.record.owner {
            Some(owner) if owner == self.me || self.heard.contains(&owner) => owner,
            _ => self
                .heard
                .iter()
                .copied()
                .chain(std::iter::once(self.me))
                .min()
                .unwrap_or(self.me),
        }
    }

    /// Every replica belongs with the quorum owner, so that each record
    /// reaches all of them, and before there is one, with the
    /// [leader](Self::leader): it asks for the replicas it lacks (an invited
    /// challenge) and every other node holding one hands it over as in a
    /// planned move.
    fn gather(&mut self, now: Millis, i: usize) {
        let leader = self.leader();
        let role = self.replicas[i].own.role();
        let input = if self.quorate || (self.active && leader == self.me) {
            if role != Role::Member {
                return;
            }
            ownership::Input::TakeOver
        } else if leader != self.me
            && self.active
            && self.proposal.is_none()
            && self.replicas[i].own.is_owner()
        {
            ownership::Input::MoveTo(leader)
        } else {
            return;
        };
        let out = self.replicas[i].own.apply(now, input);
        self.own_effects(i, out);
    }

    /// Owned replicas: read each once owned. Becoming the quorum owner
    /// (a majority read): the newest record among them is the latest
    /// committed one; the new owner writes it forward under a new term to
    /// every owned replica. Already the owner: a replica gathered later, or
    /// left at an older epoch, is overwritten with the current record.
    fn reconcile(&mut self) {
        for r in &mut self.replicas {
            if r.own.is_owner() && r.sync == Sync::Unknown {
                r.sync = Sync::Reading;
                r.queue
                    .push_back((Src::Record, DiskOp::ReadBlock { lba: LBA_RECORD }));
            } else if !r.own.is_owner() && !matches!(r.sync, Sync::Unknown) {
                r.sync = Sync::Unknown;
            }
        }
        if self.quorate {
            let block = self.record.encode(self.block_size);
            let epoch = self.record.epoch;
            for r in &mut self.replicas {
                // Read after the takeover, or left behind at an older epoch.
                let behind = match r.sync {
                    Sync::Read(_) => true,
                    Sync::Synced(e) => e < epoch,
                    _ => false,
                };
                if behind {
                    r.sync = Sync::Writing {
                        epoch,
                        counted: false,
                    };
                    r.queue.push_back((
                        Src::Record,
                        DiskOp::WriteBlock {
                            lba: LBA_RECORD,
                            data: block.clone(),
                        },
                    ));
                }
            }
            return;
        }
        if self.proposal.is_some() {
            return;
        }
        let read: Vec<&ClusterRecord> = self
            .replicas
            .iter()
            .filter_map(|r| match &r.sync {
                Sync::Read(rec) => Some(rec),
                _ => None,
            })
            .collect();
        if read.len() < self.majority() {
            return;
        }
        let best = read
            .into_iter()
            .chain(std::iter::once(&self.record))
            .max_by_key(|r| r.version())
            .cloned()
            .unwrap_or_default();
        let proposal = ClusterRecord {
            term: best.term + 1,
            epoch: best.epoch + 1,
            members: self.wanted.clone().unwrap_or_else(|| best.members.clone()),
            owner: Some(self.me),
        };
        self.record = best;
        self.write_proposal(proposal);
    }

    fn write_proposal(&mut self, proposal: ClusterRecord) {
        let block = proposal.encode(self.block_size);
        for r in &mut self.replicas {
            let counted = match r.sync {
                Sync::Read(_) => false,
                Sync::Synced(epoch) if epoch == self.record.epoch => true,
                _ => continue,
            };
            r.sync = Sync::Writing {
                epoch: proposal.epoch,
                counted,
            };
            r.queue.push_back((
                Src::Record,
                DiskOp::WriteBlock {
                    lba: LBA_RECORD,
                    data: block.clone(),
                },
            ));
        }
        self.proposal = Some(proposal);
    }

    fn record_reply(&mut self, i: usize, result: DiskResult) {
        let r = &mut self.replicas[i];
        r.sync = match (&r.sync, result) {
            (Sync::Reading, Ok(DiskReply::Block(block))) => {
                Sync::Read(ClusterRecord::decode(&block).unwrap_or_default())
            }
            (Sync::Writing { epoch, .. }, Ok(DiskReply::Done)) => Sync::Synced(*epoch),
            _ => Sync::Unknown,
        };
    }

    /// Commit the proposal once a majority holds it; then start the next
    /// change the quorum owner wants.
    fn commit(&mut self, now: Millis, fx: &mut Vec<QuorumEffect>) {
        if let Some(proposal) = self.proposal.clone() {
            let acked = self
                .replicas
                .iter()
                .filter(|r| r.own.is_owner() && r.sync == Sync::Synced(proposal.epoch))
                .count();
            if acked >= self.majority() && (self.quorate || self.leases_ended(now)) {
                self.record = proposal.clone();
                self.proposal = None;
                self.quorate = true;
                fx.push(QuorumEffect::Quorate(true));
                fx.push(QuorumEffect::Record(proposal));
            } else if self.owned() < self.majority() {
                // Lost the quorum mid-write: the next owner decides.
                self.proposal = None;
            }
            return;
        }
        if !self.quorate {
            return;
        }
        if let Some(members) = self.wanted.clone() {
            if members != self.record.members {
                let proposal = ClusterRecord {
                    term: self.record.term,
                    epoch: self.record.epoch + 1,
                    members,
                    owner: Some(self.me),
                };
                self.write_proposal(proposal);
            }
        }
    }

    /// Might another node still use volumes on a lease from an earlier
    /// owner's claim? A takeover after a failure comes long after the
    /// leases end (the challenge wait), but replicas handed over in a
    /// planned move arrive at once: the new owner claims the quorum only
    /// when every lease from the last claim it heard has run out, its own
    /// and those of nodes that heard the claim up to a delay later.
    fn leases_ended(&self, now: Millis) -> bool {
        self.last_claim
            .is_none_or(|t| now - t >= lease_ms(self.defense_ms) + max_delay_ms(self.defense_ms))
    }

    /// The last quorum claim heard from a peer.
    pub fn heard_claim(&mut self, at: Option<Millis>) {
        self.last_claim = at;
    }

    fn owned(&self) -> usize {
        self.replicas.iter().filter(|r| r.own.is_owner()).count()
    }

    /// Everyone else: read the record from every replica each interval.
    fn read_round(&mut self, now: Millis) {
        if self.quorate || now < self.next_read {
            return;
        }
        self.next_read = now + self.defense_ms;
        // Owned replicas too: a node that holds one while another node
        // leads must learn so to hand it over.
        for r in &mut self.replicas {
            if !r.queue.iter().any(|(s, _)| *s == Src::Peek) {
                r.seen = None;
                r.queue
                    .push_back((Src::Peek, DiskOp::ReadBlock { lba: LBA_RECORD }));
            }
        }
    }

    /// Adopt the newest record present on a majority of the replicas
    /// (a deposed owner's unfinished write is on a minority only).
    fn non_owner_adopt(&mut self, fx: &mut Vec<QuorumEffect>) {
        if self.quorate
            || self.proposal.is_some()
            || self.replicas.iter().filter(|r| r.seen.is_some()).count() < self.majority()
        {
            return;
        }
        // Answers stay until the next round's reads replace them.
        let seen: Vec<ClusterRecord> = self
            .replicas
            .iter()
            .filter_map(|r| r.seen.clone().flatten())
            .collect();
        let agreed = seen
            .iter()
            .filter(|rec| seen.iter().filter(|other| other == rec).count() >= self.majority())
            .max_by_key(|rec| rec.version());
        if let Some(best) = agreed {
            if best.version() > self.record.version() {
                self.record = best.clone();
                fx.push(QuorumEffect::Record(self.record.clone()));
            }
        }
    }
}

//! Ownership of one LUN through a persistent reservation, as a pure state
//! machine: inputs are clock ticks, command results and changes of the
//! cluster view; effects are the commands to issue and ownership changes.
//!
//! ```text
//!            view inactive (no quorum)                 from any state
//!   ┌──────────────────────────────────────────► Passive ──┐ view active
//!   │                                                      ▼
//!   │   register shared        holder invalid,      Unregistered
//!   │  ┌──────────────┐        gone or suspected         │ REGISTER (shared)
//!   │  ▼              │        (or move target)          ▼
//!   │ Member ─────────┴──────────────────────────► Challenging
//!   │  ▲   challenge removed by a live owner ◄───────────┤ key survives
//!   │  │                                                 │ > 2 intervals:
//!   │  │ RELEASE (planned move)                          │ PREEMPT AND ABORT
//!   │  └────────────────── Owner ◄───────────────────────┘ or RESERVE
//!   │                        │ every interval: READ RESERVATION, READ KEYS,
//!   └────────────────────────┘ PREEMPT AND ABORT every key that is not valid
//! ```
//!
//! Why a healthy owner always wins: the owner removes *every* challenge key
//! within one defense interval of it appearing (a challenge from a live
//! member is exactly how a member asks "are you alive?"), and a challenger
//! preempts only with its challenge key as the RESERVATION KEY, which the
//! target refuses once that key is gone (SPC-4 §5.14.11.4). The challenger
//! waits [`challenge_wait`] — two intervals and a half — so an owner whose
//! defenses complete within an interval always gets there first. It also
//! preempts only the holder it saw when it started, so it never displaces an
//! owner that took over while it waited.
//!
//! The same machine arbitrates quorum replicas ([`Policy::Replica`]): keys
//! are kept and removed the same way, but a member challenges only after
//! the quorum logic has let it through Lamport's arbitration
//! ([`View::contend`]); until then it only reports that it
//! [wants to](Ownership::wants_to_challenge).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::disk::{DiskFault, DiskOp, DiskReply, DiskResult};
use crate::keys::{ClusterKey, ClusterSignature, Generation, KeyRole, NodeId};
use crate::time::Millis;

/// Default defense interval (issue 7: 3 s).
pub const DEFAULT_DEFENSE_MS: u64 = 3000;

/// How long a challenge must survive before the challenger preempts: more
/// than two defense intervals, so that one late defense still lands first.
pub const fn challenge_wait(defense_ms: u64) -> u64 {
    defense_ms * 5 / 2
}

/// How long an owner may go without a completed defense round (its path to
/// the LUN failed) before it stops counting as owner: a round is due every
/// interval, so this allows one late round. A challenge registered after
/// the last completed round takes over no sooner than [`challenge_wait`]
/// later, so the owner has stepped down half an interval before that.
pub const fn lapse_ms(defense_ms: u64) -> u64 {
    defense_ms * 2
}

/// Which keys are valid on the LUN, and when non-owners register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// A shared volume: every member registers a shared key and may write;
    /// the owner removes keys of non-members and of older generations.
    Volume,
    /// A quorum replica or witness: as `Volume`, but a member challenges
    /// only when [`View::contend`] is set.
    Replica,
}

/// What a node may do with a LUN, given its place in the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Standing {
    /// Cut off: no majority heard, the startup gate closed, or not in the
    /// record. Stops using and defending the LUN; its keys will be removed.
    #[default]
    Fenced,
    /// Volumes only: hears a majority while the quorum changes hands (not
    /// quorate, no lease). Keeps its keys, defends what it owns and
    /// registers challenges against a failed holder, so that the challenge
    /// wait runs alongside the quorum's own; takes nothing over until
    /// [`Standing::Active`].
    Waiting,
    /// For volumes: quorate or within the lease. For replicas: connected
    /// to enough of the cluster to hold the quorum.
    Active,
}

/// What this node currently believes about the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub standing: Standing,
    /// Members and their current generations (from the quorum record).
    pub members: BTreeMap<NodeId, Generation>,
    /// Members whose heartbeats stopped: their ownership is challenged
    /// before the membership record catches up.
    pub suspected: BTreeSet<NodeId>,
    /// Replicas only: this node won the arbitration and may challenge.
    pub contend: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Tick,
    Reply(DiskResult),
    View(View),
    /// Owner only: hand the LUN to `target` (`reservoir node move`).
    MoveTo(NodeId),
    /// Challenge now and reserve as soon as the owner releases: a planned
    /// move to us. If the owner neither releases nor defends, the challenge
    /// preempts it after the usual wait.
    TakeOver,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossReason {
    /// Another node preempted our key.
    Preempted,
    /// The view went inactive (no quorum): we stopped using the LUN.
    Inactive,
    /// Planned move to another node.
    Moved,
    /// No defense round completed within [`lapse_ms`]: the path to the LUN
    /// failed. Volumes ask a live member to take over.
    Lapsed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Issue(DiskOp),
    BecameOwner,
    LostOwnership(LossReason),
    /// Tell `NodeId` to challenge now: we release to it once it does.
    AskToTakeOver(NodeId),
}

/// The node's part in one LUN, for status output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Role {
    Passive,
    Unregistered,
    Member,
    Challenging,
    /// Holds the reservation and is clearing challenges before it counts
    /// as owner.
    Reclaiming,
    Owner,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Passive,
    Unregistered,
    Member,
    Challenging {
        /// When our challenge key was registered.
        since: Option<Millis>,
        /// The holder we challenge (`None`: nobody held it).
        victim: Option<u64>,
        /// Planned move: reserve as soon as the owner releases.
        invited: bool,
    },
    Owner {
        /// Hand over to this node once its challenge shows up.
        yield_to: Option<NodeId>,
        /// False for a holder that found its own reservation (a restart, a
        /// reconnect, the end of a partition): a challenge registered while
        /// it was away may be about to take over, so it counts as owner
        /// only after a defense round that found no key to remove.
        confirmed: bool,
    },
}

/// The reply we are waiting for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pending {
    RegisterShared,
    MemberReservation,
    MemberKeys,
    ClaimHeld,
    RegisterChallenge,
    ChallengeKeys,
    ChallengeReservation,
    Take,
    Promote,
    Withdraw,
    DefendReservation,
    DefendKeys,
    Reserve,
    Remove,
    Release,
    Demote,
}

#[derive(Debug, Clone)]
pub struct Ownership {
    signature: ClusterSignature,
    me: NodeId,
    generation: Generation,
    policy: Policy,
    defense_ms: u64,
    view: View,
    state: State,
    pending: Option<Pending>,
    /// Earliest time of the next periodic command sequence.
    next: Millis,
    /// Keys to remove in this defense round.
    victims: VecDeque<u64>,
    /// This round ends by handing the LUN to the move target.
    handover: bool,
    /// Replicas: the last look found the holder invalid, but we may not
    /// challenge before winning the arbitration.
    wanting: bool,
    /// Owner: when the last defense round found our key in place.
    defended_at: Millis,
    /// When our ownership last lapsed.
    lapsed_at: Option<Millis>,
}

impl Ownership {
    pub fn new(
        signature: ClusterSignature,
        me: NodeId,
        generation: Generation,
        policy: Policy,
        defense_ms: u64,
    ) -> Self {
        Ownership {
            signature,
            me,
            generation,
            policy,
            defense_ms,
            view: View::default(),
            state: State::Passive,
            pending: None,
            next: Millis(0),
            victims: VecDeque::new(),
            handover: false,
            wanting: false,
            defended_at: Millis(0),
            lapsed_at: None,
        }
    }

    /// Did our ownership lapse within `window` before `now`?
    pub fn lapsed_within(&self, now: Millis, window: u64) -> bool {
        self.lapsed_at.is_some_and(|t| now - t < window)
    }

    /// True while this node believes it owns the LUN.
    pub fn is_owner(&self) -> bool {
        matches!(
            self.state,
            State::Owner {
                confirmed: true,
                ..
            }
        )
    }

    /// Replicas: the holder looked invalid and we wait for [`View::contend`].
    pub fn wants_to_challenge(&self) -> bool {
        self.wanting && matches!(self.state, State::Member)
    }

    pub fn role(&self) -> Role {
        match self.state {
            State::Passive => Role::Passive,
            State::Unregistered => Role::Unregistered,
            State::Member => Role::Member,
            State::Challenging { .. } => Role::Challenging,
            State::Owner {
                confirmed: false, ..
            } => Role::Reclaiming,
            State::Owner { .. } => Role::Owner,
        }
    }

    /// This node's key in `role`.
    pub fn key(&self, role: KeyRole) -> u64 {
        ClusterKey {
            signature: self.signature,
            node: self.me,
            role,
            generation: self.generation,
        }
        .encode()
    }

    pub fn apply(&mut self, now: Millis, input: Input) -> Vec<Effect> {
        let mut fx = Vec::new();
        match input {
            Input::Tick => {}
            Input::Reply(result) => self.on_reply(now, result, &mut fx),
            Input::View(view) => {
                let was = self.view.standing;
                self.view = view;
                if self.view.standing == Standing::Fenced {
                    self.lose(LossReason::Inactive, &mut fx);
                    self.state = State::Passive;
                } else if was == Standing::Fenced {
                    self.state = State::Unregistered;
                    self.next = now;
                } else if matches!(self.state, State::Member)
                    || (was == Standing::Waiting
                        && matches!(self.state, State::Challenging { since: Some(_), .. }))
                {
                    // Membership changed, or a challenge was waiting for the
                    // quorum: look at the holder now rather than at the next
                    // poll, to shorten failover.
                    self.next = now;
                }
            }
            Input::MoveTo(target) => {
                if let State::Owner {
                    yield_to,
                    confirmed: true,
                } = &mut self.state
                {
                    if target != self.me && *yield_to != Some(target) {
                        *yield_to = Some(target);
                        fx.push(Effect::AskToTakeOver(target));
                    }
                }
            }
            Input::TakeOver => {
                if matches!(self.state, State::Member) {
                    self.state = State::Challenging {
                        since: None,
                        victim: None,
                        invited: true,
                    };
                    self.next = now;
                }
            }
        }
        if self.is_owner() && now - self.defended_at > lapse_ms(self.defense_ms) {
            self.lapse(now, &mut fx);
        }
        if self.pending.is_none() && now >= self.next {
            self.start_round(now, &mut fx);
        }
        fx
    }

    /// Our defenses stopped completing: stop counting as owner (the
    /// reservation stays until someone preempts it) and, for a volume, ask
    /// the lowest-numbered live member to take over rather than wait for
    /// the others to notice.
    fn lapse(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        self.lapsed_at = Some(now);
        self.step_down(now, LossReason::Lapsed, fx);
        if self.policy == Policy::Volume {
            let successor = self
                .view
                .members
                .keys()
                .copied()
                .find(|&n| n != self.me && !self.view.suspected.contains(&n));
            if let Some(node) = successor {
                fx.push(Effect::AskToTakeOver(node));
            }
        }
    }

    fn issue(&mut self, pending: Pending, op: DiskOp, fx: &mut Vec<Effect>) {
        self.pending = Some(pending);
        fx.push(Effect::Issue(op));
    }

    fn lose(&mut self, reason: LossReason, fx: &mut Vec<Effect>) {
        if self.is_owner() {
            fx.push(Effect::LostOwnership(reason));
        }
    }

    /// Begins the periodic sequence of the current state.
    fn start_round(&mut self, now: Millis, fx: &mut Vec<Effect>) {
        match self.state {
            State::Passive => {}
            State::Unregistered => {
                let new = self.key(KeyRole::Shared);
                self.issue(Pending::RegisterShared, DiskOp::Register { new }, fx);
            }
            State::Member => {
                self.issue(Pending::MemberReservation, DiskOp::ReadReservation, fx);
            }
            State::Challenging { since: None, .. } => {
                let new = self.key(KeyRole::Challenge);
                self.issue(Pending::RegisterChallenge, DiskOp::Register { new }, fx);
            }
            State::Challenging { .. } => {
                self.issue(Pending::ChallengeKeys, DiskOp::ReadKeys, fx);
            }
            State::Owner { .. } => {
                self.issue(Pending::DefendReservation, DiskOp::ReadReservation, fx);
            }
        }
        self.next = now + self.poll_ms();
    }

    fn poll_ms(&self) -> u64 {
        match self.state {
            // A challenger looks more often so it acts soon after its wait
            // ends (or, when invited, soon after the owner releases).
            State::Challenging { .. } => self.defense_ms / 4,
            _ => self.defense_ms,
        }
    }

    fn decode(&self, raw: u64) -> Option<ClusterKey> {
        ClusterKey::decode(raw, self.signature)
    }

    /// Would the owner keep this registration? (Volume policy.)
    fn key_is_valid(&self, raw: u64) -> bool {
        let Some(key) = self.decode(raw) else {
            return false;
        };
        if key.node == self.me {
            return raw == self.key(KeyRole::Owner);
        }
        if self.view.members.get(&key.node) != Some(&key.generation) {
            return false;
        }
        match key.role {
            KeyRole::Shared => true,
            // A planned move keeps the target's challenge.
            KeyRole::Challenge => {
                matches!(self.state, State::Owner { yield_to: Some(t), .. } if t == key.node)
            }
            KeyRole::Owner => false,
        }
    }

    /// Is `holder` an owner we must leave alone?
    fn holder_is_valid(&self, holder: u64) -> bool {
        self.decode(holder).is_some_and(|k| {
            self.view.members.get(&k.node) == Some(&k.generation)
                && !self.view.suspected.contains(&k.node)
        })
    }

    fn is_mine(&self, raw: u64) -> bool {
        self.decode(raw)
            .is_some_and(|k| k.node == self.me && k.generation == self.generation)
    }

    fn step_down(&mut self, now: Millis, reason: LossReason, fx: &mut Vec<Effect>) {
        self.lose(reason, fx);
        self.state = State::Unregistered;
        self.next = now;
    }

    /// Removes the next invalid key of this round, then hands over if a
    /// planned move's target has registered its challenge.
    fn next_removal(&mut self, fx: &mut Vec<Effect>) {
        let key = self.key(KeyRole::Owner);
        if let Some(victim) = self.victims.pop_front() {
            self.issue(Pending::Remove, DiskOp::PreemptAndAbort { key, victim }, fx);
        } else if std::mem::take(&mut self.handover) {
            // Stop believing first: from here on we are a member that still
            // holds the reservation until RELEASE completes.
            self.lose(LossReason::Moved, fx);
            self.state = State::Member;
            self.issue(Pending::Release, DiskOp::Release { key }, fx);
        }
    }

    fn challenge(&mut self, now: Millis, victim: Option<u64>) {
        self.state = State::Challenging {
            since: None,
            victim,
            invited: false,
        };
        self.next = now;
    }

    fn on_reply(&mut self, now: Millis, result: DiskResult, fx: &mut Vec<Effect>) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        if matches!(self.state, State::Passive) {
            return;
        }
        // Unavailable: the command may or may not have run. Look again at
        // the next interval; the round's first read tells what happened.
        if result == Err(DiskFault::Unavailable) {
            if !self.is_owner() && !matches!(self.state, State::Challenging { .. }) {
                self.state = State::Unregistered;
            }
            return;
        }
        let follow =
            |this: &mut Self, p: Pending, op: DiskOp, fx: &mut Vec<Effect>| this.issue(p, op, fx);
        match (pending, result) {
            (Pending::RegisterShared, Ok(_)) => {
                self.state = State::Member;
                self.next = now;
            }
            (Pending::RegisterShared, Err(_)) => {}
            (Pending::MemberReservation, Ok(DiskReply::Reservation(holder))) => match holder {
                Some(h) if self.is_mine(h) => {
                    // We hold it (a restart, or a reconnect re-registered
                    // our nexus): take up the owner's key.
                    let new = self.key(KeyRole::Owner);
                    follow(
                        self,
                        Pending::ClaimHeld,
                        DiskOp::ChangeKey { current: h, new },
                        fx,
                    );
                }
                Some(h) if self.holder_is_valid(h) => {
                    self.wanting = false;
                    follow(self, Pending::MemberKeys, DiskOp::ReadKeys, fx);
                }
                // Replicas challenge only after winning the arbitration.
                _ if self.policy == Policy::Replica && !self.view.contend => {
                    self.wanting = true;
                    follow(self, Pending::MemberKeys, DiskOp::ReadKeys, fx);
                }
                other => {
                    self.wanting = false;
                    self.challenge(now, other)
                }
            },
            (Pending::MemberKeys, Ok(DiskReply::Keys(keys))) => {
                if !keys.contains(&self.key(KeyRole::Shared)) {
                    self.state = State::Unregistered;
                    self.next = now;
                }
            }
            (Pending::ClaimHeld, Ok(_)) => {
                self.state = State::Owner {
                    yield_to: None,
                    confirmed: false,
                };
                self.next = now;
            }
            (Pending::ClaimHeld, Err(_)) => self.state = State::Unregistered,
            (Pending::RegisterChallenge, Ok(_)) => {
                if let State::Challenging { since, .. } = &mut self.state {
                    *since = Some(now);
                }
            }
            (Pending::RegisterChallenge, Err(_)) => self.state = State::Unregistered,
            (Pending::ChallengeKeys, Ok(DiskReply::Keys(keys))) => {
                let State::Challenging {
                    since: Some(since),
                    invited,
                    ..
                } = self.state
                else {
                    return;
                };
                if !keys.contains(&self.key(KeyRole::Challenge)) {
                    // A live owner removed it: it is alive. Rejoin.
                    self.state = State::Unregistered;
                    self.next = now;
                } else if invited || now - since > challenge_wait(self.defense_ms) {
                    follow(
                        self,
                        Pending::ChallengeReservation,
                        DiskOp::ReadReservation,
                        fx,
                    );
                }
            }
            (Pending::ChallengeReservation, Ok(DiskReply::Reservation(holder))) => {
                let State::Challenging {
                    since: Some(since),
                    victim,
                    invited,
                } = self.state
                else {
                    return;
                };
                let key = self.key(KeyRole::Challenge);
                // Taking over waits for the quorum (or its lease) as well;
                // until then the challenge stands.
                if self.view.standing != Standing::Active && (holder.is_none() || holder == victim)
                {
                    return;
                }
                let waited = now - since > challenge_wait(self.defense_ms);
                if invited && victim.is_none() && holder.is_some_and(|h| h != key) {
                    // The owner that invited us: if it dies before releasing,
                    // the challenge takes it over like any other.
                    if let State::Challenging { victim, .. } = &mut self.state {
                        *victim = holder;
                    }
                    return;
                }
                match holder {
                    None if waited || invited => {
                        follow(self, Pending::Take, DiskOp::Reserve { key }, fx)
                    }
                    Some(h) if h == key => {
                        let new = self.key(KeyRole::Owner);
                        follow(
                            self,
                            Pending::Promote,
                            DiskOp::ChangeKey { current: key, new },
                            fx,
                        );
                    }
                    Some(h) if waited && Some(h) == victim => follow(
                        self,
                        Pending::Take,
                        DiskOp::PreemptAndAbort { key, victim: h },
                        fx,
                    ),
                    // Still waiting for an invited release.
                    Some(_) if invited && !waited => {}
                    None => {}
                    Some(_) => {
                        // Someone else took over while we waited: it gets
                        // its chance to defend. Go back to our shared key.
                        let new = self.key(KeyRole::Shared);
                        follow(
                            self,
                            Pending::Withdraw,
                            DiskOp::ChangeKey { current: key, new },
                            fx,
                        );
                    }
                }
            }
            (Pending::Take, Ok(_)) => {
                let (current, new) = (self.key(KeyRole::Challenge), self.key(KeyRole::Owner));
                follow(
                    self,
                    Pending::Promote,
                    DiskOp::ChangeKey { current, new },
                    fx,
                );
            }
            (Pending::Promote, Ok(_)) => {
                self.state = State::Owner {
                    yield_to: None,
                    confirmed: true,
                };
                self.defended_at = now;
                self.next = now;
                fx.push(Effect::BecameOwner);
            }
            (Pending::Withdraw, Ok(_)) => self.state = State::Member,
            (Pending::Take | Pending::Promote | Pending::Withdraw, Err(_)) => {
                self.state = State::Unregistered;
                self.next = now;
            }
            (Pending::DefendReservation, Ok(DiskReply::Reservation(holder))) => {
                let mine = self.key(KeyRole::Owner);
                match holder {
                    Some(h) if h == mine => follow(self, Pending::DefendKeys, DiskOp::ReadKeys, fx),
                    // The LUN lost its reservation but maybe not our key
                    // (RESERVE fails if the key went too).
                    None => follow(self, Pending::Reserve, DiskOp::Reserve { key: mine }, fx),
                    Some(_) => self.step_down(now, LossReason::Preempted, fx),
                }
            }
            (Pending::Reserve, Ok(_)) => {
                follow(self, Pending::DefendKeys, DiskOp::ReadKeys, fx);
            }
            (Pending::DefendKeys, Ok(DiskReply::Keys(keys))) => {
                let mine = self.key(KeyRole::Owner);
                if !keys.contains(&mine) {
                    self.step_down(now, LossReason::Preempted, fx);
                    return;
                }
                self.defended_at = now;
                self.handover = match self.state {
                    State::Owner {
                        yield_to: Some(t), ..
                    } => keys.iter().any(|&k| {
                        self.decode(k)
                            .is_some_and(|k| k.node == t && k.role == KeyRole::Challenge)
                    }),
                    _ => false,
                };
                // The request may have been lost, or found the target busy
                // with a challenge of its own: ask again every round.
                if let State::Owner {
                    yield_to: Some(t), ..
                } = self.state
                {
                    if !self.handover {
                        fx.push(Effect::AskToTakeOver(t));
                    }
                }
                let mut victims: Vec<u64> = keys
                    .into_iter()
                    .filter(|&k| !self.key_is_valid(k))
                    .collect();
                victims.sort_unstable();
                victims.dedup();
                if let State::Owner { confirmed, .. } = &mut self.state {
                    if !*confirmed {
                        if victims.is_empty() {
                            *confirmed = true;
                            fx.push(Effect::BecameOwner);
                        } else {
                            // Another round as soon as these are removed.
                            self.next = now;
                        }
                    }
                }
                self.victims = victims.into();
                self.next_removal(fx);
            }
            // Conflict here is ambiguous (our key gone, or the victim left on
            // its own, SPC-4 §5.14.11.4.4); the next round's reads tell.
            (Pending::Remove, _) => self.next_removal(fx),
            (Pending::Release, Ok(_)) => {
                let (current, new) = (self.key(KeyRole::Owner), self.key(KeyRole::Shared));
                follow(
                    self,
                    Pending::Demote,
                    DiskOp::ChangeKey { current, new },
                    fx,
                );
            }
            (Pending::Demote, _) => {
                self.state = State::Unregistered;
                self.next = now;
            }
            (Pending::DefendReservation | Pending::Reserve | Pending::DefendKeys, Err(_)) => {
                self.step_down(now, LossReason::Preempted, fx)
            }
            (Pending::Release, Err(_)) => {
                self.state = State::Unregistered;
                self.next = now;
            }
            // A reply of the wrong shape: the edge is broken; start over.
            (_, Ok(_)) => {
                self.lose(LossReason::Preempted, fx);
                self.state = State::Unregistered;
            }
            (_, Err(_)) => self.state = State::Unregistered,
        }
    }
}

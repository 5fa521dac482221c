//! The login state machine (RFC 7143 §6.3): stages, security (CHAP) and
//! operational negotiation. Pure: the connection feeds it Login requests and
//! sends what it returns.
//!
//! ```text
//!   Security --T--> Operational --T--> FullFeature
//!       \_______________T______________/
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use super::chap::{self, Challenge};
use super::keys;
use super::params::{KeyAnswer, Params, OUR_MAX_RECV_DATA_SEGMENT};
use crate::pdu::{LoginRequest, Stage};
use crate::target::{Access, Credentials, TargetNode, Targets};

/// Login status (class, detail), RFC 7143 §11.13.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginStatus(pub u8, pub u8);

impl LoginStatus {
    pub const INITIATOR_ERROR: LoginStatus = LoginStatus(2, 0x00);
    pub const AUTHENTICATION_FAILED: LoginStatus = LoginStatus(2, 0x01);
    pub const AUTHORIZATION_FAILURE: LoginStatus = LoginStatus(2, 0x02);
    pub const NOT_FOUND: LoginStatus = LoginStatus(2, 0x03);
    pub const UNSUPPORTED_VERSION: LoginStatus = LoginStatus(2, 0x05);
    pub const TOO_MANY_CONNECTIONS: LoginStatus = LoginStatus(2, 0x06);
    pub const MISSING_PARAMETER: LoginStatus = LoginStatus(2, 0x07);
    pub const SESSION_DOES_NOT_EXIST: LoginStatus = LoginStatus(2, 0x0a);
    pub const OUT_OF_RESOURCES: LoginStatus = LoginStatus(3, 0x02);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionType {
    Normal,
    Discovery,
}

/// What the target serves at login.
#[derive(Debug)]
pub struct LoginContext<'a> {
    pub targets: &'a Targets,
    pub portal_group_tag: u16,
    /// Access rules for discovery sessions.
    pub discovery: &'a Access,
}

/// The answer to one Login request.
#[derive(Debug)]
pub enum LoginStep {
    /// Send a Login response and stay in the login phase.
    Reply {
        transit: bool,
        csg: Stage,
        nsg: Stage,
        data: Vec<u8>,
    },
    /// Send the final Login response (T=1, NSG=FullFeature); the session is
    /// in full feature phase.
    Complete {
        csg: Stage,
        data: Vec<u8>,
        session: Established,
    },
    /// Send a Login response with this status and close.
    Fail(LoginStatus),
}

/// A session that finished its login.
#[derive(Debug)]
pub struct Established {
    pub session_type: SessionType,
    pub initiator: String,
    pub target: Option<Arc<TargetNode>>,
    pub params: Params,
}

#[derive(Debug)]
enum Auth {
    /// Waiting for AuthMethod.
    Start,
    AwaitAlgorithm,
    AwaitResponse(Challenge),
    Done,
}

/// Bounds a login's text reassembled from C-bit PDUs.
const MAX_LOGIN_TEXT: usize = 64 * 1024;

#[derive(Debug)]
pub struct Login {
    stage: Option<Stage>,
    initiator: Option<String>,
    session_type: SessionType,
    target: Option<Arc<TargetNode>>,
    auth: Auth,
    params: Params,
    seen: HashSet<String>,
    partial: Vec<u8>,
    declared_max_recv: bool,
}

impl Default for Login {
    fn default() -> Self {
        Login {
            stage: None,
            initiator: None,
            session_type: SessionType::Normal,
            target: None,
            auth: Auth::Start,
            params: Params::default(),
            seen: HashSet::new(),
            partial: Vec::new(),
            declared_max_recv: false,
        }
    }
}

impl Login {
    pub fn new() -> Login {
        Login::default()
    }

    pub fn on_request(
        &mut self,
        req: &LoginRequest,
        data: &[u8],
        ctx: &LoginContext<'_>,
    ) -> LoginStep {
        match self.step(req, data, ctx) {
            Ok(step) => step,
            Err(status) => LoginStep::Fail(status),
        }
    }

    fn step(
        &mut self,
        req: &LoginRequest,
        data: &[u8],
        ctx: &LoginContext<'_>,
    ) -> Result<LoginStep, LoginStatus> {
        // Version 0 is the only one defined (§11.12.4).
        if req.version_min > 0 {
            return Err(LoginStatus::UNSUPPORTED_VERSION);
        }
        let stage = *self.stage.get_or_insert(req.csg);
        if req.csg != stage || stage == Stage::FullFeature {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
        if self.partial.len() + data.len() > MAX_LOGIN_TEXT {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
        self.partial.extend_from_slice(data);
        if req.continue_ {
            // §6.3: a C-bit request gets an empty response; the text is
            // processed once complete.
            return Ok(LoginStep::Reply {
                transit: false,
                csg: stage,
                nsg: stage,
                data: Vec::new(),
            });
        }
        // The first complete request: declarations are only valid here.
        let first = self.initiator.is_none();
        let text = std::mem::take(&mut self.partial);
        let pairs = keys::parse(&text).map_err(|_| LoginStatus::INITIATOR_ERROR)?;
        let mut out = Vec::new();

        // Declarations first: they decide which access rules apply.
        let mut target_name = None;
        for (k, v) in &pairs {
            // §6.2: a key is offered once per negotiation.
            if !self.seen.insert(k.clone()) {
                return Err(LoginStatus::INITIATOR_ERROR);
            }
            match k.as_str() {
                "InitiatorName" if first => self.initiator = Some(v.clone()),
                "TargetName" if first => target_name = Some(v.clone()),
                "SessionType" if first => {
                    self.session_type = match v.as_str() {
                        "Normal" => SessionType::Normal,
                        "Discovery" => SessionType::Discovery,
                        _ => return Err(LoginStatus(2, 0x09)),
                    }
                }
                "InitiatorName" | "TargetName" | "SessionType" => {
                    return Err(LoginStatus::INITIATOR_ERROR);
                }
                _ => {}
            }
        }
        if first {
            self.admit(target_name, ctx)?;
            if stage == Stage::Operational && self.access(ctx).chap.is_some() {
                // Skipping the security stage is not an option here.
                return Err(LoginStatus::AUTHENTICATION_FAILED);
            }
            if self.session_type == SessionType::Normal {
                // §13.9: in the first Login response of a normal session.
                keys::push(
                    &mut out,
                    "TargetPortalGroupTag",
                    &ctx.portal_group_tag.to_string(),
                );
            }
        }

        let security: Vec<&(String, String)> = pairs
            .iter()
            .filter(|(k, _)| k == "AuthMethod" || k.starts_with("CHAP_"))
            .collect();
        if !security.is_empty() {
            if stage != Stage::Security {
                return Err(LoginStatus::INITIATOR_ERROR);
            }
            self.authenticate(&security, ctx, &mut out)?;
        }
        for (k, v) in &pairs {
            let declared = matches!(
                k.as_str(),
                "InitiatorName" | "TargetName" | "SessionType" | "InitiatorAlias"
            );
            if declared || k == "AuthMethod" || k.starts_with("CHAP_") {
                continue;
            }
            match self.params.offer(k, v, true) {
                KeyAnswer::Value(a) => keys::push(&mut out, k, &a),
                KeyAnswer::Silent => {}
                KeyAnswer::Reject => keys::push(&mut out, k, "Reject"),
                KeyAnswer::NotUnderstood => keys::push(&mut out, k, "NotUnderstood"),
                KeyAnswer::Irrelevant => keys::push(&mut out, k, "Irrelevant"),
            }
        }
        if stage == Stage::Operational && !self.declared_max_recv {
            keys::push(
                &mut out,
                "MaxRecvDataSegmentLength",
                &OUR_MAX_RECV_DATA_SEGMENT.to_string(),
            );
            self.declared_max_recv = true;
        }

        if !req.transit {
            return Ok(LoginStep::Reply {
                transit: false,
                csg: stage,
                nsg: stage,
                data: out,
            });
        }
        if req.nsg <= stage {
            return Err(LoginStatus::INITIATOR_ERROR);
        }
        if stage == Stage::Security && !self.authenticated(ctx) {
            // Not ready to leave the stage: answer without T (§6.3).
            return Ok(LoginStep::Reply {
                transit: false,
                csg: stage,
                nsg: stage,
                data: out,
            });
        }
        self.stage = Some(req.nsg);
        self.seen.clear();
        if req.nsg != Stage::FullFeature {
            return Ok(LoginStep::Reply {
                transit: true,
                csg: stage,
                nsg: req.nsg,
                data: out,
            });
        }
        if self.declared_max_recv {
            self.params.target_max_recv = OUR_MAX_RECV_DATA_SEGMENT;
        }
        Ok(LoginStep::Complete {
            csg: stage,
            data: out,
            session: Established {
                session_type: self.session_type,
                initiator: self.initiator.clone().unwrap_or_default(),
                target: self.target.clone(),
                params: self.params,
            },
        })
    }

    /// Checks the first request's declarations against targets and ACLs.
    fn admit(
        &mut self,
        target_name: Option<String>,
        ctx: &LoginContext<'_>,
    ) -> Result<(), LoginStatus> {
        // §13.5: InitiatorName is required in the first Login request.
        let initiator = self
            .initiator
            .clone()
            .ok_or(LoginStatus::MISSING_PARAMETER)?;
        if self.session_type == SessionType::Normal {
            let name = target_name.ok_or(LoginStatus::MISSING_PARAMETER)?;
            let node = ctx.targets.get(&name).ok_or(LoginStatus::NOT_FOUND)?;
            self.target = Some(node);
        }
        if !self.access(ctx).allows(&initiator) {
            tracing::info!(%initiator, "login refused by access list");
            return Err(LoginStatus::AUTHORIZATION_FAILURE);
        }
        Ok(())
    }

    fn access<'a>(&'a self, ctx: &'a LoginContext<'_>) -> &'a Access {
        match &self.target {
            Some(t) => &t.access,
            None => ctx.discovery,
        }
    }

    /// A discovery session without discovery credentials of its own may
    /// authenticate with the CHAP credentials of any target, so hosts use
    /// one secret for discovery and login.
    fn discovery_chap(&self, ctx: &LoginContext<'_>) -> bool {
        self.target.is_none() && ctx.targets.list().iter().any(|t| t.access.chap.is_some())
    }

    /// The access rules of the target whose CHAP user is `user`, for a
    /// discovery session authenticating as [`Self::discovery_chap`] allows.
    fn discovery_credentials(&self, ctx: &LoginContext<'_>, user: &str) -> Option<Access> {
        if self.target.is_some() {
            return None;
        }
        ctx.targets
            .list()
            .into_iter()
            .find(|t| t.access.chap.as_ref().is_some_and(|c| c.user == user))
            .map(|t| t.access.clone())
    }

    fn authenticated(&self, ctx: &LoginContext<'_>) -> bool {
        match self.auth {
            Auth::Done => true,
            Auth::Start => self.access(ctx).chap.is_none(),
            Auth::AwaitAlgorithm | Auth::AwaitResponse(_) => false,
        }
    }

    /// Security stage keys (§12.1): AuthMethod, then the CHAP exchange.
    fn authenticate(
        &mut self,
        keys_in: &[&(String, String)],
        ctx: &LoginContext<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), LoginStatus> {
        let get = |name: &str| {
            keys_in
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let access = self.access(ctx).clone();
        if let Some(methods) = get("AuthMethod") {
            if !matches!(self.auth, Auth::Start) {
                return Err(LoginStatus::INITIATOR_ERROR);
            }
            // §6.2: the first method in the initiator's list that we support.
            // CHAP is supported when there are credentials to check; None
            // only when the target requires no CHAP.
            let chap_possible = access.chap.is_some() || self.discovery_chap(ctx);
            let chosen = methods.split(',').find(|m| match *m {
                "CHAP" => chap_possible,
                "None" => access.chap.is_none(),
                _ => false,
            });
            match chosen {
                Some("CHAP") => {
                    keys::push(out, "AuthMethod", "CHAP");
                    self.auth = Auth::AwaitAlgorithm;
                }
                Some(_) => {
                    keys::push(out, "AuthMethod", "None");
                    self.auth = Auth::Done;
                }
                None => return Err(LoginStatus::AUTHENTICATION_FAILED),
            }
        }
        if matches!(self.auth, Auth::Done | Auth::Start) {
            // CHAP keys after AuthMethod=None, or before any AuthMethod.
            return match keys_in.iter().any(|(k, _)| k.starts_with("CHAP_")) {
                true => Err(LoginStatus::INITIATOR_ERROR),
                false => Ok(()),
            };
        }
        if let Some(algorithms) = get("CHAP_A") {
            if !matches!(self.auth, Auth::AwaitAlgorithm) {
                return Err(LoginStatus::INITIATOR_ERROR);
            }
            if !algorithms.split(',').any(|a| a == chap::ALGORITHM_MD5) {
                keys::push(out, "CHAP_A", "Reject");
                return Err(LoginStatus::AUTHENTICATION_FAILED);
            }
            let challenge = Challenge::random();
            keys::push(out, "CHAP_A", chap::ALGORITHM_MD5);
            keys::push(out, "CHAP_I", &challenge.id.to_string());
            keys::push(out, "CHAP_C", &chap::encode_hex(&challenge.bytes));
            self.auth = Auth::AwaitResponse(challenge);
            return Ok(());
        }
        let Auth::AwaitResponse(challenge) = &self.auth else {
            // AuthMethod alone; anything else is out of sequence.
            return match keys_in.iter().all(|(k, _)| k == "AuthMethod") {
                true => Ok(()),
                false => Err(LoginStatus::INITIATOR_ERROR),
            };
        };
        let (Some(name), Some(resp)) = (get("CHAP_N"), get("CHAP_R")) else {
            return Err(LoginStatus::AUTHENTICATION_FAILED);
        };
        let resp = chap::decode_binary(resp).ok_or(LoginStatus::AUTHENTICATION_FAILED)?;
        let access = match access.chap {
            Some(_) => access,
            None => self
                .discovery_credentials(ctx, name)
                .ok_or(LoginStatus::AUTHENTICATION_FAILED)?,
        };
        let creds = access
            .chap
            .as_ref()
            .ok_or(LoginStatus::AUTHENTICATION_FAILED)?;
        let expected = chap::response(challenge.id, &creds.secret, &challenge.bytes);
        if name != creds.user || !chap::verify(&expected, &resp) {
            tracing::info!(user = %name, "CHAP authentication failed");
            return Err(LoginStatus::AUTHENTICATION_FAILED);
        }
        match (get("CHAP_I"), get("CHAP_C")) {
            (None, None) => {}
            (Some(id), Some(c)) => {
                let id: u8 = id.parse().map_err(|_| LoginStatus::AUTHENTICATION_FAILED)?;
                let c = chap::decode_binary(c).ok_or(LoginStatus::AUTHENTICATION_FAILED)?;
                // A reflected challenge would let an attacker use us as an
                // oracle for our own response (RFC 7143 §12.1.3).
                if c == challenge.bytes {
                    return Err(LoginStatus::AUTHENTICATION_FAILED);
                }
                let mutual: &Credentials = access
                    .mutual_chap
                    .as_ref()
                    .ok_or(LoginStatus::AUTHENTICATION_FAILED)?;
                keys::push(out, "CHAP_N", &mutual.user);
                keys::push(
                    out,
                    "CHAP_R",
                    &chap::encode_hex(&chap::response(id, &mutual.secret, &c)),
                );
            }
            _ => return Err(LoginStatus::AUTHENTICATION_FAILED),
        }
        self.auth = Auth::Done;
        Ok(())
    }
}

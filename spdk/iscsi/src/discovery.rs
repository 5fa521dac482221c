//! SendTargets (RFC 7143 §12.3, appendix C): which targets an initiator may
//! see, and where.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::login::keys;
use crate::target::{TargetNode, Targets};

/// The SendTargets answer, or `None` when the value is not acceptable here
/// (answered `SendTargets=Reject`).
///
/// In a discovery session `All` lists every target the initiator may log
/// in to and an iSCSI name lists that one. In a normal session only the
/// session's own target may be asked about (empty value or its name).
pub(crate) fn send_targets(
    value: &str,
    initiator: &str,
    targets: &Targets,
    session_target: Option<&Arc<TargetNode>>,
    portals: &[SocketAddr],
    tpgt: u16,
) -> Option<Vec<u8>> {
    let nodes: Vec<Arc<TargetNode>> = match (session_target, value) {
        (None, "All") => targets.list(),
        (None, "") => return None,
        (None, name) => targets.get(name).into_iter().collect(),
        (Some(own), "") => vec![own.clone()],
        (Some(own), name) if own.iqn.eq_ignore_ascii_case(name) => vec![own.clone()],
        (Some(_), _) => return None,
    };
    let mut out = Vec::new();
    // Targets the initiator may not use are not revealed either.
    for node in nodes.iter().filter(|n| n.access.allows(initiator)) {
        keys::push(&mut out, "TargetName", &node.iqn);
        for portal in portals {
            // SocketAddr prints IPv6 in brackets, as §13.8 wants.
            keys::push(&mut out, "TargetAddress", &format!("{portal},{tpgt}"));
        }
    }
    Some(out)
}

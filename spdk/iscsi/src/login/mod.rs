//! Login phase (RFC 7143 §6): text keys, CHAP, negotiation.

mod chap;
pub(crate) mod keys;
mod negotiate;
mod params;

pub(crate) use negotiate::{Established, Login, LoginContext, LoginStatus, LoginStep, SessionType};
pub(crate) use params::{
    KeyAnswer, Params, DEFAULT_MAX_RECV_DATA_SEGMENT, OUR_MAX_OUTSTANDING_R2T,
    OUR_MAX_RECV_DATA_SEGMENT,
};

#[cfg(test)]
pub(crate) use chap::{decode_binary, encode_hex, response as chap_response};

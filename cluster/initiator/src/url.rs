//! `iscsi://` URLs, parsed once at the edge.
//!
//! The grammar is libiscsi's (`iscsi_parse_full_url`, see iscsi.h):
//!
//! ```text
//! iscsi://[<user>[%<password>]@]<host>[:<port>]/<target-iqn>/<lun>
//! ```
//!
//! `<host>` may be a bracketed IPv6 literal. The port defaults to 3260
//! (RFC 7143 §13.5.2 registers it). Query parameters are not accepted: every
//! session option comes from [`ConnectOptions`](crate::ConnectOptions).

use std::fmt;

use crate::error::Error;

/// The IANA-registered iSCSI port (RFC 7143 §13.5.2).
pub const DEFAULT_PORT: u16 = 3260;

/// Longest string libiscsi keeps for a portal, target name or credential
/// (`MAX_STRING_SIZE` in iscsi.h); longer values would be truncated silently.
const MAX_FIELD: usize = 255;

/// One-way CHAP credentials carried in the URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Chap {
    pub user: String,
    pub secret: String,
}

impl fmt::Debug for Chap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chap")
            .field("user", &self.user)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A parsed target address: where to connect and which LU to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl {
    /// `host:port` (IPv6 hosts keep their brackets), as libiscsi wants it.
    pub portal: String,
    pub target: String,
    pub lun: u16,
    pub chap: Option<Chap>,
}

impl TargetUrl {
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |reason: &'static str| Error::InvalidUrl {
            url: redact(url),
            reason,
        };
        let rest = url
            .strip_prefix("iscsi://")
            .ok_or(bad("must start with iscsi://"))?;
        if rest.contains('?') || rest.contains('#') {
            return Err(bad(
                "query parameters are not supported; use ConnectOptions",
            ));
        }
        let (authority, path) = rest
            .split_once('/')
            .ok_or(bad("missing /<target-iqn>/<lun>"))?;

        // Credentials end at the last '@' so a secret may contain '@'.
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let chap = match userinfo {
            None => None,
            Some(u) => {
                let (user, secret) = u
                    .split_once('%')
                    .ok_or(bad("credentials must be user%secret"))?;
                if user.is_empty() || secret.is_empty() {
                    return Err(bad("empty CHAP user or secret"));
                }
                Some(Chap {
                    user: user.to_owned(),
                    secret: secret.to_owned(),
                })
            }
        };

        let (host, port) = split_host_port(hostport).ok_or(bad("malformed host[:port]"))?;
        if host.is_empty() {
            return Err(bad("empty host"));
        }

        let (target, lun) = path
            .rsplit_once('/')
            .ok_or(bad("missing /<lun> after the target name"))?;
        if target.is_empty() {
            return Err(bad("empty target name"));
        }
        if target.contains('/') {
            return Err(bad("target name must not contain '/'"));
        }
        // SAM-5 flat-space LUNs used by iSCSI targets here fit 14 bits; libiscsi
        // takes an int, and no Reservoir target exports more than 16384 LUs.
        let lun: u16 = lun
            .parse()
            .map_err(|_| bad("LUN must be a decimal number"))?;
        if lun >= 1 << 14 {
            return Err(bad("LUN must be below 16384"));
        }

        let portal = format!("{host}:{port}");
        let too_long = [portal.as_str(), target]
            .iter()
            .any(|s| s.len() > MAX_FIELD)
            || chap
                .as_ref()
                .is_some_and(|c| c.user.len() > MAX_FIELD || c.secret.len() > MAX_FIELD);
        if too_long {
            return Err(bad("a field is longer than libiscsi's 255-byte limit"));
        }
        let nul = portal.contains('\0')
            || target.contains('\0')
            || chap
                .as_ref()
                .is_some_and(|c| c.user.contains('\0') || c.secret.contains('\0'));
        if nul {
            return Err(bad("contains a NUL byte"));
        }

        Ok(TargetUrl {
            portal,
            target: target.to_owned(),
            lun,
            chap,
        })
    }
}

impl fmt::Display for TargetUrl {
    /// The URL without credentials, for logs and error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "iscsi://{}/{}/{}", self.portal, self.target, self.lun)
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(s: &str) -> Option<(&str, u16)> {
    if let Some(v6) = s.strip_prefix('[') {
        let (inner, after) = v6.split_once(']')?;
        if inner.is_empty() || inner.contains('[') {
            return None;
        }
        let host = &s[..inner.len() + 2];
        return match after {
            "" => Some((host, DEFAULT_PORT)),
            p => Some((host, parse_port(p.strip_prefix(':')?)?)),
        };
    }
    match s.split_once(':') {
        None => Some((s, DEFAULT_PORT)),
        Some((h, p)) => Some((h, parse_port(p)?)),
    }
}

fn parse_port(p: &str) -> Option<u16> {
    p.parse().ok().filter(|&p| p != 0)
}

/// The URL with any `user%secret@` part replaced, safe to put in an error.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}<credentials>{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> TargetUrl {
        TargetUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn plain_url() {
        let u = ok("iscsi://127.0.0.1:3261/iqn.2026-11.io.reservoir.peer:tgt/1");
        assert_eq!(u.portal, "127.0.0.1:3261");
        assert_eq!(u.target, "iqn.2026-11.io.reservoir.peer:tgt");
        assert_eq!(u.lun, 1);
        assert_eq!(u.chap, None);
        assert_eq!(
            u.to_string(),
            "iscsi://127.0.0.1:3261/iqn.2026-11.io.reservoir.peer:tgt/1"
        );
    }

    #[test]
    fn default_port_and_ipv6() {
        assert_eq!(ok("iscsi://host/iqn.x:y/0").portal, "host:3260");
        assert_eq!(ok("iscsi://[::1]/iqn.x:y/0").portal, "[::1]:3260");
        assert_eq!(
            ok("iscsi://[fe80::1]:3262/iqn.x:y/3").portal,
            "[fe80::1]:3262"
        );
    }

    #[test]
    fn chap_credentials_and_redaction() {
        let u = ok("iscsi://alice%s3cr@t@10.0.0.1/iqn.x:y/2");
        let chap = u.chap.clone().unwrap();
        assert_eq!(chap.user, "alice");
        assert_eq!(chap.secret, "s3cr@t");
        assert_eq!(u.portal, "10.0.0.1:3260");
        assert!(!format!("{u:?}").contains("s3cr@t"));
        assert!(!u.to_string().contains("alice"));

        let err = TargetUrl::parse("iscsi://alice%secret@h/iqn.x:y/banana").unwrap_err();
        assert!(!err.to_string().contains("secret@"), "{err}");
    }

    #[test]
    fn rejects_malformed() {
        for url in [
            "http://h/iqn.x:y/0",
            "iscsi://h",
            "iscsi://h/iqn.x:y",
            "iscsi://h/iqn.x:y/",
            "iscsi://h//0",
            "iscsi://h/a/b/0",
            "iscsi://h:0/iqn.x:y/0",
            "iscsi://h:99999/iqn.x:y/0",
            "iscsi://h:port/iqn.x:y/0",
            "iscsi:///iqn.x:y/0",
            "iscsi://[::1/iqn.x:y/0",
            "iscsi://[::1]x/iqn.x:y/0",
            "iscsi://user@h/iqn.x:y/0",
            "iscsi://%pw@h/iqn.x:y/0",
            "iscsi://h/iqn.x:y/-1",
            "iscsi://h/iqn.x:y/16384",
            "iscsi://h/iqn.x:y/0?header_digest=crc32c",
        ] {
            assert!(TargetUrl::parse(url).is_err(), "{url} should be rejected");
        }
        let long = format!("iscsi://h/{}/0", "a".repeat(256));
        assert!(TargetUrl::parse(&long).is_err());
    }
}

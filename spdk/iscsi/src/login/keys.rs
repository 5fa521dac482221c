//! Text key=value lists (RFC 7143 §6.1): `key=value` pairs, each ended by a
//! NUL byte, in Login and Text data segments.

/// Longest key name (§6.1: "up to 63 bytes").
const MAX_KEY: usize = 63;
/// Longest value we accept. Simple values are limited to 255 bytes but
/// binary (CHAP) and list values may be longer; 8192 bounds them all.
const MAX_VALUE: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("text pair without '='")]
    MissingEquals,
    #[error("key name is empty, longer than 63 bytes or has characters outside §6.1")]
    BadKey,
    #[error("value longer than {MAX_VALUE} bytes")]
    ValueTooLong,
    #[error("text is not UTF-8")]
    NotUtf8,
}

/// Parses a whole (reassembled) key=value list, keeping the sender's order.
pub fn parse(data: &[u8]) -> Result<Vec<(String, String)>, KeyError> {
    data.split(|&b| b == 0)
        // Empty items come from the final NUL and from padding.
        .filter(|item| !item.is_empty())
        .map(parse_pair)
        .collect()
}

fn parse_pair(item: &[u8]) -> Result<(String, String), KeyError> {
    let eq = item
        .iter()
        .position(|&b| b == b'=')
        .ok_or(KeyError::MissingEquals)?;
    let (key, value) = (&item[..eq], &item[eq + 1..]);
    let key_ok = !key.is_empty()
        && key.len() <= MAX_KEY
        && key
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b".-+@_:".contains(&b));
    if !key_ok {
        return Err(KeyError::BadKey);
    }
    if value.len() > MAX_VALUE {
        return Err(KeyError::ValueTooLong);
    }
    let key = std::str::from_utf8(key).map_err(|_| KeyError::NotUtf8)?;
    let value = std::str::from_utf8(value).map_err(|_| KeyError::NotUtf8)?;
    Ok((key.to_owned(), value.to_owned()))
}

/// Appends `key=value\0`.
pub fn push(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value.as_bytes());
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_pairs_in_order() {
        let pairs = parse(b"InitiatorName=iqn.x:y\0SessionType=Normal\0\0\0").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("InitiatorName".into(), "iqn.x:y".into()),
                ("SessionType".into(), "Normal".into())
            ]
        );
        assert_eq!(parse(b"a=\0").unwrap(), vec![("a".into(), String::new())]);
        assert_eq!(parse(b"novalue\0"), Err(KeyError::MissingEquals));
        assert_eq!(parse(b"=v\0"), Err(KeyError::BadKey));
        assert_eq!(parse(b"k\x01=v\0"), Err(KeyError::BadKey));
        assert_eq!(parse(b"k=\xff\0"), Err(KeyError::NotUtf8));
    }

    #[test]
    fn push_round_trips() {
        let mut out = Vec::new();
        push(&mut out, "TargetName", "iqn.2026-01.io.reservoir:a");
        push(&mut out, "X", "1=2");
        assert_eq!(
            parse(&out).unwrap(),
            vec![
                ("TargetName".into(), "iqn.2026-01.io.reservoir:a".into()),
                ("X".into(), "1=2".into())
            ]
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }
    }
}

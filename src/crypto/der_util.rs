//! Minimal DER writing helpers for the few CAdES structures the `cms` crate does not model
//! (ESSCertIDv2, SignaturePolicyId).

/// Encodes a DER length.
fn len(n: usize, out: &mut Vec<u8>) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// A tag-length-value.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    len(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

/// A SEQUENCE of already-encoded elements.
pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// An OBJECT IDENTIFIER (whole TLV) from its dotted form.
pub fn oid(dotted: &str) -> Result<Vec<u8>, super::CryptoError> {
    encode_oid(dotted)
        .map(|content| tlv(0x06, &content))
        .map_err(|e| super::malformed("object identifier", e))
}

/// The content octets of an OBJECT IDENTIFIER from its dotted form (X.690 8.19): at least two
/// arcs, the first 0, 1 or 2, the second at most 39 under 0 and 1 and unbounded under 2
/// (`2.999.7.1` is valid), each arc at most 2^64 - 1.
pub fn encode_oid(dotted: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("{dotted:?} is not a dotted object identifier such as 1.2.250.1.96");
    let arcs = dotted
        .split('.')
        .map(|a| {
            if a.is_empty()
                || !a.bytes().all(|b| b.is_ascii_digit())
                || (a.len() > 1 && a.starts_with('0'))
            {
                None
            } else {
                a.parse::<u64>().ok()
            }
        })
        .collect::<Option<Vec<u64>>>()
        .ok_or_else(bad)?;
    let (first, second, rest) = match arcs.as_slice() {
        [f, s, rest @ ..] => (*f, *s, rest),
        _ => return Err(bad()),
    };
    if first > 2 || (first < 2 && second > 39) {
        return Err(bad());
    }
    let head = u128::from(first) * 40 + u128::from(second);
    let mut out = Vec::new();
    let mut push = |mut v: u128| {
        let mut groups = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            groups.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        out.extend(groups.iter().rev());
    };
    push(head);
    for a in rest {
        push(u128::from(*a));
    }
    Ok(out)
}

/// The dotted form of an OBJECT IDENTIFIER's content octets; `None` for a malformed encoding
/// (empty, truncated, non-minimal, or an arc above 2^64 - 1).
pub fn decode_oid(content: &[u8]) -> Option<String> {
    let mut arcs: Vec<u128> = Vec::new();
    let mut v: u128 = 0;
    let mut started = false;
    for &b in content {
        if !started && b == 0x80 {
            return None; // non-minimal
        }
        started = true;
        v = (v << 7) | u128::from(b & 0x7f);
        if v > u128::from(u64::MAX) * 40 + 80 {
            return None;
        }
        if b & 0x80 == 0 {
            arcs.push(v);
            v = 0;
            started = false;
        }
    }
    if started || arcs.is_empty() {
        return None;
    }
    let head = arcs[0];
    let (first, second) = match head {
        0..=39 => (0, head),
        40..=79 => (1, head - 40),
        _ => (2, head - 80),
    };
    if second > u128::from(u64::MAX) || arcs[1..].iter().any(|a| *a > u128::from(u64::MAX)) {
        return None;
    }
    let mut out = format!("{first}.{second}");
    for a in &arcs[1..] {
        out.push('.');
        out.push_str(&a.to_string());
    }
    Some(out)
}

#[cfg(test)]
mod oid_tests {
    use super::*;

    #[test]
    fn oids_under_arc_2_round_trip() {
        // Known answers: X.690's example and arc-2 OIDs with a second arc of 48 and more.
        assert_eq!(encode_oid("2.999.3").unwrap(), vec![0x88, 0x37, 0x03]);
        assert_eq!(
            encode_oid("2.5.29.32.0").unwrap(),
            vec![0x55, 0x1d, 0x20, 0x00]
        );
        for dotted in [
            "2.999.7.1",
            "2.48.1",
            "2.100.3",
            "1.2.250.1.96",
            "0.39.1",
            "2.5.29.32",
        ] {
            let enc = encode_oid(dotted).unwrap();
            assert_eq!(decode_oid(&enc).as_deref(), Some(dotted), "{dotted}");
        }
        for bad in [
            "",
            "1",
            "3.1",
            "1.40",
            "0.40",
            "1..2",
            "1.2.x",
            "01.2",
            "1.2.",
            "anyPolicy",
        ] {
            assert!(encode_oid(bad).is_err(), "{bad}");
        }
        assert_eq!(decode_oid(&[]), None);
        assert_eq!(decode_oid(&[0x88]), None);
        assert_eq!(decode_oid(&[0x55, 0x80, 0x01]), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(tlv(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = tlv(0x04, &[0; 200]);
        assert_eq!(&long[..3], &[0x04, 0x81, 200]);
        let longer = tlv(0x04, &[0; 300]);
        assert_eq!(&longer[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(
            oid("2.16.840.1.101.3.4.2.1").unwrap(),
            vec![6, 9, 0x60, 0x86, 0x48, 1, 0x65, 3, 4, 2, 1]
        );
    }
}

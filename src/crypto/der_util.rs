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

/// An OBJECT IDENTIFIER from its dotted form.
pub fn oid(dotted: &str) -> Result<Vec<u8>, super::CryptoError> {
    use der::Encode;
    let o = der::asn1::ObjectIdentifier::new(dotted)
        .map_err(|e| super::malformed("object identifier", e))?;
    o.to_der()
        .map_err(|e| super::malformed("object identifier", e))
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

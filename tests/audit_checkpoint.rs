//! Audit checkpoints: Ed25519 audit key, the signed-note text form, forged / malformed /
//! wrong-origin / stale detection, and checkpoints used with proofs end to end.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use paraph::audit::merkle::{self, Hash, MemNodes};
use paraph::audit::{AuditError, AuditKey, AuditPublicKey, Checkpoint, SignedCheckpoint};

const ORIGIN: &str = "paraph.example.org/audit/t1";
const T0: i64 = 1_780_000_000;

fn checkpoint(size: u64, root: Hash, time: i64) -> Checkpoint {
    Checkpoint {
        origin: ORIGIN.to_string(),
        size,
        root,
        time,
    }
}

fn sample() -> Checkpoint {
    checkpoint(8, merkle::leaf_hash(b"some root"), T0)
}

#[test]
fn sign_encode_decode_verify_round_trip() {
    let key = AuditKey::generate().unwrap();
    let cp = sample();
    let signed = key.sign(&cp).unwrap();
    assert_eq!(signed.signature.len(), 64);
    assert_eq!(signed.key_id, key.public_key().key_id(ORIGIN));

    let text = signed.encode();
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.len(), 7, "{text}");
    assert_eq!(lines[0], ORIGIN);
    assert_eq!(lines[1], "8");
    assert_eq!(lines[2], BASE64.encode(cp.root));
    assert_eq!(lines[3], T0.to_string());
    assert_eq!(lines[4], "");
    assert!(lines[5].starts_with(&format!("\u{2014} {ORIGIN} ")));
    assert_eq!(lines[6], "");
    assert_eq!(cp.body(), lines[..4].join("\n") + "\n");

    let decoded = SignedCheckpoint::decode(text.as_bytes()).unwrap();
    assert_eq!(decoded, signed);
    assert_eq!(decoded.verify(key.public_key(), ORIGIN).unwrap(), &cp);
    assert_eq!(Checkpoint::parse_body(&cp.body()).unwrap(), cp);

    // The empty tree signs too.
    let empty = checkpoint(0, merkle::EMPTY_ROOT, 0);
    let signed = key.sign(&empty).unwrap();
    let decoded = SignedCheckpoint::decode(signed.encode().as_bytes()).unwrap();
    assert_eq!(decoded.verify(key.public_key(), ORIGIN).unwrap(), &empty);
}

#[test]
fn keys_round_trip_through_pem() {
    let key = AuditKey::generate().unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    assert!(pem.starts_with(b"-----BEGIN PRIVATE KEY-----"));
    let reloaded = AuditKey::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(reloaded.public_key(), key.public_key());

    let public_pem = key.public_key().to_pem().unwrap();
    assert!(public_pem.starts_with(b"-----BEGIN PUBLIC KEY-----"));
    let public = AuditPublicKey::from_pem(&public_pem).unwrap();
    assert_eq!(&public, key.public_key());
    assert_eq!(
        AuditPublicKey::from_raw(&public.raw()).unwrap(),
        public,
        "raw bytes round trip"
    );

    // A checkpoint signed by the reloaded key verifies with the exported public key.
    let signed = reloaded.sign(&sample()).unwrap();
    signed.verify(&public, ORIGIN).unwrap();
    // The private key does not leak through Debug.
    let debug = format!("{key:?}");
    assert!(debug.starts_with("AuditKey"), "{debug}");
    assert!(!debug.contains("PRIVATE"), "{debug}");
}

#[test]
fn other_key_types_are_refused() {
    let ec = openssl::ec::EcKey::generate(
        &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
    )
    .unwrap();
    let ec = openssl::pkey::PKey::from_ec_key(ec).unwrap();
    assert!(matches!(
        AuditKey::from_pkcs8_pem(&ec.private_key_to_pem_pkcs8().unwrap()),
        Err(AuditError::NotEd25519)
    ));
    assert!(matches!(
        AuditPublicKey::from_pem(&ec.public_key_to_pem().unwrap()),
        Err(AuditError::NotEd25519)
    ));
    assert!(matches!(
        AuditPublicKey::from_raw(&[0u8; 31]),
        Err(AuditError::NotEd25519)
    ));
    assert!(matches!(
        AuditKey::from_pkcs8_pem(b"not a key"),
        Err(AuditError::Key { .. })
    ));
}

#[test]
fn key_id_and_verifier_key_follow_signed_note() {
    // Key pair of golang/mod, sumdb/note/note_test.go (TestNewSigner, TestNewVerifier,
    // TestSign): the signer key is "PRIVATE+KEY+<name>+<key ID>+base64(0x01 || seed)".
    let skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    let typed_seed = BASE64.decode(skey.splitn(5, '+').nth(4).unwrap()).unwrap();
    assert_eq!(typed_seed[0], 0x01);
    // PKCS#8 wrapping of an Ed25519 seed (RFC 8410).
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend_from_slice(&typed_seed[1..]);
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        BASE64.encode(&der)
    );
    let key = AuditKey::from_pkcs8_pem(pem.as_bytes()).unwrap();
    assert_eq!(key.public_key().verifier_key("PeterNeumann"), vkey);
    assert_eq!(
        key.public_key().key_id("PeterNeumann"),
        [0xc7, 0x4f, 0x20, 0xa3]
    );
    // The reference signature line starts with the same key ID.
    let blob = BASE64
        .decode("x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=")
        .unwrap();
    assert_eq!(blob[..4], [0xc7, 0x4f, 0x20, 0xa3]);
    assert_eq!(blob.len(), 4 + 64);
}

#[test]
fn altered_checkpoints_are_forged() {
    let key = AuditKey::generate().unwrap();
    let signed = key.sign(&sample()).unwrap();
    let forged = |s: &SignedCheckpoint| {
        matches!(
            s.verify(key.public_key(), ORIGIN),
            Err(AuditError::ForgedCheckpoint)
        )
    };
    let mut s = signed.clone();
    s.checkpoint.size += 1;
    assert!(forged(&s), "size changed");
    let mut s = signed.clone();
    s.checkpoint.root[31] ^= 1;
    assert!(forged(&s), "root changed");
    let mut s = signed.clone();
    s.checkpoint.time -= 1;
    assert!(forged(&s), "time changed");
    for i in [0, 31, 63] {
        let mut s = signed.clone();
        s.signature[i] ^= 0x01;
        assert!(forged(&s), "signature byte {i} flipped");
    }
    let mut s = signed.clone();
    s.key_id[0] ^= 1;
    assert!(forged(&s), "key ID changed");

    // Through the text form: one digit of the size changed.
    let text = signed.encode().replacen("\n8\n", "\n9\n", 1);
    let decoded = SignedCheckpoint::decode(text.as_bytes()).unwrap();
    assert!(forged(&decoded));

    // Signed by another key, with or without its own key ID.
    let other = AuditKey::generate().unwrap();
    let by_other = other.sign(&sample()).unwrap();
    assert!(forged(&by_other));
    let mut by_other_same_id = by_other;
    by_other_same_id.key_id = signed.key_id;
    assert!(forged(&by_other_same_id));

    // The message names the forgery.
    let msg = signed
        .clone()
        .verify(other.public_key(), ORIGIN)
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("forged checkpoint"), "{msg}");
}

#[test]
fn every_single_byte_change_of_the_text_is_rejected() {
    let key = AuditKey::generate().unwrap();
    let text = key.sign(&sample()).unwrap().encode().into_bytes();
    // A changed origin breaks the key name on the signature line too (malformed) or names
    // another log (wrong origin); any other change is malformed or forged.
    let (mut forged, mut malformed) = (0, 0);
    for i in 0..text.len() {
        let mut t = text.clone();
        t[i] ^= 0x01;
        match SignedCheckpoint::decode(&t).and_then(|s| s.verify(key.public_key(), ORIGIN).cloned())
        {
            Ok(cp) => panic!("byte {i} changed and still accepted: {cp:?}"),
            Err(AuditError::ForgedCheckpoint) => forged += 1,
            Err(AuditError::MalformedCheckpoint(_)) => malformed += 1,
            Err(AuditError::WrongOrigin { .. }) => {}
            Err(e) => panic!("byte {i}: unexpected error {e}"),
        }
    }
    assert!(forged > 0 && malformed > 0);
}

#[test]
fn wrong_origin_is_named() {
    let key = AuditKey::generate().unwrap();
    let signed = key.sign(&sample()).unwrap();
    let err = signed
        .verify(key.public_key(), "paraph.example.org/audit/t2")
        .unwrap_err();
    match &err {
        AuditError::WrongOrigin { expected, found } => {
            assert_eq!(expected, "paraph.example.org/audit/t2");
            assert_eq!(found, ORIGIN);
        }
        e => panic!("unexpected {e}"),
    }
    // The signature of another tenant's log does not carry over either.
    let mut moved = signed;
    moved.checkpoint.origin = "paraph.example.org/audit/t2".into();
    assert!(matches!(
        moved.verify(key.public_key(), "paraph.example.org/audit/t2"),
        Err(AuditError::ForgedCheckpoint)
    ));
}

#[test]
fn malformed_texts_are_refused() {
    let key = AuditKey::generate().unwrap();
    let good = key.sign(&sample()).unwrap().encode();
    let (body, sig_line) = good.split_once("\n\n").unwrap();
    let body = format!("{body}\n");
    let root_b64 = BASE64.encode(sample().root);
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "empty"),
        (body.clone(), "no signature"),
        (format!("{body}\n"), "blank line, no signature"),
        (good.trim_end().to_string(), "no final newline"),
        (format!("{good}{sig_line}"), "two signature lines"),
        (good.replace('\n', "\r\n"), "CRLF"),
        (good.replacen("\n8\n", "\n08\n", 1), "leading zero"),
        (good.replacen("\n8\n", "\n+8\n", 1), "signed size"),
        (good.replacen("\n8\n", "\n\n", 1), "empty size"),
        (
            good.replacen("\n8\n", "\n99999999999999999999\n", 1),
            "size overflow",
        ),
        (good.replacen(&root_b64, "!!!!", 1), "root not base64"),
        (
            good.replacen(&root_b64, &BASE64.encode([0u8; 31]), 1),
            "short root",
        ),
        (
            good.replacen(&format!("\n{T0}\n"), &format!("\n-{T0}\n"), 1),
            "negative time",
        ),
        (
            good.replacen(&format!("\n{T0}\n"), &format!("\n{T0}\nextra\n"), 1),
            "extra body line",
        ),
        (
            good.replacen(&format!("\n{T0}\n"), "\n", 1),
            "missing time line",
        ),
        (good.replacen("\u{2014} ", "- ", 1), "no em dash"),
        (
            good.replacen(&format!("\u{2014} {ORIGIN} "), "\u{2014} other.example ", 1),
            "key name is not the origin",
        ),
        (
            format!("{body}\n\u{2014} {ORIGIN} {}\n", BASE64.encode([1u8; 40])),
            "short signature",
        ),
        (
            format!("{body}\n\u{2014} {ORIGIN} %%%%\n"),
            "signature not base64",
        ),
        (good.replacen(ORIGIN, "paraph\u{7}", 1), "control character"),
    ];
    for (text, what) in cases {
        let err = SignedCheckpoint::decode(text.as_bytes()).unwrap_err();
        assert!(
            matches!(err, AuditError::MalformedCheckpoint(_)),
            "{what}: {err}"
        );
    }
    assert!(matches!(
        SignedCheckpoint::decode(&[0xff, 0xfe]),
        Err(AuditError::MalformedCheckpoint(_))
    ));
    // Non-canonical base64 (non-zero padding bits) of the root.
    let mut root = BASE64.encode(sample().root).into_bytes();
    let last = root.len() - 2; // the character before the padding '='
    root[last] = if root[last] == b'B' { b'C' } else { b'B' };
    let text = good.replacen(&root_b64, std::str::from_utf8(&root).unwrap(), 1);
    if text != good {
        assert!(SignedCheckpoint::decode(text.as_bytes()).is_err());
    }
}

#[test]
fn invalid_checkpoints_are_not_signed() {
    let key = AuditKey::generate().unwrap();
    for origin in ["", "two words", "a+b", "tab\there", "line\nbreak"] {
        let mut cp = sample();
        cp.origin = origin.to_string();
        assert!(
            matches!(key.sign(&cp), Err(AuditError::MalformedCheckpoint(_))),
            "origin {origin:?}"
        );
    }
    let mut cp = sample();
    cp.time = -1;
    assert!(matches!(
        key.sign(&cp),
        Err(AuditError::MalformedCheckpoint(_))
    ));
}

#[test]
fn stale_forked_and_outdated_checkpoints() {
    let root = merkle::leaf_hash(b"r10");
    let known = checkpoint(10, root, T0);
    known.ensure_not_older(&known).unwrap();
    checkpoint(11, merkle::leaf_hash(b"r11"), T0)
        .ensure_not_older(&known)
        .unwrap();
    checkpoint(10, root, T0 + 60)
        .ensure_not_older(&known)
        .unwrap();

    let smaller = checkpoint(9, merkle::leaf_hash(b"r9"), T0 + 60).ensure_not_older(&known);
    assert!(matches!(
        smaller,
        Err(AuditError::StaleCheckpoint {
            size: 9,
            known_size: 10,
            ..
        })
    ));
    let earlier = checkpoint(10, root, T0 - 1).ensure_not_older(&known);
    assert!(matches!(earlier, Err(AuditError::StaleCheckpoint { .. })));
    let fork = checkpoint(10, merkle::leaf_hash(b"other"), T0 + 1).ensure_not_older(&known);
    assert!(matches!(fork, Err(AuditError::Fork { size: 10 })));
    let regression = checkpoint(12, merkle::leaf_hash(b"r12"), T0 - 1).ensure_not_older(&known);
    assert!(matches!(
        regression,
        Err(AuditError::CheckpointTimeRegression { .. })
    ));
    let mut elsewhere = checkpoint(12, root, T0);
    elsewhere.origin = "paraph.example.org/audit/t2".into();
    assert!(matches!(
        elsewhere.ensure_not_older(&known),
        Err(AuditError::WrongOrigin { .. })
    ));

    known.ensure_recent(T0 + 3600, 3600).unwrap();
    known.ensure_recent(T0 - 10, 0).unwrap();
    assert!(matches!(
        known.ensure_recent(T0 + 3601, 3600),
        Err(AuditError::OutdatedCheckpoint { .. })
    ));

    // Forged, stale, forked, regressed and outdated read differently.
    let key = AuditKey::generate().unwrap();
    let other = AuditKey::generate().unwrap();
    let forged = key
        .sign(&known)
        .unwrap()
        .verify(other.public_key(), ORIGIN)
        .unwrap_err();
    let messages = [
        forged.to_string(),
        smaller.unwrap_err().to_string(),
        fork.unwrap_err().to_string(),
        regression.unwrap_err().to_string(),
        known.ensure_recent(T0 + 7200, 60).unwrap_err().to_string(),
    ];
    assert!(
        messages[0].starts_with("forged checkpoint"),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].starts_with("stale checkpoint"),
        "{}",
        messages[1]
    );
    assert!(
        messages[4].starts_with("outdated checkpoint"),
        "{}",
        messages[4]
    );
    for (i, a) in messages.iter().enumerate() {
        for b in &messages[i + 1..] {
            assert_ne!(a.split(':').next(), b.split(':').next());
        }
    }
}

#[test]
fn checkpoints_with_proofs_end_to_end() {
    let key = AuditKey::generate().unwrap();
    let public = AuditPublicKey::from_pem(&key.public_key().to_pem().unwrap()).unwrap();
    let mut log = MemNodes::new();
    let events: Vec<Vec<u8>> = (0..20).map(|i| format!("event {i}").into_bytes()).collect();
    let first = log.append_all(&events[..12]).unwrap();
    let cp1 = key
        .sign(&checkpoint(first.size, first.root, T0))
        .unwrap()
        .encode();
    let second = log.append_all(&events[12..]).unwrap();
    let cp2 = key
        .sign(&checkpoint(second.size, second.root, T0 + 60))
        .unwrap()
        .encode();

    // A verifier holding only texts, proofs and the public key.
    let old = SignedCheckpoint::decode(cp1.as_bytes()).unwrap();
    let old = old.verify(&public, ORIGIN).unwrap();
    let new = SignedCheckpoint::decode(cp2.as_bytes()).unwrap();
    let new = new.verify(&public, ORIGIN).unwrap();
    new.ensure_not_older(old).unwrap();
    let proof = merkle::consistency_proof(&log, old.size, new.size).unwrap();
    old.verify_consistency(new, &proof).unwrap();
    for index in [0u64, 11, 12, 19] {
        let proof = merkle::inclusion_proof(&log, index, new.size).unwrap();
        new.verify_inclusion(&merkle::leaf_hash(&events[index as usize]), index, &proof)
            .unwrap();
    }
    let proof = merkle::inclusion_proof(&log, 3, old.size).unwrap();
    old.verify_inclusion(&merkle::leaf_hash(&events[3]), 3, &proof)
        .unwrap();
    assert!(matches!(
        old.verify_inclusion(&merkle::leaf_hash(b"never logged"), 3, &proof),
        Err(AuditError::InclusionRootMismatch { .. })
    ));
    // Replaying the old checkpoint to a verifier that saw the new one: stale.
    assert!(matches!(
        old.ensure_not_older(new),
        Err(AuditError::StaleCheckpoint { .. })
    ));
}

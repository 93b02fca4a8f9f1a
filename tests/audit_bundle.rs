//! Evidence bundles verified offline: a realistic bundle built by hand (a document run through
//! its circuit by the domain, its events chained and logged among other tenants' records in an
//! RFC 6962 tree, a signed checkpoint, real CAdES signatures from the test PKI), then every kind
//! of tampering, each refused with its own message. One test drives the `verify-bundle` command.
//! No server.

use paraph::audit::bundle::{
    self, BundleError, BundleEvent, BundleSignature, EvidenceBundle, VerifiedBundle, B64,
    BUNDLE_FORMAT,
};
use paraph::audit::merkle::{self, MemNodes};
use paraph::audit::{AuditEvent, AuditKey, Checkpoint, DocumentFacts};
use paraph::client::evidence::{signature_checker, SELF_ANCHORED_NOTE};
use paraph::crypto::{self, SignerPart};
use paraph::domain::{
    ActorRef, Circuit, CircuitName, CircuitSpec, ContentRef, DocState, Document, DocumentId,
    DocumentType, EventKind, Mode, NewDocument, RgsLevel, Role, StepDef, StepKind, TenantId,
    Timestamp, UserName,
};
use paraph::validation::{validate_chain, Der, TrustSettings};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const TENANT: &str = "ville";
const L1: &str = "1.3.6.1.4.1.99999.1.1.1";
const L2: &str = "1.3.6.1.4.1.99999.1.1.2";
const L3: &str = "1.3.6.1.4.1.99999.1.1.3";

fn file(name: &str) -> Vec<u8> {
    std::fs::read(Path::new("certs-test").join(name)).unwrap()
}

fn cert_der(name: &str) -> Vec<u8> {
    openssl::x509::X509::from_pem(&file(name))
        .unwrap()
        .to_der()
        .unwrap()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn user(s: &str) -> UserName {
    UserName::parse(s).unwrap()
}

fn crls() -> Vec<Vec<u8>> {
    crypto::certs::crls_from(&file("crls.pem"))
        .unwrap()
        .iter()
        .map(|c| c.to_der().unwrap())
        .collect()
}

/// The tenant's trust settings as the server held them when signing.
fn server_trust() -> TrustSettings {
    TrustSettings {
        anchors: vec![Der(cert_der("root-ca.cert.pem"))],
        intermediates: vec![Der(cert_der("signing-ca.cert.pem"))],
        crls: crls().into_iter().map(Der).collect(),
        policy_levels: [(L1, 1), (L2, 2), (L3, 3)]
            .iter()
            .map(|(o, l)| (o.to_string(), *l))
            .collect(),
        signature_policy: None,
        generation: 1,
        owner: String::new(),
    }
}

/// What the server stores for one signature: a detached CAdES CMS over `content` by `stem` at
/// `at`, assembled with the validated chain and the tenant's CRLs.
struct Made {
    cms: Vec<u8>,
    chain: Vec<Vec<u8>>,
    crls: Vec<Vec<u8>>,
    level: u8,
    subject: String,
}

fn make_signature(stem: &str, content: &[u8], at: i64, level: u8) -> Made {
    let trust = server_trust();
    let cert = cert_der(&format!("{stem}.cert.pem"));
    let key = openssl::pkey::PKey::private_key_from_pem(&file(&format!("{stem}.key.pem"))).unwrap();
    let digest: [u8; 32] = Sha256::digest(content).into();
    let attrs = crypto::build_signed_attributes(&digest, at, &cert, None).unwrap();
    let signature = crypto::sign_with_key(&key, &attrs).unwrap();
    let alg = crypto::verify_signature_value(&cert, &attrs, &signature).unwrap();
    let ok = validate_chain(&trust, &cert, &[], &[], at, Some(level)).unwrap();
    let crls: Vec<Vec<u8>> = trust.crls.iter().map(|d| d.0.clone()).collect();
    let part = SignerPart {
        cert_der: cert,
        signed_attrs_der: attrs,
        signature,
        alg,
    };
    let cms = crypto::assemble(std::slice::from_ref(&part), &ok.chain, &crls).unwrap();
    Made {
        cms,
        chain: ok.chain,
        crls,
        level: ok.level,
        subject: ok.subject,
    }
}

fn circuit() -> Circuit {
    let step = |kind, actors: &[&str], mode, level: Option<u32>| StepDef {
        kind,
        actors: actors.iter().map(|a| ActorRef::User(user(a))).collect(),
        mode,
        condition: None,
        level: level.map(|l| RgsLevel::new(l).unwrap()),
        deadline_secs: None,
        fallback: None,
        escalate: Default::default(),
        claimed_role: None,
        pdf: Default::default(),
    };
    let roles = |_: &UserName| Some(vec![Role::Officer]);
    Circuit::define(
        CircuitSpec {
            name: CircuitName::parse("arretes").unwrap(),
            fallback: None,
            steps: vec![
                step(StepKind::Visa, &["alice", "bob"], Mode::All, None),
                step(StepKind::Signature, &["carol"], Mode::Any, Some(3)),
                step(StepKind::Seal, &[], Mode::Any, Some(2)),
            ],
        },
        1,
        &roles,
        user("boss"),
        Timestamp(T0 - 3600),
    )
    .unwrap()
}

fn submit(id: u8, title: &str, content: &[u8], at: i64) -> Document {
    let new = NewDocument {
        id: DocumentId::from_random([id; 16]),
        tenant: TenantId::parse(TENANT).unwrap(),
        doc_type: DocumentType::Mandate,
        title: title.into(),
        metadata: [("amount".to_owned(), "50".to_owned())].into(),
        content: ContentRef {
            sha256: sha256_hex(content),
            size: content.len() as u64,
            file_name: Some("arrete.pdf".into()),
        },
        submitter: user("finance"),
    };
    Document::submit(new, &circuit(), &|_| Vec::new(), Timestamp(at))
        .unwrap()
        .document
}

/// The document run through its whole circuit: two visas, carol's signature (index 0), the
/// server seal (index 1). Returns the document, its signatures by index, and the record as
/// each transition left it (the one its events commit).
fn completed_document(id: u8, content: &[u8]) -> (Document, Vec<BundleSignature>, Vec<Document>) {
    let mut records = Vec::new();
    let doc = submit(id, "Arrêté de voirie n° 2026-001", content, T0);
    records.push(doc.clone());
    let doc = doc
        .approve(&user("alice"), None, Some("vu".into()), Timestamp(T0 + 60))
        .unwrap()
        .document;
    records.push(doc.clone());
    let doc = doc
        .approve(&user("bob"), None, None, Timestamp(T0 + 120))
        .unwrap()
        .document;
    records.push(doc.clone());
    let at = T0 + 180;
    let (who, level) = doc.signable_step(&user("carol"), None).unwrap();
    let level = level.map(|l| l.get()).unwrap();
    let carol = make_signature("officer-l3-p256", content, at, level);
    let doc = doc
        .sign(&who, "ECDSA_SHA256".into(), 0, Timestamp(at))
        .unwrap()
        .document;
    records.push(doc.clone());
    let seal_step = doc.awaits_seal().unwrap();
    let seal = make_signature("seal", content, at, 2);
    let doc = doc
        .seal("organisation seal".into(), 1, Timestamp(at))
        .unwrap()
        .document;
    records.push(doc.clone());
    assert_eq!(doc.state, DocState::Completed);
    let record = |index: u32, step: u32, signer: &str, seal: bool, m: Made| BundleSignature {
        index,
        step,
        signer: signer.into(),
        on_behalf_of: None,
        absence: None,
        route: None,
        seal,
        level: m.level,
        signing_time: at,
        subject: m.subject,
        cms: B64(m.cms),
        chain: m.chain.into_iter().map(B64).collect(),
        crls: m.crls.into_iter().map(B64).collect(),
        chain_refs: Vec::new(),
        crl_refs: Vec::new(),
    };
    let sigs = vec![
        record(0, who.step as u32, "carol", false, carol),
        record(1, seal_step as u32, "_seal", true, seal),
    ];
    (doc, sigs, records)
}

/// The digest of a bundle signature's description, as the server commits it.
fn description_of(s: &BundleSignature) -> String {
    paraph::audit::commit::SignatureDescription {
        index: s.index,
        step: s.step,
        signer: &s.signer,
        on_behalf_of: s.on_behalf_of.as_deref(),
        absence: s.absence.as_deref(),
        route: s.route.as_deref(),
        seal: s.seal,
        level: s.level,
        signing_time: s.signing_time,
        subject: &s.subject,
    }
    .sha256()
    .unwrap()
}

/// The tenant's log in memory.
#[derive(Default)]
struct Log {
    nodes: MemNodes,
    leaves: Vec<Vec<u8>>,
    /// Per document id: the hex leaf hash of its last event.
    last: BTreeMap<String, String>,
}

impl Log {
    fn append(&mut self, mut e: AuditEvent) -> u64 {
        e.index = self.leaves.len() as u64;
        let bytes = e.canonical().unwrap();
        assert_eq!(self.nodes.append(&bytes).unwrap(), e.index);
        self.leaves.push(bytes);
        e.index
    }

    /// Logs history entry `seq` of `doc` as the server does; `tweak` may change the event first
    /// (a server bug, or a log rewritten before the checkpoint was signed).
    /// previous-event link (a server bug or a rewritten log).
    fn append_document_event(
        &mut self,
        doc: &Document,
        records: &[Document],
        seq: usize,
        sigs: &[BundleSignature],
        tweak: &dyn Fn(&mut AuditEvent),
    ) -> u64 {
        let ev = &doc.history[seq];
        let prev = self.last.get(doc.id.as_str()).cloned().unwrap_or_default();
        let signature_sha256 = ev.signature.map(|i| sha256_hex(&sigs[i as usize].cms.0));
        let actor = match &ev.actor {
            Some(a) => a.to_string(),
            None => "_system".into(),
        };
        // The record the transition that logged this entry left.
        let record = records.iter().find(|r| r.history.len() > seq).unwrap();
        let mut e = AuditEvent {
            v: paraph::audit::event::EVENT_FORMAT,
            tenant: TENANT.into(),
            index: 0,
            at: ev.at.0,
            actor,
            on_behalf_of: ev.on_behalf_of.as_ref().map(|u| u.to_string()),
            subject: format!("document/{}", doc.id),
            kind: ev.kind.as_str().into(),
            detail: paraph::audit::commit::logged_detail(ev),
            document: Some(DocumentFacts {
                id: doc.id.to_string(),
                seq: ev.seq,
                step: ev.step,
                state: ev.kind.state_after().as_str().into(),
                content_sha256: doc.content.sha256.clone(),
                signature: ev.signature,
                signature_sha256,
                prev,
                description_sha256: (ev.kind == EventKind::Submitted)
                    .then(|| paraph::audit::commit::description_sha256(doc).unwrap()),
                record_sha256: Some(paraph::audit::commit::record_sha256(record).unwrap()),
                signature_description_sha256: ev
                    .signature
                    .map(|i| description_of(&sigs[i as usize])),
                revision: None,
                revision_sha256: None,
            }),
        };
        tweak(&mut e);
        let index = self.append(e);
        self.last.insert(
            doc.id.to_string(),
            hex::encode(merkle::leaf_hash(&self.leaves[index as usize])),
        );
        index
    }

    fn user_event(&mut self, name: &str, at: i64) -> u64 {
        self.append(AuditEvent {
            v: paraph::audit::event::EVENT_FORMAT,
            tenant: TENANT.into(),
            index: 0,
            at,
            actor: "admin".into(),
            on_behalf_of: None,
            subject: format!("user/{name}"),
            kind: "user_created".into(),
            detail: "officer".into(),
            document: None,
        })
    }

    fn checkpoint(&self, key: &AuditKey, size: u64, time: i64) -> String {
        key.sign(&Checkpoint {
            origin: format!("paraph/{TENANT}"),
            size,
            root: merkle::root(&self.nodes, size).unwrap(),
            time,
        })
        .unwrap()
        .encode()
    }

    fn bundle_event(&self, index: u64, size: u64) -> BundleEvent {
        BundleEvent {
            index,
            event: B64(self.leaves[index as usize].clone()),
            proof: merkle::inclusion_proof(&self.nodes, index, size)
                .unwrap()
                .iter()
                .map(hex::encode)
                .collect(),
        }
    }
}

struct Fixture {
    key: AuditKey,
    log: Log,
    bundle: EvidenceBundle,
    /// Log indexes of the bundle's events.
    indexes: Vec<u64>,
    /// Another document of the tenant, logged alongside: its log indexes and signatures.
    other_indexes: Vec<u64>,
    other_signatures: Vec<BundleSignature>,
    /// The bundle's document as each of its transitions left it.
    records: Vec<Document>,
}

const CONTENT: &[u8] = b"%PDF-1.7 Arrete municipal portant reglementation de la circulation, \
rue de la Mairie, du 5 au 9 janvier 2026.";
const OTHER_CONTENT: &[u8] = b"%PDF-1.7 Contrat de maintenance des feux tricolores.";

/// The fixture; `tweak(seq, event)` may change the document's events before they are logged.
fn build(tweak: &dyn Fn(usize, &mut AuditEvent)) -> Fixture {
    let key = AuditKey::generate().unwrap();
    let (doc, sigs, records) = completed_document(0x11, CONTENT);
    let (other, other_sigs, other_records) = completed_document(0x22, OTHER_CONTENT);
    let mut log = Log::default();
    log.user_event("carol", T0 - 600);
    let mut indexes = Vec::new();
    let mut other_indexes = Vec::new();
    // The two documents' events interleaved, with an unrelated record in the middle.
    for seq in 0..doc.history.len().max(other.history.len()) {
        if seq < other.history.len() {
            other_indexes.push(log.append_document_event(
                &other,
                &other_records,
                seq,
                &other_sigs,
                &|_| {},
            ));
        }
        if seq == 4 {
            log.user_event("dave", T0 + 90);
        }
        if seq < doc.history.len() {
            indexes.push(log.append_document_event(&doc, &records, seq, &sigs, &|e| tweak(seq, e)));
        }
    }
    log.user_event("erin", T0 + 300);
    let size = log.leaves.len() as u64;
    let decoded: Vec<AuditEvent> = indexes
        .iter()
        .map(|i| AuditEvent::parse(&log.leaves[*i as usize]).unwrap())
        .collect();
    let bundle = EvidenceBundle {
        format: BUNDLE_FORMAT.into(),
        tenant: TENANT.into(),
        origin: format!("paraph/{TENANT}"),
        summary: bundle::summary(&doc, &decoded),
        content: B64(CONTENT.to_vec()),
        signatures: sigs,
        events: indexes.iter().map(|i| log.bundle_event(*i, size)).collect(),
        checkpoint: log.checkpoint(&key, size, T0 + 400),
        document: doc,
        material: BTreeMap::new(),
        revisions: Vec::new(),
    };
    Fixture {
        key,
        log,
        bundle,
        indexes,
        other_indexes,
        other_signatures: other_sigs,
        records,
    }
}

/// The fixture with its signatures' descriptions changed before they are logged (a server that
/// recorded something else than the signature shows).
fn build_with_signatures(change: impl Fn(&mut Vec<BundleSignature>)) -> Fixture {
    let mut f = build(&|_, _| {});
    let mut sigs = f.bundle.signatures.clone();
    change(&mut sigs);
    // Log the same document again with the changed descriptions.
    let mut log = Log::default();
    let doc = f.bundle.document.clone();
    let indexes: Vec<u64> = (0..doc.history.len())
        .map(|seq| log.append_document_event(&doc, &f.records, seq, &sigs, &|_| {}))
        .collect();
    let size = log.leaves.len() as u64;
    f.bundle.signatures = sigs;
    f.bundle.events = indexes.iter().map(|i| log.bundle_event(*i, size)).collect();
    f.bundle.checkpoint = log.checkpoint(&f.key, size, T0 + 400);
    f.log = log;
    f.indexes = indexes;
    f
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build(&|_, _| {}))
}

/// The auditor's policy map: the test PKI's three policies.
fn policy_levels() -> BTreeMap<String, u8> {
    [(L1, 1), (L2, 2), (L3, 3)]
        .iter()
        .map(|(o, l)| (o.to_string(), *l))
        .collect()
}

fn root_anchor() -> Vec<Vec<u8>> {
    vec![cert_der("root-ca.cert.pem")]
}

fn verify_with(
    f: &Fixture,
    b: &EvidenceBundle,
    anchors: Vec<Vec<u8>>,
) -> Result<VerifiedBundle, BundleError> {
    bundle::verify(
        b,
        f.key.public_key(),
        &signature_checker(anchors, policy_levels()),
    )
}

/// Verifies a tampered copy of the fixture's bundle and returns the refusal.
fn refuse(tamper: impl FnOnce(&mut EvidenceBundle)) -> BundleError {
    let f = fixture();
    let mut b = f.bundle.clone();
    tamper(&mut b);
    match verify_with(f, &b, root_anchor()) {
        Ok(_) => panic!("a tampered bundle verified"),
        Err(e) => e,
    }
}

fn flip(bytes: &mut [u8], at: usize) {
    bytes[at] ^= 0x01;
}

fn assert_msg(e: &BundleError, expected: &str) {
    assert!(
        e.to_string().contains(expected),
        "expected {expected:?} in {:?}",
        e.to_string()
    );
}

// ---------------------------------------------------------------------------------------------
// The untampered bundle.

#[test]
fn the_untampered_bundle_verifies() {
    let f = fixture();
    let v = verify_with(f, &f.bundle, root_anchor()).unwrap();
    let doc = &f.bundle.document;
    assert_eq!(v.document_id, doc.id.as_str());
    assert_eq!(v.title, doc.title);
    assert_eq!(v.state, "completed");
    assert_eq!(v.tenant, TENANT);
    assert_eq!(v.content_sha256, sha256_hex(CONTENT));
    assert_eq!(v.events, doc.history.len());
    assert_eq!(v.checkpoint.size, f.log.leaves.len() as u64);
    assert_eq!(v.checkpoint.time, T0 + 400);
    assert_eq!(v.checkpoint.origin, "paraph/ville");
    assert_eq!(v.summary.len(), doc.history.len() + 1);
    assert_eq!(v.summary.join("\n") + "\n", f.bundle.summary);
    assert_eq!(v.signatures.len(), 2);
    assert!(!v.signatures[0].seal && v.signatures[1].seal);
    assert_eq!(v.signatures[0].signer, "carol");
    assert_eq!(v.signatures[0].level, 3);
    for s in &v.signatures {
        assert!(s.check.starts_with("TOTAL_PASSED by "), "{}", s.check);
        assert!(s.check.contains("given trust anchor"), "{}", s.check);
    }
    assert!(v.signatures[0].check.contains("TEST Officer Name"));
    // The events really are interleaved with other records of the tenant's log.
    assert!(f.indexes.windows(2).any(|w| w[1] > w[0] + 1));
    // The bundle survives its JSON form.
    let json = serde_json::to_vec(&f.bundle).unwrap();
    let back = EvidenceBundle::from_json(&json).unwrap();
    assert_eq!(back, f.bundle);
    assert_eq!(verify_with(f, &back, root_anchor()).unwrap(), v);
}

#[test]
fn without_a_trust_anchor_the_chains_are_checked_against_the_bundles_own_roots() {
    let f = fixture();
    let v = verify_with(f, &f.bundle, Vec::new()).unwrap();
    for s in &v.signatures {
        assert!(s.check.starts_with("TOTAL_PASSED"), "{}", s.check);
        assert!(
            s.check
                .contains("bundle's own root, not an independent trust anchor"),
            "{}",
            s.check
        );
    }
}

// ---------------------------------------------------------------------------------------------
// One byte flipped in each member.

#[test]
fn a_flipped_content_byte_is_refused() {
    let e = refuse(|b| flip(&mut b.content.0, 10));
    assert!(matches!(e, BundleError::ContentMismatch { .. }), "{e}");
    assert_msg(&e, "document content does not match its recorded SHA-256");
}

#[test]
fn a_flipped_cms_byte_is_refused() {
    let e = refuse(|b| {
        let n = b.signatures[0].cms.0.len();
        flip(&mut b.signatures[0].cms.0, n - 3);
    });
    assert!(
        matches!(e, BundleError::SignatureHashMismatch { index: 0 }),
        "{e}"
    );
    assert_msg(
        &e,
        "signature #0: its CMS hash is not the one recorded in the document's events \
         (swapped or altered)",
    );
}

#[test]
fn a_flipped_chain_certificate_byte_is_refused() {
    for j in 0..3 {
        let e = refuse(|b| {
            let n = b.signatures[1].chain[j].0.len();
            flip(&mut b.signatures[1].chain[j].0, n / 2);
        });
        assert!(
            matches!(e, BundleError::SignatureMaterialMismatch { index: 1, .. }),
            "{e}"
        );
        let what = if j == 0 {
            "signature #1: the signer certificate (chain certificate #0) is not the one embedded \
             in its CMS (altered)"
                .to_owned()
        } else {
            format!(
                "signature #1: chain certificate #{j} is not the one embedded in its CMS (altered)"
            )
        };
        assert_msg(&e, &what);
    }
}

#[test]
fn a_flipped_crl_byte_is_refused() {
    let e = refuse(|b| {
        let n = b.signatures[0].crls[1].0.len();
        flip(&mut b.signatures[0].crls[1].0, n - 10);
    });
    assert!(
        matches!(e, BundleError::SignatureMaterialMismatch { index: 0, .. }),
        "{e}"
    );
    assert_msg(
        &e,
        "signature #0: CRL #1 is not the one embedded in its CMS (altered)",
    );
}

#[test]
fn a_flipped_event_byte_is_refused() {
    // A letter of the detail changes case: still a canonical event, but not the logged one.
    let e = refuse(|b| {
        let bytes = &mut b.events[6].event.0;
        let at = bytes
            .windows(7)
            .position(|w| w == b"\"detail")
            .map(|p| p + 10)
            .unwrap();
        assert!(bytes[at].is_ascii_alphabetic());
        bytes[at] ^= 0x20;
    });
    let index = fixture().indexes[6];
    assert!(
        matches!(e, BundleError::NotInLog { position: 6, .. }),
        "{e}"
    );
    assert_msg(
        &e,
        &format!(
            "event #6 (log index {index}): inclusion proof does not lead to the checkpoint root"
        ),
    );
}

#[test]
fn a_non_canonical_event_is_refused() {
    let e = refuse(|b| {
        let text = String::from_utf8(b.events[2].event.0.clone()).unwrap();
        b.events[2].event.0 = text.replacen(",\"at\"", ", \"at\"", 1).into_bytes();
    });
    assert!(
        matches!(e, BundleError::MalformedEvent { position: 2, .. }),
        "{e}"
    );
    assert_msg(&e, "event #2 (log index");
    assert_msg(&e, "malformed event: not in canonical form");
}

#[test]
fn a_flipped_proof_hash_is_refused() {
    let e = refuse(|b| {
        let h = &mut b.events[3].proof[1];
        let c = if h.starts_with('0') { "1" } else { "0" };
        h.replace_range(0..1, c);
    });
    assert!(
        matches!(e, BundleError::NotInLog { position: 3, .. }),
        "{e}"
    );
    assert_msg(&e, "inclusion proof does not lead to the checkpoint root");
}

#[test]
fn a_truncated_or_uppercase_proof_is_refused() {
    let e = refuse(|b| {
        b.events[3].proof.pop();
    });
    assert!(
        matches!(e, BundleError::NotInLog { position: 3, .. }),
        "{e}"
    );
    assert_msg(
        &e,
        "inclusion proof does not lead to the checkpoint root (inclusion proof has",
    );
    let e = refuse(|b| b.events[3].proof[0] = b.events[3].proof[0].to_uppercase());
    assert!(
        matches!(e, BundleError::MalformedProof { position: 3, .. }),
        "{e}"
    );
    assert_msg(
        &e,
        "malformed inclusion proof: hash #0 is not lowercase hex",
    );
}

#[test]
fn a_flipped_checkpoint_byte_is_refused() {
    // A digit of the time: still well formed, but not what the log key signed.
    let e = refuse(|b| {
        let at = b.checkpoint.find("\n\n").unwrap() - 1;
        let mut bytes = std::mem::take(&mut b.checkpoint).into_bytes();
        flip(&mut bytes, at);
        b.checkpoint = String::from_utf8(bytes).unwrap();
    });
    assert_eq!(e, BundleError::ForgedCheckpoint);
    assert_msg(
        &e,
        "checkpoint signature does not verify with the log key (forged or altered)",
    );
    // The blank line gone: not a checkpoint at all.
    let e = refuse(|b| b.checkpoint = b.checkpoint.replace("\n\n", "\n"));
    assert!(matches!(e, BundleError::MalformedCheckpoint(_)), "{e}");
    assert_msg(&e, "malformed checkpoint");
}

#[test]
fn a_flipped_summary_byte_is_refused() {
    let e = refuse(|b| {
        let mut bytes = std::mem::take(&mut b.summary).into_bytes();
        let at = bytes.iter().rposition(|c| *c == b'b').unwrap(); // "… by …" of the last line
        flip(&mut bytes, at);
        b.summary = String::from_utf8(bytes).unwrap();
    });
    assert!(matches!(e, BundleError::SummaryMismatch { .. }), "{e}");
    assert_msg(&e, "summary does not match the events: line");
}

#[test]
fn an_altered_document_record_is_refused() {
    // The title: committed by the submitted event (and shown in the summary).
    let e = refuse(|b| b.document.title = b.document.title.replace("voirie", "voirje"));
    assert_eq!(e, BundleError::DescriptionMismatch);
    assert_msg(&e, "is not the one its submitted event committed");
    // The state.
    let e = refuse(|b| b.document.state = DocState::InProgress);
    assert!(matches!(e, BundleError::StateMismatch { .. }), "{e}");
    assert_msg(
        &e,
        "the document's state in_progress disagrees with its last event (completed)",
    );
    // The recorded digest of the content.
    let e = refuse(|b| b.document.content.sha256 = sha256_hex(b"something else"));
    assert!(matches!(e, BundleError::ContentMismatch { .. }), "{e}");
    assert_msg(&e, "document content does not match its recorded SHA-256");
    // A history entry.
    let e = refuse(|b| b.document.history[2].actor = Some(user("mallory")));
    assert!(
        matches!(e, BundleError::HistoryMismatch { position: 2, .. }),
        "{e}"
    );
    assert_msg(
        &e,
        "event #2 disagrees with the document history: the event's actor is alice, the \
         history's mallory",
    );
    let e = refuse(|b| b.document.history[3].at = Timestamp(T0 + 61));
    assert!(
        matches!(e, BundleError::HistoryMismatch { position: 3, .. }),
        "{e}"
    );
    assert_msg(
        &e,
        "event #3 disagrees with the document history: the event is dated",
    );
    // A history entry dropped: one event too many.
    let e = refuse(|b| {
        b.document.history.pop();
    });
    assert!(matches!(e, BundleError::CountMismatch { .. }), "{e}");
    // The tenant.
    let e = refuse(|b| b.document.tenant = TenantId::parse("autre").unwrap());
    assert!(matches!(e, BundleError::OriginMismatch(_)), "{e}");
    assert_msg(&e, "tenant/origin mismatch: the document belongs to tenant");
}

#[test]
fn an_altered_signature_description_is_refused() {
    let e = refuse(|b| b.signatures[0].signer = "mallory".into());
    assert!(
        matches!(e, BundleError::SignatureRecordMismatch { index: 0, .. }),
        "{e}"
    );
    assert_msg(
        &e,
        "signature #0 disagrees with its event #6: it says signer mallory, the event actor carol",
    );
    let e = refuse(|b| b.signatures[0].level = 2);
    assert_msg(
        &e,
        "its recorded level 2 is below the level 3 step 1 requires",
    );
    let e = refuse(|b| b.signatures[0].signing_time += 3600);
    assert!(
        matches!(e, BundleError::SignatureMaterialMismatch { index: 0, .. }),
        "{e}"
    );
    assert_msg(&e, "signature #0: the signing time");
}

/// Verifies a tampered copy of the fixture's bundle whose summary the tamperer recomputed (it
/// is deterministic, so a forger can), and returns the refusal.
fn refuse_resummarized(tamper: impl FnOnce(&mut EvidenceBundle)) -> BundleError {
    refuse(|b| {
        tamper(b);
        let events: Vec<AuditEvent> = b
            .events
            .iter()
            .map(|e| AuditEvent::parse(&e.event.0).unwrap())
            .collect();
        b.summary = bundle::summary(&b.document, &events);
    })
}

#[test]
fn the_documents_description_altered_with_a_recomputed_summary_is_refused() {
    // The mandate's amount, its title, submitter, type, file name and circuit.
    type Tamper = Box<dyn Fn(&mut EvidenceBundle)>;
    let tampers: Vec<Tamper> = vec![
        Box::new(|b| {
            b.document.metadata.insert("amount".into(), "50000".into());
        }),
        Box::new(|b| {
            b.document.metadata.insert("iban".into(), "FR76".into());
        }),
        Box::new(|b| b.document.title = "Arrêté de voirie n° 2026-999".into()),
        Box::new(|b| b.document.submitter = user("mallory")),
        Box::new(|b| b.document.doc_type = DocumentType::Contract),
        Box::new(|b| b.document.content.file_name = Some("autre.pdf".into())),
        Box::new(|b| b.document.circuit.1 = 2),
    ];
    for t in &tampers {
        let e = refuse_resummarized(|b| t(b));
        assert_eq!(e, BundleError::DescriptionMismatch);
        assert_msg(
            &e,
            "the document's description (type, title, submitter, circuit, metadata, file name \
             or size) is not the one its submitted event committed (altered)",
        );
    }
}

#[test]
fn an_altered_step_action_is_refused() {
    // Alice's visa (step 0, first action) attributed to someone else, dated otherwise, or
    // said to be on someone's behalf; its comment changed.
    let e = refuse_resummarized(|b| b.document.steps[0].actions[0].actor = user("mallory"));
    assert!(
        matches!(
            e,
            BundleError::ActionMismatch {
                step: 0,
                action: 0,
                ..
            }
        ),
        "{e}"
    );
    assert_msg(
        &e,
        "step 0, action #0: its actor is mallory, the event's (seq 2) alice",
    );
    let e = refuse_resummarized(|b| b.document.steps[0].actions[0].at = Timestamp(T0 + 61));
    assert_msg(&e, "step 0, action #0: it is dated");
    let e =
        refuse_resummarized(|b| b.document.steps[0].actions[0].on_behalf_of = Some(user("bob")));
    assert_msg(&e, "step 0, action #0: it is on behalf of bob");
    let e = refuse_resummarized(|b| {
        b.document.steps[0].actions.remove(1);
    });
    assert_msg(&e, "step 0, action #1: missing");
    // The comment: bound by the record the log committed.
    let e = refuse_resummarized(|b| b.document.steps[0].actions[0].reason = Some("lu".into()));
    assert!(matches!(e, BundleError::RecordMismatch { .. }), "{e}");
    assert_msg(
        &e,
        "the document record is not the one the log committed with event #",
    );
    // Carol's signature action.
    let e = refuse_resummarized(|b| b.document.steps[1].actions[0].actor = user("mallory"));
    assert_msg(&e, "step 1, action #0: its actor is mallory");
    // A step's actors, activation, deadline: bound by the record.
    let tampers: [fn(&mut EvidenceBundle); 3] = [
        |b| b.document.steps[1].actors[0] = user("mallory"),
        |b| b.document.steps[0].activated_at = Some(Timestamp(T0 + 1)),
        |b| b.document.steps[2].deadline_secs = Some(3600),
    ];
    for t in tampers {
        let e = refuse_resummarized(t);
        assert!(matches!(e, BundleError::RecordMismatch { .. }), "{e}");
    }
}

#[test]
fn an_altered_history_entry_or_date_is_refused() {
    // The detail of a history entry (alice's comment on her visa).
    let e = refuse_resummarized(|b| b.document.history[2].detail = "refusé".into());
    assert!(
        matches!(e, BundleError::HistoryMismatch { position: 2, .. }),
        "{e}"
    );
    assert_msg(
        &e,
        "event #2 disagrees with the document history: the event's detail is \"step 0: vu\", \
         the history's \"refusé\"",
    );
    // An actor removed from a history entry.
    let e = refuse_resummarized(|b| b.document.history[2].actor = None);
    assert_msg(
        &e,
        "event #2 disagrees with the document history: the event's actor is alice, the \
         history's _system",
    );
    // The record's dates.
    let e = refuse_resummarized(|b| b.document.created_at = Timestamp(T0 - 86_400));
    assert!(
        matches!(e, BundleError::RecordMismatch { position: 0, .. }),
        "{e}"
    );
    assert_msg(
        &e,
        "it was created at 2025-12-31T00:00:00Z, the submitted event is dated",
    );
    let e = refuse_resummarized(|b| b.document.updated_at = Timestamp(T0 + 9_999));
    assert_msg(&e, "it was last updated at");
}

#[test]
fn a_raised_signature_level_is_refused() {
    // The seal is level 2 (its step requires 2): claimed 3, it must not pass as level 3.
    assert_eq!(fixture().bundle.signatures[1].level, 2);
    let e = refuse(|b| b.signatures[1].level = 3);
    assert!(
        matches!(
            e,
            BundleError::SignatureDescriptionMismatch { index: 1, .. }
        ),
        "{e}"
    );
    assert_msg(
        &e,
        "signature #1: its description (signer, level, subject, delegation, signing time) is \
         not the one its event #",
    );
    // Even when the log committed the raised level (a server that lied, or a forged log), the
    // auditor's policy map recomputes it.
    let f = build_with_signatures(|sigs| sigs[1].level = 3);
    let e = verify_with(&f, &f.bundle, root_anchor()).unwrap_err();
    assert!(
        matches!(e, BundleError::SignatureInvalid { index: 1, .. }),
        "{e}"
    );
    assert_msg(
        &e,
        "signature #1: its recorded RGS level 3 is not the level 2 its certificate policy has \
         under the given --policy-level map",
    );
    // Without a policy map, the level is shown as a claim, not as checked.
    let v = bundle::verify(
        &f.bundle,
        f.key.public_key(),
        &signature_checker(root_anchor(), BTreeMap::new()),
    )
    .unwrap();
    assert!(!v.signatures[1].level_verified);
    assert!(
        v.signatures[1]
            .check
            .contains("RGS level 3 (claimed, not verified: no --policy-level given)"),
        "{}",
        v.signatures[1].check
    );
}

#[test]
fn an_altered_signature_delegation_or_subject_is_refused() {
    let e = refuse(|b| b.signatures[0].absence = Some("0123456789abcdef0123456789abcdef".into()));
    assert_msg(
        &e,
        "signature #0 disagrees with its event #6: it says absence \
         0123456789abcdef0123456789abcdef, the step action none",
    );
    let e = refuse(|b| b.signatures[0].route = Some("delegation".into()));
    assert_msg(&e, "it says route delegation, the step action none");
    let e = refuse(|b| b.signatures[0].subject = "CN=Mallory".into());
    assert!(
        matches!(
            e,
            BundleError::SignatureDescriptionMismatch { index: 0, .. }
        ),
        "{e}"
    );
    let e = refuse(|b| b.signatures[1].signer = "mallory".into());
    assert_msg(&e, "it says signer mallory, the step action _seal");
}

// ---------------------------------------------------------------------------------------------
// Events dropped, reordered, duplicated, foreign, unlinked.

#[test]
fn a_dropped_middle_event_is_refused() {
    let e = refuse(|b| {
        b.events.remove(3);
    });
    assert_eq!(
        e,
        BundleError::Dropped {
            position: 3,
            found: 4,
            expected: 3
        }
    );
    assert_msg(
        &e,
        "event #3: seq 4 found where 3 was expected: an event was dropped",
    );
}

#[test]
fn a_dropped_last_event_is_refused() {
    let e = refuse(|b| {
        b.events.pop();
    });
    let n = fixture().bundle.events.len();
    assert!(matches!(e, BundleError::CountMismatch { .. }), "{e}");
    assert_msg(
        &e,
        &format!(
            "the bundle has {} events but the document history has {n}: events were dropped",
            n - 1
        ),
    );
}

#[test]
fn reordered_events_are_refused() {
    let e = refuse(|b| b.events.swap(2, 3));
    assert!(matches!(e, BundleError::Reordered(_)), "{e}");
    assert_msg(
        &e,
        "events reordered: event #3 has seq 2 after event #2 with seq 3",
    );
}

#[test]
fn a_duplicated_event_is_refused() {
    let e = refuse(|b| {
        let dup = b.events[4].clone();
        b.events.insert(5, dup);
    });
    assert_eq!(
        e,
        BundleError::Duplicated {
            position: 5,
            seq: 4
        }
    );
    assert_msg(&e, "event #5: seq 4 appears a second time");
}

#[test]
fn another_documents_event_is_refused() {
    let f = fixture();
    let size = f.log.leaves.len() as u64;
    let e = refuse(|b| b.events[1] = f.log.bundle_event(f.other_indexes[1], size));
    assert!(
        matches!(e, BundleError::ForeignEvent { position: 1, .. }),
        "{e}"
    );
    assert_msg(&e, "event #1 (log index");
    assert_msg(&e, "is not an event of this document: it is about document");
    // A record that is not a document event at all (the first leaf: a user created).
    let e = refuse(|b| b.events[0] = f.log.bundle_event(0, size));
    assert_msg(
        &e,
        "it is a user_created event about \"user/carol\", not a document event",
    );
}

#[test]
fn an_event_at_another_index_is_refused() {
    let e = refuse(|b| b.events[2].index = b.events[3].index);
    assert!(
        matches!(e, BundleError::IndexMismatch { position: 2, .. }),
        "{e}"
    );
    assert_msg(&e, "event #2: the event says log index");
}

#[test]
fn a_broken_previous_event_link_is_refused() {
    // The log itself holds an event whose link is wrong: every proof holds, the chain does not.
    let f = build(&|seq, e| {
        if seq == 5 {
            if let Some(d) = &mut e.document {
                d.prev = "00".repeat(32);
            }
        }
    });
    let e = verify_with(&f, &f.bundle, root_anchor()).unwrap_err();
    assert!(
        matches!(e, BundleError::BrokenLink { position: 5, .. }),
        "{e}"
    );
    assert_msg(&e, "event #5: previous-event link broken");
}

#[test]
fn events_that_misstate_the_documents_state_or_signature_are_refused() {
    let facts = |seq: usize, tweak: fn(&mut DocumentFacts)| {
        move |s: usize, e: &mut AuditEvent| {
            if s == seq {
                if let Some(d) = &mut e.document {
                    tweak(d);
                }
            }
        }
    };
    let f = build(&facts(3, |d| d.state = "completed".into()));
    let e = verify_with(&f, &f.bundle, root_anchor()).unwrap_err();
    assert!(
        matches!(e, BundleError::EventStateInconsistent { position: 3, .. }),
        "{e}"
    );
    assert_msg(
        &e,
        "event #3 (approved) records state completed, but that kind of event leaves the \
         document in_progress",
    );
    let f = build(&facts(6, |d| d.signature_sha256 = None));
    let e = verify_with(&f, &f.bundle, root_anchor()).unwrap_err();
    assert_eq!(
        e,
        BundleError::EventWithoutSignature {
            position: 6,
            kind: "signed".into()
        }
    );
}

#[test]
fn replaced_content_with_a_matching_record_is_refused() {
    // The content and the record's digest replaced together: the logged events still name the
    // original content.
    let other = b"%PDF-1.7 Arrete modifie".to_vec();
    let e = refuse(|b| {
        b.document.content.sha256 = sha256_hex(&other);
        b.document.content.size = other.len() as u64;
        b.content = B64(other.clone());
    });
    assert!(
        matches!(e, BundleError::EventContentMismatch { position: 0, .. }),
        "{e}"
    );
    assert_msg(&e, "event #0: its content SHA-256");
    assert_msg(&e, "(content replaced)");
}

// ---------------------------------------------------------------------------------------------
// Signatures swapped, removed, added, not trusted.

#[test]
fn another_documents_signature_swapped_in_is_refused() {
    let f = fixture();
    // A valid CMS by the same signer at the same time, over another content.
    let theirs = f.other_signatures[0].clone();
    assert_eq!(theirs.signer, "carol");
    let e = refuse(|b| {
        b.signatures[0].cms = theirs.cms.clone();
        b.signatures[0].chain = theirs.chain.clone();
    });
    assert_eq!(e, BundleError::SignatureHashMismatch { index: 0 });
    assert_msg(
        &e,
        "its CMS hash is not the one recorded in the document's events (swapped or altered)",
    );
}

#[test]
fn a_removed_or_added_signature_is_refused() {
    let e = refuse(|b| {
        b.signatures.remove(1);
    });
    assert!(
        matches!(e, BundleError::MissingSignature { index: 1, .. }),
        "{e}"
    );
    assert_msg(&e, "records signature #1, which is missing from the bundle");
    let e = refuse(|b| {
        let mut extra = b.signatures[0].clone();
        extra.index = 7;
        b.signatures.push(extra);
    });
    assert_eq!(e, BundleError::UnrecordedSignature { index: 7 });
    assert_msg(
        &e,
        "signature #7: no signed or sealed event of the document records it",
    );
    let e = refuse(|b| {
        let again = b.signatures[0].clone();
        b.signatures.push(again);
    });
    assert_eq!(e, BundleError::DuplicateSignature { index: 0 });
}

#[test]
fn a_signature_under_another_trust_anchor_is_refused() {
    let f = fixture();
    let e = verify_with(f, &f.bundle, vec![cert_der("rogue-ca.cert.pem")]).unwrap_err();
    assert!(
        matches!(e, BundleError::SignatureInvalid { index: 0, .. }),
        "{e}"
    );
    assert_msg(&e, "signature #0: INDETERMINATE");
}

// ---------------------------------------------------------------------------------------------
// Checkpoints forged or stale, format and origin.

#[test]
fn a_forged_checkpoint_is_refused() {
    let f = fixture();
    let other = AuditKey::generate().unwrap();
    let size = f.log.leaves.len() as u64;
    let forged = f.log.checkpoint(&other, size, T0 + 400);
    let e = refuse(|b| b.checkpoint = forged);
    assert_eq!(e, BundleError::ForgedCheckpoint);
    assert_msg(
        &e,
        "checkpoint signature does not verify with the log key (forged or altered)",
    );
}

#[test]
fn a_stale_checkpoint_is_refused() {
    let f = fixture();
    // A genuine older checkpoint: signed by the log key, but before the last events.
    let last = *f.indexes.last().unwrap();
    let old = f.log.checkpoint(&f.key, last, T0 + 150);
    let e = refuse(|b| b.checkpoint = old);
    let n = f.indexes.len() - 1;
    assert_eq!(
        e,
        BundleError::StaleCheckpoint {
            size: last,
            position: n,
            index: last
        }
    );
    assert_msg(
        &e,
        &format!("stale checkpoint: size {last} does not cover event index {last} (event #{n})"),
    );
}

#[test]
fn format_and_origin_are_checked() {
    let e = refuse(|b| b.format = "paraph-evidence/4".into());
    assert!(matches!(e, BundleError::Format { .. }), "{e}");
    assert_msg(
        &e,
        "format \"paraph-evidence/4\" is not \"paraph-evidence/3\"",
    );
    // Version 1 (each signature holding its material) is still read.
    let f = fixture();
    let mut v1 = f.bundle.clone();
    v1.format = "paraph-evidence/1".into();
    verify_with(f, &v1, root_anchor()).expect("a version 1 bundle verifies");
    // Version 2 (before revisions) is still read.
    let f = fixture();
    let mut v2 = f.bundle.clone();
    v2.format = "paraph-evidence/2".into();
    verify_with(f, &v2, root_anchor()).expect("a version 2 bundle verifies");
    let e = refuse(|b| b.origin = "paraph/autre".into());
    assert!(matches!(e, BundleError::OriginMismatch(_)), "{e}");
    assert_msg(&e, "tenant/origin mismatch");
    let e = EvidenceBundle::from_json(b"{\"format\":\"x\"}").unwrap_err();
    assert!(matches!(e, BundleError::Unreadable(_)), "{e}");
    assert_msg(&e, "not an evidence bundle");
}

#[test]
fn every_kind_of_failure_reads_differently() {
    // One variant per kind of tampering, and the messages differ from their first words.
    let f = fixture();
    let size = f.log.leaves.len() as u64;
    let other_key = AuditKey::generate().unwrap();
    type Tamper = Box<dyn Fn(&mut EvidenceBundle)>;
    let tampers: Vec<Tamper> = vec![
        Box::new(|b| flip(&mut b.content.0, 0)),
        Box::new(|b| flip(&mut b.signatures[0].cms.0, 100)),
        Box::new(|b| flip(&mut b.signatures[0].chain[1].0, 100)),
        Box::new(|b| b.events[3].proof[0] = "00".repeat(32)),
        Box::new(|b| b.summary.push('x')),
        Box::new(|b| b.document.state = DocState::Rejected),
        Box::new(|b| {
            b.events.remove(2);
        }),
        Box::new(|b| {
            b.events.pop();
        }),
        Box::new(|b| b.events.swap(1, 2)),
        Box::new(move |b| b.checkpoint = f.log.checkpoint(&other_key, size, T0)),
        Box::new(|b| b.checkpoint = f.log.checkpoint(&f.key, 3, T0)),
        Box::new(|b| b.format = String::new()),
        Box::new(|b| b.document.history[1].step = Some(2)),
    ];
    let mut seen = std::collections::BTreeSet::new();
    let mut heads = std::collections::BTreeSet::new();
    for t in &tampers {
        let e = refuse(|b| t(b));
        let kind = format!("{:?}", std::mem::discriminant(&e));
        assert!(seen.insert(kind), "two tamperings gave the same kind: {e}");
        let head: String = e.to_string().chars().take(20).collect();
        assert!(heads.insert(head), "two tamperings read alike: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// The command line.

#[test]
fn the_verify_bundle_command_prints_the_verdict_and_exits_accordingly() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("log.pub.pem");
    std::fs::write(&key, f.key.public_key().to_pem().unwrap()).unwrap();
    let good = dir.path().join("bundle.json");
    std::fs::write(&good, serde_json::to_vec_pretty(&f.bundle).unwrap()).unwrap();
    let run = |bundle: &Path, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_paraph"))
            .arg("verify-bundle")
            .arg(bundle)
            .arg("--log-key")
            .arg(&key)
            .args(extra)
            .env_remove("PARAPH_TOKEN")
            .env_remove("PARAPH_ADDR")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Valid, self-anchored: says so.
    let (code, out, err) = run(&good, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("bundle verified\n"), "{out}");
    assert!(out.contains(f.bundle.document.id.as_str()), "{out}");
    assert!(out.contains(SELF_ANCHORED_NOTE), "{out}");
    assert!(out.contains("approved step 0  by alice"), "{out}");
    assert!(out.contains("#0 step 1 carol: TOTAL_PASSED"), "{out}");

    // Without a policy map, the levels are claims.
    assert!(
        out.contains("RGS level 3 (claimed, not verified: no --policy-level given)"),
        "{out}"
    );
    assert!(!out.contains("UNVERIFIED"), "{out}");

    // Valid against the test root: no note.
    let (code, out, err) = run(&good, &["--trust", "certs-test/root-ca.cert.pem"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains(SELF_ANCHORED_NOTE), "{out}");

    // With the policy map, the levels are recomputed.
    let policies = [
        "--policy-level",
        &format!("{L1}=1"),
        "--policy-level",
        &format!("{L2}=2"),
        "--policy-level",
        &format!("{L3}=3"),
    ]
    .map(str::to_owned);
    let with_policies: Vec<&str> = policies.iter().map(String::as_str).collect();
    let (code, out, err) = run(&good, &with_policies);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("RGS level 3, validated at"), "{out}");
    assert!(!out.contains("claimed"), "{out}");
    // A map that puts carol's policy at level 2: her recorded level 3 is refused.
    let (code, _, err) = run(&good, &["--policy-level", &format!("{L3}=2")]);
    assert_eq!(code, Some(6));
    assert!(
        err.contains("its recorded RGS level 3 is not the level 2"),
        "{err}"
    );
    let (code, _, err) = run(&good, &["--policy-level", "not-an-oid=2"]);
    assert_eq!(code, Some(2), "{err}");

    // JSON.
    let (code, out, _) = run(&good, &["--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verified"], true);
    assert!(v["error"].is_null());
    assert_eq!(v["document"]["id"], f.bundle.document.id.as_str());
    assert_eq!(v["checkpoint"]["size"], f.log.leaves.len() as u64);
    assert_eq!(v["checkpoint"]["time"], T0 + 400);
    assert_eq!(v["events"], f.bundle.events.len());
    assert_eq!(v["signatures"].as_array().unwrap().len(), 2);
    assert_eq!(v["trust"], "bundle_roots");
    assert_eq!(v["signatures"][0]["level"], 3);
    assert_eq!(v["signatures"][0]["level_verified"], false);
    assert_eq!(v["unverified"], serde_json::json!([]));
    assert_eq!(
        v["summary"].as_array().unwrap().len(),
        f.bundle.events.len() + 1
    );

    // Tampered: refused on stderr, exit 6, JSON says why.
    let mut bad = f.bundle.clone();
    flip(&mut bad.content.0, 5);
    let bad_path = dir.path().join("tampered.json");
    std::fs::write(&bad_path, serde_json::to_vec(&bad).unwrap()).unwrap();
    let (code, out, err) = run(&bad_path, &[]);
    assert_eq!(code, Some(6), "{out}{err}");
    assert!(!out.contains("bundle verified"));
    assert!(
        err.contains("bundle refused: document content does not match its recorded SHA-256"),
        "{err}"
    );
    let (code, out, _) = run(&bad_path, &["--json"]);
    assert_eq!(code, Some(6));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verified"], false);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with("document content does not match"));

    // Another trust anchor: the signature is refused.
    let (code, _, err) = run(&good, &["--trust", "certs-test/rogue-ca.cert.pem"]);
    assert_eq!(code, Some(6));
    assert!(
        err.contains("bundle refused: signature #0: INDETERMINATE"),
        "{err}"
    );

    // Not a bundle: refused; a missing key file: bad input.
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, b"not json").unwrap();
    let (code, _, err) = run(&junk, &[]);
    assert_eq!(code, Some(6));
    assert!(
        err.contains("bundle refused: not an evidence bundle"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_paraph"))
        .args(["verify-bundle"])
        .arg(&good)
        .args(["--log-key", "/nonexistent/key.pem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

// ---------------------------------------------------------------------------------------------
// Every leaf of the bundle's JSON is bound.

/// Where a leaf sits in the bundle's JSON.
#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Every leaf (string, number, bool, null) of `v`, with its path.
fn leaves(
    v: &serde_json::Value,
    path: &mut Vec<Seg>,
    out: &mut Vec<(Vec<Seg>, serde_json::Value)>,
) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                path.push(Seg::Key(k.clone()));
                leaves(x, path, out);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(Seg::Index(i));
                leaves(x, path, out);
                path.pop();
            }
        }
        leaf => out.push((path.clone(), leaf.clone())),
    }
}

fn leaf_mut<'a>(v: &'a mut serde_json::Value, path: &[Seg]) -> &'a mut serde_json::Value {
    path.iter().fold(v, |v, s| match s {
        Seg::Key(k) => &mut v[k.as_str()],
        Seg::Index(i) => &mut v[*i],
    })
}

/// `document.steps[].actions[].actor`: the path with its indexes left out.
fn shape(path: &[Seg]) -> String {
    path.iter()
        .map(|s| match s {
            Seg::Key(k) => format!(".{k}"),
            Seg::Index(_) => "[]".to_owned(),
        })
        .collect()
}

/// Other values for a leaf: the value changed (a number plus one, a string with one more
/// character or its first one changed, a bool flipped, a null replaced by a string and by a
/// number), and every other value found at a leaf of the same shape elsewhere in the bundle
/// (another status, another user, another step, another certificate…), which keeps the JSON
/// well-typed, so that the verifier's own checks, not the parser, must refuse it.
fn mutations(
    value: &serde_json::Value,
    same_shape: &BTreeMap<String, Vec<serde_json::Value>>,
    shape: &str,
) -> Vec<serde_json::Value> {
    use serde_json::Value;
    let mut out: Vec<Value> = match value {
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => vec![(u + 1).into(), u.saturating_sub(1).into()],
            (None, Some(i)) => vec![(i + 1).into(), (i - 1).into()],
            _ => vec![0.into()],
        },
        Value::String(s) => {
            let mut changed: Vec<char> = s.chars().collect();
            match changed.first_mut() {
                Some(c) => *c = if *c == 'B' { 'C' } else { 'B' },
                None => changed.push('x'),
            }
            vec![
                Value::String(format!("{s}x")),
                Value::String(changed.into_iter().collect()),
            ]
        }
        Value::Bool(b) => vec![Value::Bool(!b)],
        Value::Null => vec!["x".into(), 0.into()],
        _ => Vec::new(),
    };
    if let Some(others) = same_shape.get(shape) {
        out.extend(others.iter().cloned());
    }
    out.retain(|m| m != value);
    out.dedup();
    out
}

/// Leaves of a bundle that may change without `verify-bundle` failing, and why. None: every
/// field a bundle shows is committed by the log, recomputed, or checked against what is.
const INFORMATIVE_LEAVES: &[&str] = &[];

#[test]
fn changing_any_one_leaf_of_a_genuine_bundle_makes_it_fail() {
    let f = fixture();
    // As version 1 wrote it, and with the material once by hash as version 2 writes it.
    for bundle in [f.bundle.clone(), by_hash(&f.bundle)] {
        every_leaf_is_bound(f, &bundle);
    }
}

fn every_leaf_is_bound(f: &Fixture, bundle: &EvidenceBundle) {
    let genuine = serde_json::to_value(bundle).unwrap();
    let mut all = Vec::new();
    leaves(&genuine, &mut Vec::new(), &mut all);
    let mut same_shape: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for (p, v) in &all {
        let values = same_shape.entry(shape(p)).or_default();
        if !values.contains(v) {
            values.push(v.clone());
        }
    }
    let verify = |v: &serde_json::Value| {
        paraph::client::evidence::verify_bytes(
            &serde_json::to_vec(v).unwrap(),
            f.key.public_key(),
            root_anchor(),
            policy_levels(),
        )
    };
    assert!(verify(&genuine).is_ok());
    let mut tried = 0;
    let mut accepted = Vec::new();
    for (path, value) in &all {
        let sh = shape(path);
        if INFORMATIVE_LEAVES.contains(&sh.as_str()) {
            continue;
        }
        for m in mutations(value, &same_shape, &sh) {
            let mut b = genuine.clone();
            *leaf_mut(&mut b, path) = m.clone();
            tried += 1;
            if verify(&b).is_ok() {
                accepted.push(format!("{path:?}: {value} -> {m}"));
            }
        }
    }
    assert!(all.len() > 200, "only {} leaves", all.len());
    assert!(
        accepted.is_empty(),
        "{} of {tried} one-leaf changes verified:\n{}",
        accepted.len(),
        accepted.join("\n")
    );
}

/// Any value, of any JSON type, for a leaf.
fn any_leaf() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    prop_oneof![
        any::<i64>().prop_map(serde_json::Value::from),
        (0u64..100_000).prop_map(serde_json::Value::from),
        "[a-zA-Z0-9_+/=: -]{0,16}".prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// One leaf of the genuine bundle, chosen at random, replaced by a random value: refused.
    #[test]
    fn a_random_value_in_any_one_leaf_makes_the_bundle_fail(
        pick in proptest::prelude::any::<proptest::sample::Index>(),
        value in any_leaf(),
    ) {
        let f = fixture();
        let genuine = serde_json::to_value(&f.bundle).unwrap();
        let mut all = Vec::new();
        leaves(&genuine, &mut Vec::new(), &mut all);
        let (path, old) = &all[pick.index(all.len())];
        proptest::prop_assume!(*old != value);
        proptest::prop_assume!(!INFORMATIVE_LEAVES.contains(&shape(path).as_str()));
        let mut b = genuine.clone();
        *leaf_mut(&mut b, path) = value.clone();
        let verdict = paraph::client::evidence::verify_bytes(
            &serde_json::to_vec(&b).unwrap(),
            f.key.public_key(),
            root_anchor(),
            policy_levels(),
        );
        proptest::prop_assert!(verdict.is_err(), "{path:?}: {old} -> {value} verified");
    }
}

// ---------------------------------------------------------------------------------------------
// Logs written before events committed descriptions and records.

#[test]
fn a_bundle_whose_log_predates_the_commitments_verifies_and_lists_what_is_unbound() {
    let f = build(&|_, e| {
        if let Some(d) = &mut e.document {
            d.description_sha256 = None;
            d.record_sha256 = None;
            d.signature_description_sha256 = None;
        }
    });
    let v = verify_with(&f, &f.bundle, root_anchor()).unwrap();
    assert_eq!(v.unverified.len(), 4, "{:?}", v.unverified);
    assert!(v.unverified[0].starts_with("the document's description"));
    assert!(v.unverified[1].starts_with("signature #0: its description"));
    assert!(v.unverified[3].starts_with("the document's steps"));
    // What the events say is still checked against the record: actions, history, dates.
    let mut b = f.bundle.clone();
    b.document.steps[0].actions[0].actor = user("mallory");
    let e = verify_with(&f, &b, root_anchor()).unwrap_err();
    assert!(matches!(e, BundleError::ActionMismatch { .. }), "{e}");
    // And the levels against the auditor's policy map.
    let mut b = f.bundle.clone();
    b.signatures[1].level = 3;
    let e = verify_with(&f, &b, root_anchor()).unwrap_err();
    assert!(
        matches!(e, BundleError::SignatureInvalid { index: 1, .. }),
        "{e}"
    );
}

/// The fixture's bundle as version 2 writes it: each certificate and CRL once in `material`,
/// named by hash, and each CMS without its CRLs.
fn by_hash(b: &EvidenceBundle) -> EvidenceBundle {
    let mut b = b.clone();
    b.format = BUNDLE_FORMAT.into();
    for s in &mut b.signatures {
        for c in std::mem::take(&mut s.chain) {
            let h = sha256_hex(&c.0);
            s.chain_refs.push(h.clone());
            b.material.insert(h, c);
        }
        for c in std::mem::take(&mut s.crls) {
            let h = sha256_hex(&c.0);
            s.crl_refs.push(h.clone());
            b.material.insert(h, c);
        }
        s.cms = B64(crypto::with_crls(&s.cms.0, &[]).unwrap());
    }
    b
}

#[test]
fn material_given_once_by_hash_verifies_and_every_byte_of_it_is_bound() {
    let f = fixture();
    let b = by_hash(&f.bundle);
    // Two signatures share the CRLs and the signing CA: each is in the bundle once.
    let crls = f.bundle.signatures[0].crls.len();
    assert!(crls >= 2);
    assert!(
        b.material.len()
            < f.bundle
                .signatures
                .iter()
                .map(|s| s.chain.len() + s.crls.len())
                .sum::<usize>()
    );
    for s in &b.signatures {
        assert!(crypto::parse(&s.cms.0).unwrap().crls.is_empty());
    }
    let json = serde_json::to_vec(&b).unwrap();
    let back = EvidenceBundle::from_json(&json).unwrap();
    assert_eq!(back, b);
    let v = verify_with(f, &back, root_anchor()).expect("verifies");
    assert_eq!(v.signatures.len(), 2);

    let crl = b.signatures[0].crl_refs[1].clone();
    let refuse_v2 = |tamper: &dyn Fn(&mut EvidenceBundle)| {
        let mut t = b.clone();
        tamper(&mut t);
        verify_with(f, &t, root_anchor()).expect_err("a tampered bundle verified")
    };
    // A flipped CRL byte no longer matches its hash.
    let e = refuse_v2(&|t| {
        let m = t.material.get_mut(&crl).unwrap();
        let n = m.0.len();
        flip(&mut m.0, n - 10);
    });
    assert!(matches!(e, BundleError::Material { .. }), "{e}");
    assert_msg(
        &e,
        &format!("validation material {crl}: its bytes do not match its hash (altered)"),
    );
    // Another CRL under its own hash: the CMS made whole is not the one the log recorded.
    let other = crypto::certs::crls_from(&file("signing-ca.crl-expired.pem")).unwrap()[0]
        .to_der()
        .unwrap();
    let e = refuse_v2(&|t| {
        let h = sha256_hex(&other);
        t.material.remove(&crl);
        t.material.insert(h.clone(), B64(other.clone()));
        for s in &mut t.signatures {
            for r in &mut s.crl_refs {
                if *r == crl {
                    *r = h.clone();
                }
            }
        }
    });
    assert!(
        matches!(e, BundleError::SignatureHashMismatch { index: 0 }),
        "{e}"
    );
    // A CRL dropped from one signature.
    let e = refuse_v2(&|t| {
        t.signatures[1].crl_refs.pop();
    });
    assert!(
        matches!(e, BundleError::SignatureHashMismatch { index: 1 }),
        "{e}"
    );
    // Material nobody names, or named but absent.
    let e = refuse_v2(&|t| {
        t.material.insert(sha256_hex(&other), B64(other.clone()));
    });
    assert_msg(&e, "no signature names it (added)");
    let e = refuse_v2(&|t| {
        t.material.remove(&crl);
    });
    assert_msg(&e, "the bundle lacks it");
    // A CMS naming its CRLs by hash must not carry any itself.
    let e = refuse_v2(&|t| {
        let whole = f.bundle.signatures[0].cms.clone();
        t.signatures[0].cms = whole;
    });
    assert!(
        matches!(e, BundleError::SignatureMaterialMismatch { index: 0, .. }),
        "{e}"
    );
    // Version 1 bundles carry no material.
    let e = refuse_v2(&|t| t.format = "paraph-evidence/1".into());
    assert!(matches!(e, BundleError::Format { .. }), "{e}");
}

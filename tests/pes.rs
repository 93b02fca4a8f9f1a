//! PES V2 flows signed with enveloped XAdES-EPES, bordereau by bordereau, through a real
//! server: the format chosen at submission, every refusal, `paraph sign` on a PES (one
//! passphrase for all bordereaux), the signed flow as the document's latest content, and
//! xmlsec1 verifying each produced signature. The flows are built here, never copied.

mod common;
use common::cli::Cli;
use common::*;
use paraph::proto::{self, StepKind as K, StepMode as M};
use std::path::Path;
use std::process::Command;
use tonic::Code;

/// The policy hash the test server is configured with (base64 of 32 bytes).
const POLICY_HASH: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

const NAMES: &[&str] = &[
    "Bérénice Lefèvre",
    "Jean-Noël Çağlar & Fils",
    "Société d'Économie Mixte",
    "Zoé Müller",
    "Ana Łukasz",
];

/// A PES V2 flow: `bordereaux` as (Id or None, pieces), in `encoding` (`UTF-8` or
/// `ISO-8859-1`), lines ending in `eol`.
fn pes_flow(encoding: &str, bordereaux: &[(Option<&str>, usize)], eol: &str) -> Vec<u8> {
    let mut x = String::new();
    x.push_str(&format!(
        "<?xml version=\"1.0\" encoding=\"{encoding}\"?>{eol}"
    ));
    x.push_str(&format!(
        "<PES_Aller xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">{eol}"
    ));
    x.push_str(&format!(
        "  <EnTetePES><DteStr V=\"2026-12-01\"/><IdPost V=\"012345\"/><LibelleColBud V=\"Commune de Sainte-H\u{e9}l\u{e8}ne\"/><IdColl V=\"21690123400017\"/></EnTetePES>{eol}"
    ));
    x.push_str(&format!("  <PES_DepenseAller>{eol}"));
    x.push_str(&format!(
        "    <EnTeteDepense><IdVer V=\"2\"/><InfoDematerialisee V=\"0\"/></EnTeteDepense>{eol}"
    ));
    for (b, (id, pieces)) in bordereaux.iter().enumerate() {
        match id {
            Some(id) => x.push_str(&format!("    <Bordereau Id=\"{id}\">{eol}")),
            None => x.push_str(&format!("    <Bordereau>{eol}")),
        }
        let total = (*pieces as u64) * 12050;
        x.push_str(&format!(
            "      <BlocBordereau><Exer V=\"2026\"/><IdBord V=\"{}\"/><DteBordEm V=\"2026-12-01\"/><TypBord V=\"01\"/><NbrPce V=\"{pieces}\"/><MtCumulAnnuel V=\"0\"/><MtBordHT V=\"{}.{:02}\"/></BlocBordereau>{eol}",
            b + 1,
            total / 100,
            total % 100
        ));
        for p in 0..*pieces {
            let name = NAMES[(b + p) % NAMES.len()];
            let name = if encoding == "ISO-8859-1" {
                // Latin-1 cannot hold every name: the rest as character references.
                name.chars()
                    .map(|c| {
                        if (c as u32) < 256 {
                            xml_text(c)
                        } else {
                            format!("&#{};", c as u32)
                        }
                    })
                    .collect::<String>()
            } else {
                name.chars().map(xml_text).collect()
            };
            x.push_str(&format!(
                "      <Piece><BlocPiece><InfoPce><IdPce V=\"{}\"/><TypPce V=\"01\"/><Obj V=\"Fournitures \u{e9}cole &#233;t&#xE9;\"/></InfoPce></BlocPiece><LigneDePiece><BlocLignePiece><InfoLignePiece><IdLigne V=\"1\"/><Nature V=\"6067\"/><MtHT V=\"120.50\"/></InfoLignePiece></BlocLignePiece><Tiers><InfoTiers><Nom V=\"{name}\"/></InfoTiers></Tiers></LigneDePiece></Piece>{eol}",
                p + 1
            ));
        }
        x.push_str(&format!("    </Bordereau>{eol}"));
    }
    x.push_str(&format!("  </PES_DepenseAller>{eol}</PES_Aller>{eol}"));
    match encoding {
        "ISO-8859-1" => x
            .chars()
            .map(|c| u8::try_from(c as u32).expect("Latin-1"))
            .collect(),
        _ => x.into_bytes(),
    }
}

fn xml_text(c: char) -> String {
    match c {
        '&' => "&amp;".into(),
        '<' => "&lt;".into(),
        '"' => "&quot;".into(),
        c => c.to_string(),
    }
}

async fn start() -> (TestServer, Org) {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, |s| {
        s.pes.policy_hash = POLICY_HASH.into();
        // Outside Latin-1: inserted as character references (in any encoding).
        s.pes.city = "Sainte-H\u{e9}l\u{e8}ne-\u{141}\u{f3}d\u{17a}".into();
        s.pes.postal_code = "69000".into();
        s.pes.max_bordereaux = 3;
        s.seals.insert(
            "default".into(),
            paraph::config::SealSettings {
                p12: "certs-test/seal.p12".into(),
                password_env: None,
                password_file: None,
                password: Some("paraph-test".into()),
            },
        );
    })
    .await;
    let org = Org::create(&srv, "default").await;
    trust_and_bind_officers(&srv, &org).await;
    create_circuit(
        &srv,
        &org,
        "pes",
        vec![visa(&["carol"]), sign_step(&["alice"], 2)],
    )
    .await;
    (srv, org)
}

async fn submit_pes(
    srv: &TestServer,
    org: &Org,
    circuit: &str,
    format: &str,
    content: &[u8],
) -> Result<proto::Document, tonic::Status> {
    let file = ("Bordereaux de mandats", "PES_Aller.xml");
    submit_file(srv, org, circuit, file, format, content).await
}

async fn content_summary(
    srv: &TestServer,
    token: &str,
    id: &str,
    revision: Option<u32>,
) -> Result<proto::ContentSummary, tonic::Status> {
    srv.docs(token, None)
        .get_content_summary(proto::GetContentSummaryRequest {
            id: id.into(),
            revision,
        })
        .await
        .map(|r| r.into_inner())
}

async fn content_of(srv: &TestServer, org: &Org, id: &str) -> Vec<u8> {
    srv.content(org.token("audit"), id).await
}

/// xmlsec1 on the signature of bordereau `id`: Ok(()) or its complaint.
fn xmlsec1_verify(dir: &Path, flow: &[u8], id: &str) -> Result<(), String> {
    let file = dir.join(format!("flow-{id}.xml"));
    std::fs::write(&file, flow).unwrap();
    let out = Command::new("xmlsec1")
        .args(["--verify", "--trusted-pem", "certs-test/root-ca.cert.pem"])
        .args(["--untrusted-pem", "certs-test/signing-ca.cert.pem"])
        .args(["--id-attr:Id", "Bordereau"])
        .args([
            "--id-attr:Id",
            "http://uri.etsi.org/01903/v1.1.1#:SignedProperties",
        ])
        .args([
            "--node-xpath",
            &format!("//*[local-name()='Signature'][@Id='{id}_SIG']"),
        ])
        .arg(&file)
        .output()
        .expect("xmlsec1 is installed (.ci/run installs it)");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// What the XAdES properties of each signature must say.
struct Expected<'a> {
    policy_oid: &'a str,
    policy_hash: &'a str,
    role: &'a str,
}

/// The server's PES settings as the test servers configure them.
const EXPECTED: Expected<'static> = Expected {
    policy_oid: "1.2.250.1.131.1.5.18.21.1.7",
    policy_hash: POLICY_HASH,
    role: "Ordonnateur",
};

/// Python's signxml core verifier on the signature of each of `ids` (a bordereau `Id`, or the
/// `PES_Aller` `Id` of a whole-file signature), with the `Id` attribute as identifier and two
/// references expected, pinned to the KeyInfo certificate (the chain is xmlsec1's and
/// paraph's); then the XAdES properties signxml does not read (its XAdES verifier knows only
/// namespace v1.3.2): SigningTime in UTC, the SigningCertificate digest and serial of the
/// KeyInfo certificate, the policy identifier and hash, the claimed role. Ok(its report) or its
/// complaint.
fn signxml_verify(
    dir: &Path,
    flow: &[u8],
    ids: &[&str],
    want: &Expected<'_>,
) -> Result<String, String> {
    let file = dir.join("flow-signxml.xml");
    std::fs::write(&file, flow).unwrap();
    let script = r#"
import sys, base64, hashlib, datetime
from lxml import etree
from cryptography import x509
from signxml import XMLVerifier, SignatureConfiguration
DS = 'http://www.w3.org/2000/09/xmldsig#'
XAD = 'http://uri.etsi.org/01903/v1.1.1#'
ns = {'ds': DS, 'xad': XAD}
path, oid, policy_hash, role = sys.argv[1:5]
ids = sys.argv[5:]
data = open(path, 'rb').read()
root = etree.fromstring(data)
for id_ in ids:
    if root.get('Id') == id_:
        location = './'
    else:
        location = "./*/Bordereau[@Id='%s']/" % id_
    sig = root.find(location + 'ds:Signature', namespaces=ns)
    if sig is None:
        sys.exit('%s: no ds:Signature at %s' % (id_, location))
    der = base64.b64decode(''.join(sig.find('ds:KeyInfo/ds:X509Data/ds:X509Certificate', namespaces=ns).text.split()))
    cert = x509.load_der_x509_certificate(der)
    cfg = SignatureConfiguration(expect_references=2, location=location)
    results = XMLVerifier().verify(data, x509_cert=cert, id_attribute='Id', expect_config=cfg)
    uris = sorted(r.signed_xml.get('Id') for r in results)
    if id_ not in uris:
        sys.exit('%s: the verified references are %s' % (id_, uris))
    ssp = sig.find('ds:Object/xad:QualifyingProperties/xad:SignedProperties/xad:SignedSignatureProperties', namespaces=ns)
    t = ssp.findtext('xad:SigningTime', namespaces=ns).strip()
    if not t.endswith('Z'):
        sys.exit('%s: SigningTime %s is not UTC' % (id_, t))
    datetime.datetime.strptime(t, '%Y-%m-%dT%H:%M:%SZ')
    c = ssp.find('xad:SigningCertificate/xad:Cert', namespaces=ns)
    dm = c.find('xad:CertDigest/xad:DigestMethod', namespaces=ns)
    if dm is None or dm.get('Algorithm') != 'http://www.w3.org/2001/04/xmlenc#sha256':
        sys.exit('%s: CertDigest is not SHA-256' % id_)
    if base64.b64decode(c.findtext('xad:CertDigest/xad:DigestValue', namespaces=ns)) != hashlib.sha256(der).digest():
        sys.exit('%s: SigningCertificate digest is not the KeyInfo certificate' % id_)
    if int(c.findtext('xad:IssuerSerial/ds:X509SerialNumber', namespaces=ns)) != cert.serial_number:
        sys.exit('%s: SigningCertificate serial is not the KeyInfo certificate' % id_)
    pid = ssp.find('xad:SignaturePolicyIdentifier/xad:SignaturePolicyId', namespaces=ns)
    if pid.findtext('xad:SigPolicyId/xad:Identifier', namespaces=ns).strip() != 'urn:oid:' + oid:
        sys.exit('%s: policy %s' % (id_, pid.findtext('xad:SigPolicyId/xad:Identifier', namespaces=ns)))
    if pid.findtext('xad:SigPolicyHash/xad:DigestValue', namespaces=ns).strip() != policy_hash:
        sys.exit('%s: policy hash %s' % (id_, pid.findtext('xad:SigPolicyHash/xad:DigestValue', namespaces=ns)))
    r = ssp.findtext('xad:SignerRole/xad:ClaimedRoles/xad:ClaimedRole', namespaces=ns)
    if r != role:
        sys.exit('%s: claimed role %r' % (id_, r))
    print('%s: signxml verified %d references; XAdES properties as expected' % (id_, len(results)))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&file)
        .args([want.policy_oid, want.policy_hash, want.role])
        .args(ids)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// The flow with every inserted `<ds:Signature …</ds:Signature>` cut out.
fn without_signatures(flow: &[u8]) -> Vec<u8> {
    let open = b"<ds:Signature ";
    let close = b"</ds:Signature>";
    let mut out = Vec::new();
    let mut i = 0;
    while i < flow.len() {
        if flow[i..].starts_with(open) {
            let end = flow[i..]
                .windows(close.len())
                .position(|w| w == close)
                .expect("closed signature");
            i += end + close.len();
        } else {
            out.push(flow[i]);
            i += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_format_is_chosen_at_submission_and_every_bad_pes_is_refused_naming_the_problem() {
    let (srv, org) = start().await;
    let good = pes_flow("UTF-8", &[(Some("B1"), 2), (Some("B2"), 1)], "\n");

    // auto: a PES is xades-pes, anything else CAdES; GetDocument shows it.
    let d = submit_pes(&srv, &org, "pes", "", &good).await.unwrap();
    assert_eq!(d.signature_format, "xades-pes");
    let got = get(&srv, &org, "finance", &d.id).await.unwrap();
    assert_eq!(got.signature_format, "xades-pes");
    let d = submit_pes(&srv, &org, "pes", "auto", b"plain text, not xml")
        .await
        .unwrap();
    assert_eq!(d.signature_format, "cades");
    let d = submit_pes(&srv, &org, "pes", "cades", &good).await.unwrap();
    assert_eq!(d.signature_format, "cades");
    let iso = pes_flow("ISO-8859-1", &[(Some("B1"), 1)], "\r\n");
    let d = submit_pes(&srv, &org, "pes", "auto", &iso).await.unwrap();
    assert_eq!(d.signature_format, "xades-pes");

    // Refusals, each naming the problem.
    let refused = |r: Result<proto::Document, tonic::Status>, needle: &str| {
        let e = r.expect_err(needle);
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(needle), "{needle:?} not in {e:?}");
    };
    refused(
        submit_pes(&srv, &org, "pes", "bogus", &good).await,
        "signature_format",
    );
    refused(submit_pes(&srv, &org, "pes", "pades", &good).await, "pades");
    refused(
        submit_pes(
            &srv,
            &org,
            "pes",
            "xades-pes",
            b"<PES_Aller><Bordereau Id='x'>",
        )
        .await,
        "not well-formed",
    );
    refused(
        submit_pes(
            &srv,
            &org,
            "pes",
            "xades-pes",
            b"<Other Id='x'><a/></Other>",
        )
        .await,
        "not PES_Aller",
    );
    let missing = pes_flow("UTF-8", &[(Some("B1"), 1), (None, 1)], "\n");
    refused(
        submit_pes(&srv, &org, "pes", "auto", &missing).await,
        "bordereau #2 has no Id",
    );
    let none = pes_flow("UTF-8", &[(None, 1)], "\n");
    refused(
        submit_pes(&srv, &org, "pes", "auto", &none).await,
        "no bordereau has an Id",
    );
    let dup = pes_flow("UTF-8", &[(Some("B1"), 1), (Some("B1"), 1)], "\n");
    refused(submit_pes(&srv, &org, "pes", "auto", &dup).await, "twice");
    let cp1252 = String::from_utf8(good.clone())
        .unwrap()
        .replace("UTF-8", "windows-1252");
    refused(
        submit_pes(&srv, &org, "pes", "xades-pes", cp1252.as_bytes()).await,
        "windows-1252",
    );

    // More bordereaux than pes.max_bordereaux (3 in this server).
    let four = pes_flow(
        "UTF-8",
        &[
            (Some("B1"), 1),
            (Some("B2"), 1),
            (Some("B3"), 1),
            (Some("B4"), 1),
        ],
        "\n",
    );
    let e = submit_pes(&srv, &org, "pes", "auto", &four)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("pes.max_bordereaux (3)"), "{e:?}");
    // Circuits: one signature step, no seal.
    create_circuit(
        &srv,
        &org,
        "two-signatures",
        vec![
            sign_step(&["alice"], 2),
            visa(&["carol"]),
            sign_step(&["bob"], 2),
        ],
    )
    .await;
    refused(
        submit_pes(&srv, &org, "two-signatures", "auto", &good).await,
        "step 2 of circuit 'two-signatures' is a second signature step",
    );
    create_circuit(
        &srv,
        &org,
        "sealed",
        vec![sign_step(&["alice"], 2), step(K::Seal, &[], M::All, 0)],
    )
    .await;
    refused(
        submit_pes(&srv, &org, "sealed", "auto", &good).await,
        "step 1 of circuit 'sealed' is a seal step",
    );
    create_circuit(&srv, &org, "visas", vec![visa(&["carol"])]).await;
    refused(
        submit_pes(&srv, &org, "visas", "auto", &good).await,
        "no signature step",
    );
    // The same circuits take a CAdES document.
    submit_pes(&srv, &org, "two-signatures", "cades", &good)
        .await
        .unwrap();
}

/// The pieces of the first bordereau of each sample of the end-to-end test.
fn ids_pieces(what: &str) -> Vec<usize> {
    if what.starts_with("ISO") {
        vec![3, 1, 7]
    } else {
        vec![500, 1]
    }
}

/// `paraph sign ID --p12 FILE` with the passphrase in the environment.
fn cli_sign(cli: &Cli, token: &str, id: &str, p12: &str) -> std::process::Output {
    let root = env!("CARGO_MANIFEST_DIR");
    cli.command(
        token,
        &["sign", id, "--p12", &format!("{root}/certs-test/{p12}")],
    )
    .env("PARAPH_P12_PASSWORD", "paraph-test")
    .output()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordonnateur_signs_every_bordereau_with_paraph_sign_and_xmlsec1_verifies_each() {
    let (srv, org) = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let cli = Cli {
        dir: tmp.path().to_path_buf(),
        addr: srv.addr.to_string(),
    };
    let samples: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "ISO-8859-1 with CRLF, three bordereaux",
            pes_flow(
                "ISO-8859-1",
                &[
                    (Some("BORD_2026_1"), 3),
                    (Some("BORD_2026_2"), 1),
                    (Some("BORD_2026_3"), 7),
                ],
                "\r\n",
            ),
            vec!["BORD_2026_1", "BORD_2026_2", "BORD_2026_3"],
        ),
        (
            "UTF-8, one bordereau of 500 pieces and one of 1",
            pes_flow("UTF-8", &[(Some("B500"), 500), (Some("B1"), 1)], "\n"),
            vec!["B500", "B1"],
        ),
    ];
    let elsewhere = Org::create(&srv, "ailleurs").await;
    for (what, flow, ids) in samples {
        let d = submit_pes(&srv, &org, "pes", "auto", &flow).await.unwrap();
        assert_eq!(d.signature_format, "xades-pes", "{what}");
        approve(&srv, &org, "carol", &d.id, None).await.unwrap();
        // What the ordonnateur reads before signing: each bordereau, readable.
        let show = |json: bool| {
            let mut args = vec!["show", d.id.as_str()];
            if json {
                args.push("--json");
            }
            let o = cli.command(org.token("alice"), &args).output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            o.stdout
        };
        let v: serde_json::Value = serde_json::from_slice(&show(true)).unwrap();
        assert_eq!(v["signature_format"], "xades-pes", "{v}");
        let bs = v["bordereaux"].as_array().unwrap();
        assert_eq!(bs.len(), ids.len(), "{v}");
        for (b, id) in bs.iter().zip(&ids) {
            assert_eq!(b["id"], *id);
            assert_eq!(b["exercise"], "2026");
            assert_eq!(b["signed"], false);
        }
        assert_eq!(
            bs[0]["beneficiaries"][0], "B\u{e9}r\u{e9}nice Lef\u{e8}vre",
            "{v}"
        );
        let text = String::from_utf8(show(false)).unwrap();
        assert!(
            text.contains(&format!("  {}  mandates 2026", ids[0])),
            "{text}"
        );
        // The same summary from the API (GetContentSummary), for the web client.
        let sum = content_summary(&srv, org.token("alice"), &d.id, None)
            .await
            .unwrap();
        assert_eq!(sum.signature_format, "xades-pes");
        assert_eq!(sum.content_sha256, d.content_sha256);
        let got: Vec<&str> = sum.bordereaux.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(got, ids, "{what}");
        for (b, pieces) in sum.bordereaux.iter().zip(ids_pieces(what)) {
            assert_eq!(b.pieces, pieces as u32, "{what}");
            assert_eq!(b.total_cents, pieces as i64 * 12050, "{what}");
            assert_eq!(b.kind, "PES_DepenseAller");
            assert_eq!(b.exercise, "2026");
            assert!(
                !b.signed && b.signer.is_empty() && b.defect.is_empty(),
                "{b:?}"
            );
        }
        assert_eq!(
            sum.bordereaux[0].beneficiaries[0],
            "B\u{e9}r\u{e9}nice Lef\u{e8}vre"
        );
        let out = cli_sign(&cli, org.token("alice"), &d.id, "officer-l2-p256.p12");
        assert!(
            out.status.success(),
            "{what}: paraph sign failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc = get(&srv, &org, "alice", &d.id).await.unwrap();
        assert_eq!(state(&doc), proto::DocumentState::Completed, "{what}");
        let v: serde_json::Value = serde_json::from_slice(&show(true)).unwrap();
        assert!(
            v["bordereaux"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["signed"] == true),
            "{v}"
        );
        assert_eq!(v["bordereaux"][0]["pieces"], ids_pieces(what)[0], "{v}");
        let sum = content_summary(&srv, org.token("finance"), &d.id, None)
            .await
            .unwrap();
        assert_eq!(sum.bordereaux.len(), ids.len());
        for b in &sum.bordereaux {
            assert!(b.signed, "{what}: {b:?}");
            assert!(b.signer.contains("TEST Officer"), "{what}: {b:?}");
            assert_eq!(b.claimed_role, "Ordonnateur", "{what}");
            assert!(!b.signing_time.is_empty(), "{what}");
            assert!(b.defect.is_empty(), "{what}: {b:?}");
        }
        // Revision 0: the flow as submitted, unsigned.
        let first = content_summary(&srv, org.token("finance"), &d.id, Some(0))
            .await
            .unwrap();
        assert_eq!(first.content_sha256, d.content_sha256);
        assert!(first.bordereaux.iter().all(|b| !b.signed));
        // Another tenant's reader does not find it.
        let e = content_summary(&srv, elsewhere.token("audit"), &d.id, None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        assert_eq!(doc.revision_sha256.len(), 1, "{what}");
        // GetContent serves the signed flow; the submitted bytes are all still there.
        let signed = content_of(&srv, &org, &d.id).await;
        assert_ne!(signed, flow, "{what}");
        assert_eq!(
            without_signatures(&signed),
            flow,
            "{what}: unsigned parts changed"
        );
        let city = b"Sainte-H&#xE9;l&#xE8;ne-&#x141;&#xF3;d&#x17A;";
        assert!(
            signed.windows(city.len()).any(|w| w == city),
            "{what}: the city is not written with character references"
        );
        assert_eq!(
            &signed[..signed.iter().position(|b| *b == b'>').unwrap()],
            &flow[..flow.iter().position(|b| *b == b'>').unwrap()],
            "{what}: the prolog changed"
        );
        for id in &ids {
            xmlsec1_verify(tmp.path(), &signed, id)
                .unwrap_or_else(|e| panic!("{what}: xmlsec1 refused {id}: {e}"));
        }
        signxml_verify(tmp.path(), &signed, &ids, &EXPECTED)
            .unwrap_or_else(|e| panic!("{what}: signxml refused: {e}"));
        // Each signature is the last child of its bordereau.
        for id in &ids {
            let text = String::from_utf8_lossy(&signed);
            let at = text.find(&format!("Id=\"{id}_SIG\"")).unwrap();
            let close = text[at..].find("</ds:Signature>").unwrap() + at;
            let rest = text[close + "</ds:Signature>".len()..].trim_start();
            assert!(rest.starts_with("</Bordereau>"), "{what}: {id}");
        }
        // paraph content: the signed flow by default, the submitted one as revision 0.
        let latest = tmp.path().join("latest.xml");
        let o = cli
            .command(
                org.token("alice"),
                &["content", &d.id, "--out", latest.to_str().unwrap()],
            )
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(std::fs::read(&latest).unwrap(), signed, "{what}");
        let o = cli
            .command(
                org.token("alice"),
                &[
                    "content",
                    &d.id,
                    "--revision",
                    "0",
                    "--out",
                    latest.to_str().unwrap(),
                ],
            )
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(std::fs::read(&latest).unwrap(), flow, "{what}");
        let o = cli
            .command(
                org.token("alice"),
                &["content", &d.id, "--revision", "2", "--out", "-"],
            )
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        // paraph signatures --out writes no empty .p7s: the signatures are in the flow.
        let sigdir = tmp.path().join(format!("sigs-{}", d.id));
        let o = cli
            .command(
                org.token("alice"),
                &[
                    "signatures",
                    &d.id,
                    "--out",
                    sigdir.to_str().unwrap(),
                    "--json",
                ],
            )
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            listed["signatures"].as_array().unwrap().len(),
            1,
            "{listed}"
        );
        assert_eq!(
            listed["signatures"][0]["file"],
            serde_json::Value::Null,
            "{listed}"
        );
        assert_eq!(std::fs::read_dir(&sigdir).unwrap().count(), 0);
        // paraph validate --data: one report per bordereau.
        let file = tmp.path().join("signed.xml");
        std::fs::write(&file, &signed).unwrap();
        let v = cli
            .command(
                org.token("alice"),
                &["validate", "--data", file.to_str().unwrap(), "--json"],
            )
            .output()
            .unwrap();
        assert!(
            v.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&v.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
        assert_eq!(report["indication"], "TOTAL_PASSED", "{what}: {report}");
        let signers = report["signers"].as_array().unwrap();
        assert_eq!(signers.len(), ids.len(), "{what}: {report}");
        for (s, id) in signers.iter().zip(&ids) {
            assert_eq!(s["reference"], *id, "{report}");
            assert_eq!(s["claimed_role"], "Ordonnateur", "{report}");
            assert_eq!(s["policy_oid"], "1.2.250.1.131.1.5.18.21.1.7", "{report}");
            assert_eq!(s["level"], 2, "{report}");
            assert_eq!(s["signing_time"], "2026-01-01T00:00:00Z", "{report}");
        }
        // An edited bordereau fails xmlsec1 (the amount of its first line).
        let at = signed
            .windows(6)
            .position(|w| w == b"120.50")
            .expect("an amount");
        let mut edited = signed.clone();
        edited[at] = b'9';
        assert!(
            xmlsec1_verify(tmp.path(), &edited, ids[0]).is_err(),
            "{what}: an edited bordereau still verifies"
        );
        let e = signxml_verify(tmp.path(), &edited, &ids[..1], &EXPECTED)
            .expect_err("signxml refuses an edited bordereau");
        assert!(e.contains("Digest mismatch"), "{what}: {e}");
        // … and paraph validate, naming that bordereau only.
        std::fs::write(&file, &edited).unwrap();
        let v = cli
            .command(
                org.token("alice"),
                &["validate", "--data", file.to_str().unwrap(), "--json"],
            )
            .output()
            .unwrap();
        assert_eq!(v.status.code(), Some(6), "{what}");
        let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
        assert_eq!(report["indication"], "TOTAL_FAILED", "{what}: {report}");
        let signers = report["signers"].as_array().unwrap();
        assert_eq!(signers[0]["sub_indication"], "HASH_FAILURE", "{report}");
        assert!(
            signers[0]["message"].as_str().unwrap().contains(ids[0]),
            "{report}"
        );
        assert!(
            signers[1..]
                .iter()
                .all(|s| s["indication"] == "TOTAL_PASSED"),
            "{report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_value_refuses_the_whole_completion_and_leaves_the_flow_unsigned() {
    let (srv, org) = start().await;
    let flow = pes_flow("UTF-8", &[(Some("A"), 1), (Some("B"), 2)], "\n");
    let d = submit_pes(&srv, &org, "pes", "auto", &flow).await.unwrap();
    approve(&srv, &org, "carol", &d.id, None).await.unwrap();
    let p = prepare(
        &srv,
        &org,
        "alice",
        &d.id,
        "officer-l2-p256",
        &["signing-ca"],
    )
    .await
    .unwrap();
    assert_eq!(p.signature_format, "xades-pes");
    assert_eq!(p.items.len(), 2);
    assert_eq!(p.items[0].label, "A");
    assert_eq!(p.items[1].label, "B");
    let k = key("officer-l2-p256");
    let good: Vec<Vec<u8>> = p
        .items
        .iter()
        .map(|i| paraph::crypto::sign_with_key(&k, &i.data).unwrap())
        .collect();
    // B's value signed over A's SignedInfo: refused, naming B.
    let mut bad = good.clone();
    bad[1] = good[0].clone();
    let r = sigs(&srv, org.token("alice"))
        .complete_signature(proto::CompleteSignatureRequest {
            preparation_id: p.id.clone(),
            signature_value: Vec::new(),
            signature_values: bad,
            idempotency_key: String::new(),
        })
        .await;
    let e = r.expect_err("a bad value");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("'B'"), "{e:?}");
    // Too few values: refused too.
    let r = sigs(&srv, org.token("alice"))
        .complete_signature(proto::CompleteSignatureRequest {
            preparation_id: p.id.clone(),
            signature_value: Vec::new(),
            signature_values: good[..1].to_vec(),
            idempotency_key: String::new(),
        })
        .await;
    assert_eq!(r.expect_err("one value").code(), Code::InvalidArgument);
    let doc = get(&srv, &org, "alice", &d.id).await.unwrap();
    assert!(doc.revision_sha256.is_empty());
    assert_eq!(content_of(&srv, &org, &d.id).await, flow);
    // The good values complete it.
    let done = sigs(&srv, org.token("alice"))
        .complete_signature(proto::CompleteSignatureRequest {
            preparation_id: p.id.clone(),
            signature_value: Vec::new(),
            signature_values: good,
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.state, proto::DocumentState::Completed as i32);
    let signed = content_of(&srv, &org, &d.id).await;
    assert_eq!(without_signatures(&signed), flow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_p384_keys_and_a_whole_file_signature_verify_in_xmlsec1() {
    let (srv, org) = start().await;
    let tmp = tempfile::tempdir().unwrap();
    let cli = Cli {
        dir: tmp.path().to_path_buf(),
        addr: srv.addr.to_string(),
    };
    for (user, p12, level) in [
        ("dave", "officer-l2-rsa3072.p12", 2),
        ("bob", "officer-l3-p384.p12", 3),
    ] {
        let circuit = format!("pes-{user}");
        create_circuit(&srv, &org, &circuit, vec![sign_step(&[user], level)]).await;
        let flow = pes_flow("UTF-8", &[(Some("R1"), 2), (Some("R2"), 3)], "\n");
        let d = submit_pes(&srv, &org, &circuit, "auto", &flow)
            .await
            .unwrap();
        let out = cli_sign(&cli, org.token(user), &d.id, p12);
        assert!(
            out.status.success(),
            "{user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let signed = content_of(&srv, &org, &d.id).await;
        for id in ["R1", "R2"] {
            xmlsec1_verify(tmp.path(), &signed, id)
                .unwrap_or_else(|e| panic!("{user}: xmlsec1 refused {id}: {e}"));
        }
        signxml_verify(tmp.path(), &signed, &["R1", "R2"], &EXPECTED)
            .unwrap_or_else(|e| panic!("{user}: signxml refused: {e}"));
    }
    // No bordereau has an Id but PES_Aller has: one signature of the whole flow, its last child.
    let flow = String::from_utf8(pes_flow("UTF-8", &[(None, 2), (None, 1)], "\n"))
        .unwrap()
        .replacen("<PES_Aller ", "<PES_Aller Id=\"PES_ALL\" ", 1);
    let d = submit_pes(&srv, &org, "pes", "auto", flow.as_bytes())
        .await
        .unwrap();
    approve(&srv, &org, "carol", &d.id, None).await.unwrap();
    let out = cli_sign(&cli, org.token("alice"), &d.id, "officer-l2-p256.p12");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = content_of(&srv, &org, &d.id).await;
    assert!(String::from_utf8_lossy(&signed).contains("</ds:Signature></PES_Aller>"));
    let file = tmp.path().join("whole.xml");
    std::fs::write(&file, &signed).unwrap();
    let ok = Command::new("xmlsec1")
        .args(["--verify", "--trusted-pem", "certs-test/root-ca.cert.pem"])
        .args(["--untrusted-pem", "certs-test/signing-ca.cert.pem"])
        .args(["--id-attr:Id", "PES_Aller"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    signxml_verify(tmp.path(), &signed, &["PES_ALL"], &EXPECTED)
        .unwrap_or_else(|e| panic!("signxml refused the whole-file signature: {e}"));
}

/// A server whose PES settings are `tweak`ed from the working ones.
async fn start_pes_with(
    tweak: impl FnOnce(&mut paraph::formats::xades_pes::PesSettings),
) -> (TestServer, Org) {
    let mut pes = paraph::formats::xades_pes::PesSettings {
        policy_hash: POLICY_HASH.into(),
        ..Default::default()
    };
    tweak(&mut pes);
    let srv =
        TestServer::start_with(tempfile::tempdir().unwrap(), None, move |s| s.pes = pes).await;
    let org = Org::create(&srv, "default").await;
    trust_and_bind_officers(&srv, &org).await;
    create_circuit(&srv, &org, "pes", vec![sign_step(&["alice"], 2)]).await;
    (srv, org)
}

#[tokio::test]
async fn the_sha1_policy_and_an_unset_policy_hash_are_refused_when_preparing() {
    let flow = pes_flow("UTF-8", &[(Some("A"), 1)], "\n");
    for (tweak, needle) in [
        (
            Box::new(|p: &mut paraph::formats::xades_pes::PesSettings| {
                p.policy_oid = "1.2.250.1.131.1.5.18.21.1.4".into()
            }) as Box<dyn FnOnce(&mut _) + Send>,
            "specifies SHA-1",
        ),
        (
            Box::new(|p: &mut paraph::formats::xades_pes::PesSettings| {
                p.policy_hash = String::new()
            }),
            "pes.policy_hash",
        ),
    ] {
        let (srv, org) = start_pes_with(tweak).await;
        let d = submit_pes(&srv, &org, "pes", "auto", &flow).await.unwrap();
        let e = prepare(
            &srv,
            &org,
            "alice",
            &d.id,
            "officer-l2-p256",
            &["signing-ca"],
        )
        .await
        .expect_err(needle);
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains(needle), "{needle:?} not in {e:?}");
    }
}

/// ValidateSignature of a PES flow (signatures inside) by `srv`.
async fn validate_flow(srv: &TestServer, org: &Org, flow: &[u8]) -> proto::ValidationReport {
    sigs(srv, org.token("alice"))
        .validate_signature(proto::ValidateSignatureRequest {
            data: flow.to_vec(),
            signature: Vec::new(),
            at: None,
            required_level: 0,
            document_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_policy_hash_is_the_fields_and_validation_compares_it_with_the_settings() {
    use paraph::formats::xades_pes::{
        PesSettings, POLICY_DEFAULT_HASH, POLICY_DEFAULT_URI, POLICY_PUBLISHED_PDF_HASH,
    };
    // No `[pes]` setting at all: the policy hash Helios receives from the field, its SPURI
    // and description.
    let (srv, org) = start_pes_with(|p| *p = PesSettings::default()).await;
    let flow = pes_flow("ISO-8859-1", &[(Some("D1"), 2), (Some("D2"), 1)], "\r\n");
    let d = submit_pes(&srv, &org, "pes", "auto", &flow).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cli = Cli {
        dir: tmp.path().to_path_buf(),
        addr: srv.addr.to_string(),
    };
    let out = cli_sign(&cli, org.token("alice"), &d.id, "officer-l2-p256.p12");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = content_of(&srv, &org, &d.id).await;
    let text = String::from_utf8_lossy(&signed);
    for needle in [
        format!("<xad:SigPolicyHash><xad:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"></xad:DigestMethod><xad:DigestValue>{POLICY_DEFAULT_HASH}</xad:DigestValue>"),
        format!("<xad:SPURI>{POLICY_DEFAULT_URI}</xad:SPURI>"),
        "<xad:Description>Politique de signature Helios de la DGFiP</xad:Description>".into(),
    ] {
        assert_eq!(text.matches(&needle).count(), 2, "{needle} once per bordereau");
    }
    let defaults = Expected {
        policy_hash: POLICY_DEFAULT_HASH,
        ..EXPECTED
    };
    signxml_verify(tmp.path(), &signed, &["D1", "D2"], &defaults)
        .unwrap_or_else(|e| panic!("signxml refused: {e}"));
    // Validated by this server: the hash is its setting.
    let r = validate_flow(&srv, &org, &signed).await;
    assert_eq!(r.indication, proto::Indication::TotalPassed as i32, "{r:?}");
    assert_eq!(r.signers.len(), 2, "{r:?}");

    // A server set to the hash of the PDF published at the SPURI: each bordereau's policy
    // hash is named as not matching.
    let (other, org2) = start_pes_with(|p| p.policy_hash = POLICY_PUBLISHED_PDF_HASH.into()).await;
    let r = validate_flow(&other, &org2, &signed).await;
    assert_ne!(r.indication, proto::Indication::TotalPassed as i32, "{r:?}");
    assert_eq!(r.signers.len(), 2, "{r:?}");
    for (s, id) in r.signers.iter().zip(["D1", "D2"]) {
        assert_eq!(s.sub_indication, "POLICY_PROCESSING_ERROR", "{r:?}");
        assert!(
            s.message.contains(&format!(
                "the signature policy hash of '{id}' does not match"
            )),
            "{r:?}"
        );
    }
    // And that server signs with its own setting.
    let d = submit_pes(&other, &org2, "pes", "auto", &flow)
        .await
        .unwrap();
    let cli2 = Cli {
        dir: tmp.path().to_path_buf(),
        addr: other.addr.to_string(),
    };
    let out = cli_sign(&cli2, org2.token("alice"), &d.id, "officer-l2-p256.p12");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = content_of(&other, &org2, &d.id).await;
    let published = Expected {
        policy_hash: POLICY_PUBLISHED_PDF_HASH,
        ..EXPECTED
    };
    signxml_verify(tmp.path(), &signed, &["D1", "D2"], &published)
        .unwrap_or_else(|e| panic!("signxml refused: {e}"));
    let r = validate_flow(&other, &org2, &signed).await;
    assert_eq!(r.indication, proto::Indication::TotalPassed as i32, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_signs_with_its_own_pes_settings_and_a_step_claims_its_own_role() {
    use paraph::formats::xades_pes::{PesTenantSettings, POLICY_PUBLISHED_PDF_HASH};
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, |s| {
        s.pes.policy_hash = POLICY_HASH.into();
        s.pes.city = "Lyon".into();
        s.pes.postal_code = "69001".into();
        s.pes.tenants.insert(
            "agglo".into(),
            PesTenantSettings {
                policy_hash: Some(POLICY_PUBLISHED_PDF_HASH.into()),
                policy_uri: Some("https://agglo.test/politique.pdf".into()),
                city: Some("Villeurbanne".into()),
                postal_code: Some("69100".into()),
                role: Some("Pr\u{e9}sident".into()),
                ..Default::default()
            },
        );
    })
    .await;
    let ville = Org::create(&srv, "default").await;
    trust_and_bind_officers(&srv, &ville).await;
    let agglo = Org::create(&srv, "agglo").await;
    trust_and_bind_officers(&srv, &agglo).await;
    create_circuit(&srv, &ville, "pes", vec![sign_step(&["alice"], 2)]).await;
    let mut maire = sign_step(&["alice"], 2);
    maire.claimed_role = "Maire".into();
    let c = create_circuit(&srv, &ville, "pes-maire", vec![visa(&["carol"]), maire]).await;
    assert_eq!(c.steps[1].claimed_role, "Maire", "shown with the circuit");
    create_circuit(&srv, &agglo, "pes", vec![sign_step(&["alice"], 2)]).await;
    // Only a signature step claims a role.
    let mut bad = visa(&["carol"]);
    bad.claimed_role = "Maire".into();
    let e = srv
        .circuits(ville.token("boss"), None)
        .create_circuit(proto::CreateCircuitRequest {
            name: "bad".into(),
            fallback: String::new(),
            steps: vec![bad, sign_step(&["alice"], 2)],
            idempotency_key: String::new(),
        })
        .await
        .expect_err("a visa claiming a role");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("steps[0].claimed_role"), "{e:?}");

    let tmp = tempfile::tempdir().unwrap();
    let cli = Cli {
        dir: tmp.path().to_path_buf(),
        addr: srv.addr.to_string(),
    };
    let flow = pes_flow("ISO-8859-1", &[(Some("T1"), 2)], "\r\n");
    let mut signed_by = Vec::new();
    for (org, circuit) in [(&ville, "pes"), (&ville, "pes-maire"), (&agglo, "pes")] {
        let d = submit_pes(&srv, org, circuit, "auto", &flow).await.unwrap();
        if circuit == "pes-maire" {
            approve(&srv, org, "carol", &d.id, None).await.unwrap();
        }
        let root = env!("CARGO_MANIFEST_DIR");
        let out = cli
            .command(
                org.token("alice"),
                &[
                    "sign",
                    &d.id,
                    "--p12",
                    &format!("{root}/certs-test/officer-l2-p256.p12"),
                ],
            )
            .env("PARAPH_TENANT", &org.tenant)
            .env("PARAPH_P12_PASSWORD", "paraph-test")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{circuit}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        signed_by.push(content_of(&srv, org, &d.id).await);
    }
    let place = |flow: &[u8]| {
        let t = String::from_utf8_lossy(flow);
        let at = t.find("<xad:SignatureProductionPlace>").unwrap();
        let end = t[at..].find("</xad:SignatureProductionPlace>").unwrap();
        t[at..at + end].to_owned()
    };
    // The server's settings, the step's role.
    assert!(place(&signed_by[0])
        .contains("<xad:City>Lyon</xad:City><xad:PostalCode>69001</xad:PostalCode>"));
    signxml_verify(tmp.path(), &signed_by[0], &["T1"], &EXPECTED).unwrap();
    assert_eq!(place(&signed_by[1]), place(&signed_by[0]));
    let maire = Expected {
        role: "Maire",
        ..EXPECTED
    };
    signxml_verify(tmp.path(), &signed_by[1], &["T1"], &maire).unwrap();
    // The tenant's own settings, each field it sets.
    assert!(
        place(&signed_by[2])
            .contains("<xad:City>Villeurbanne</xad:City><xad:PostalCode>69100</xad:PostalCode><xad:CountryName>France</xad:CountryName>"),
        "{}",
        place(&signed_by[2])
    );
    assert!(String::from_utf8_lossy(&signed_by[2])
        .contains("<xad:SPURI>https://agglo.test/politique.pdf</xad:SPURI>"));
    let president = Expected {
        policy_hash: POLICY_PUBLISHED_PDF_HASH,
        role: "Pr\u{e9}sident",
        ..EXPECTED
    };
    signxml_verify(tmp.path(), &signed_by[2], &["T1"], &president).unwrap();
    // Each tenant's validation compares the policy hash with its own setting.
    let r = validate_flow(&srv, &agglo, &signed_by[2]).await;
    assert_eq!(r.indication, proto::Indication::TotalPassed as i32, "{r:?}");
    assert_eq!(r.signers[0].claimed_role, "Pr\u{e9}sident", "{r:?}");
    let r = validate_flow(&srv, &ville, &signed_by[2]).await;
    assert_eq!(
        r.signers[0].sub_indication, "POLICY_PROCESSING_ERROR",
        "{r:?}"
    );
    let r = validate_flow(&srv, &agglo, &signed_by[0]).await;
    assert_eq!(
        r.signers[0].sub_indication, "POLICY_PROCESSING_ERROR",
        "{r:?}"
    );
}

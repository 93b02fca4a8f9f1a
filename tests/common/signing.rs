//! Signing fixtures shared by the tests: the test PKI of `certs-test/`, tenant trust settings,
//! certificate bindings, and the officer's side of the two-phase signature.

use super::{auth, step, Auth, Org, TestServer};
use paraph::proto::{
    self, signature_service_client::SignatureServiceClient, StepKind as K, StepMode as M,
};
use std::path::Path;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type Sigs = SignatureServiceClient<InterceptedService<Channel, Auth>>;

pub const L1: &str = "1.3.6.1.4.1.99999.1.1.1";
pub const L2: &str = "1.3.6.1.4.1.99999.1.1.2";
pub const L3: &str = "1.3.6.1.4.1.99999.1.1.3";

pub fn certs(file: &str) -> Vec<u8> {
    std::fs::read(Path::new("certs-test").join(file)).unwrap()
}

pub fn cert_der(stem: &str) -> Vec<u8> {
    openssl::x509::X509::from_pem(&certs(&format!("{stem}.cert.pem")))
        .unwrap()
        .to_der()
        .unwrap()
}

pub fn key(stem: &str) -> openssl::pkey::PKey<openssl::pkey::Private> {
    openssl::pkey::PKey::private_key_from_pem(&certs(&format!("{stem}.key.pem"))).unwrap()
}

pub fn sigs(srv: &TestServer, token: &str) -> Sigs {
    SignatureServiceClient::with_interceptor(srv.channel(), auth(token))
}

pub async fn set_trust(srv: &TestServer, org: &Org, crls: Vec<Vec<u8>>) {
    srv.admin(org.token("boss"), None)
        .set_trust(proto::SetTrustRequest {
            anchors: vec![certs("root-ca.cert.pem")],
            intermediates: vec![certs("signing-ca.cert.pem")],
            crls,
            policy_levels: [(L1, 1), (L2, 2), (L3, 3)]
                .iter()
                .map(|(o, l)| proto::PolicyLevel {
                    oid: o.to_string(),
                    level: *l,
                })
                .collect(),
            signature_policy: Some(proto::SignaturePolicy {
                oid: "1.2.250.1.131.1.5.18.21.1.7".into(),
                sha256: vec![7; 32],
                uri: "https://example.invalid/politique.pdf".into(),
            }),
            idempotency_key: String::new(),
        })
        .await
        .unwrap();
}

pub async fn bind(
    srv: &TestServer,
    org: &Org,
    user: &str,
    pem: &[u8],
) -> Result<proto::User, tonic::Status> {
    srv.admin(org.token("boss"), None)
        .bind_certificate(proto::BindCertificateRequest {
            user: user.into(),
            certificate: pem.to_vec(),
            idempotency_key: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

pub fn sign_step(actors: &[&str], level: u32) -> proto::StepDefinition {
    let mut s = step(K::Signature, actors, M::All, 0);
    s.level = level;
    s
}

/// Prepares with `stem`'s certificate (plus the signing CA) for `who`.
pub async fn prepare(
    srv: &TestServer,
    org: &Org,
    who: &str,
    id: &str,
    stem: &str,
    extra: &[&str],
) -> Result<proto::Preparation, tonic::Status> {
    let mut chain = vec![cert_der(stem)];
    for e in extra {
        chain.push(cert_der(e));
    }
    sigs(srv, org.token(who))
        .prepare_signature(proto::PrepareSignatureRequest {
            document_id: id.into(),
            step: None,
            certificate_chain: chain,
            idempotency_key: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

pub async fn complete(
    srv: &TestServer,
    org: &Org,
    who: &str,
    prep: &str,
    value: Vec<u8>,
) -> Result<proto::CompleteSignatureResponse, tonic::Status> {
    sigs(srv, org.token(who))
        .complete_signature(proto::CompleteSignatureRequest {
            preparation_id: prep.into(),
            signature_value: value,
            idempotency_key: String::new(),
            signature_values: Vec::new(),
        })
        .await
        .map(|r| r.into_inner())
}

/// A document's signatures, as the tenant's auditor reads them.
pub async fn signatures_of(srv: &TestServer, org: &Org, id: &str) -> proto::GetSignaturesResponse {
    sigs(srv, org.token("audit"))
        .get_signatures(proto::GetSignaturesRequest {
            document_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// The officer's side: prepare, sign locally, complete.
pub async fn sign(
    srv: &TestServer,
    org: &Org,
    who: &str,
    id: &str,
    stem: &str,
) -> Result<proto::CompleteSignatureResponse, tonic::Status> {
    let p = prepare(srv, org, who, id, stem, &["signing-ca"]).await?;
    let value = paraph::crypto::sign_with_key(&key(stem), &p.signed_attributes).unwrap();
    complete(srv, org, who, &p.id, value).await
}

/// Trusts the test PKI and binds the usual officers' certificates: alice level 2 (P-256), bob
/// level 3 (P-384), carol level 1 (RSA-2048), dave level 2 (RSA-3072).
pub async fn trust_and_bind_officers(srv: &TestServer, org: &Org) {
    set_trust(srv, org, vec![certs("crls.pem")]).await;
    for (user, stem) in [
        ("alice", "officer-l2-p256"),
        ("bob", "officer-l3-p384"),
        ("carol", "officer-l1-rsa2048"),
        ("dave", "officer-l2-rsa3072"),
    ] {
        bind(srv, org, user, &certs(&format!("{stem}.cert.pem")))
            .await
            .unwrap();
    }
}

/// A server whose tenant `tenant` has the test seal key, with an [`Org`] in it trusting the test
/// PKI and the usual officers' certificates bound.
pub async fn start_with_seal(tenant: &str) -> (TestServer, Org) {
    let name = tenant.to_owned();
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, move |s| {
        s.seals.insert(
            name,
            paraph::config::SealSettings {
                p12: "certs-test/seal.p12".into(),
                password_env: None,
                password_file: None,
                password: Some("paraph-test".into()),
            },
        );
    })
    .await;
    let org = Org::create(&srv, tenant).await;
    trust_and_bind_officers(&srv, &org).await;
    (srv, org)
}

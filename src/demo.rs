//! `paraph serve --demo`: a ready-to-sign demo tenant trusting the test PKI in `certs-test/`,
//! with officers bound to its certificates, a visa + signature + seal circuit, and fresh tokens
//! printed at start. Never use it with real certificates: it trusts public test keys.

use crate::config::{SealSettings, Settings};
use crate::domain::{
    ActorRef, CircuitName, CircuitSpec, DomainError, Mode, RgsLevel, Role, StepDef, StepKind,
    TenantId, UserName,
};
use crate::service::trust::TrustInput;
use crate::service::{Caller, Paraph, Principal, ServiceError};
use std::path::Path;

pub const DEMO_TENANT: &str = "demo";
pub const DEMO_CIRCUIT: &str = "demo";
pub const P12_PASSWORD: &str = "paraph-test";

/// The trust anchor, intermediate CA and CRLs of the test PKI (files of `certs-test/`).
pub const TEST_ANCHOR: &str = "root-ca.cert.pem";
pub const TEST_INTERMEDIATE: &str = "signing-ca.cert.pem";
pub const TEST_CRLS: &str = "crls.pem";
/// The test PKI's certificate policy OIDs and their RGS levels (`*`, `**`, `***`).
pub const TEST_POLICY_LEVELS: [(&str, u8); 3] = [
    ("1.3.6.1.4.1.99999.1.1.1", 1),
    ("1.3.6.1.4.1.99999.1.1.2", 2),
    ("1.3.6.1.4.1.99999.1.1.3", 3),
];

/// Demo officers: (user, certificate file stem, what they do).
pub const OFFICERS: &[(&str, &str, &str)] = &[
    ("carol", "officer-l1-rsa2048", "visa (step 0)"),
    ("alice", "officer-l2-p256", "signature, RGS ** (step 1)"),
    (
        "bob",
        "officer-l3-p384",
        "signature, RGS *** (not in the demo circuit)",
    ),
];

/// Adds the demo tenant's seal (certs-test/seal.p12) to the settings.
pub fn add_seal(settings: &mut Settings, certs: &Path) {
    settings.seals.insert(
        DEMO_TENANT.to_owned(),
        SealSettings {
            p12: certs.join("seal.p12"),
            password_env: None,
            password_file: None,
            password: Some(P12_PASSWORD.to_owned()),
        },
    );
}

/// The demo seal's key and passphrase as the data directory keeps them.
const KEPT_SEAL_P12: &str = "demo-seal.p12";
const KEPT_SEAL_PASSWORD: &str = "demo-seal.password";

/// Keeps the demo tenant's seal in the data directory (a copy of the key, its passphrase in an
/// owner-only file, both named in [`crate::config::DATA_SEALS_FILE`]), so that a later plain
/// `serve` on that directory still seals the demo's documents.
pub fn keep_seal(data: &Path, certs: &Path) -> std::io::Result<()> {
    std::fs::copy(certs.join("seal.p12"), data.join(KEPT_SEAL_P12))?;
    write_owner_only(&data.join(KEPT_SEAL_PASSWORD), P12_PASSWORD.as_bytes())?;
    let file = data.join(crate::config::DATA_SEALS_FILE);
    let mut table = match std::fs::read_to_string(&file) {
        Ok(text) => toml::from_str::<toml::Table>(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(e) => return Err(e),
    };
    let mut seal = toml::Table::new();
    seal.insert("p12".into(), KEPT_SEAL_P12.into());
    seal.insert("password_file".into(), KEPT_SEAL_PASSWORD.into());
    table.insert(DEMO_TENANT.into(), toml::Value::Table(seal));
    let text = format!(
        "# Seal keys kept in this data directory (written by `paraph serve --demo`); the\n\
         # settings' [seals.TENANT] win over these. Paths are relative to this directory.\n{}",
        toml::to_string(&table).map_err(|e| std::io::Error::other(e.to_string()))?
    );
    std::fs::write(file, text)
}

/// Writes a file readable by its owner only (replacing it).
fn write_owner_only(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Tokens issued for the demo users, in the order printed.
pub struct DemoInfo {
    /// (user, token, token id).
    pub tokens: Vec<(String, String, String)>,
}

fn ignore_exists<T>(r: Result<T, ServiceError>) -> Result<Option<T>, ServiceError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(ServiceError::Domain(DomainError::AlreadyExists(_))) => Ok(None),
        Err(e) => Err(e),
    }
}

fn read(certs: &Path, file: &str) -> Result<Vec<u8>, ServiceError> {
    std::fs::read(certs.join(file))
        .map_err(|e| ServiceError::Internal(format!("{}: {e}", certs.join(file).display())))
}

fn name(s: &str) -> Result<UserName, ServiceError> {
    Ok(UserName::parse(s)?)
}

/// Creates (or refreshes) the demo tenant and issues fresh tokens.
pub async fn setup(svc: &Paraph, certs: &Path) -> Result<DemoInfo, ServiceError> {
    let tenant = TenantId::parse(DEMO_TENANT)?;
    ignore_exists(
        svc.create_tenant(
            &Principal::Operator { token: None },
            tenant.clone(),
            "Commune de Démo (test PKI)".into(),
            name("demo-admin")?,
            None,
        )
        .await,
    )?;
    let admin = Caller {
        tenant: tenant.clone(),
        name: UserName::operator(),
        roles: vec![Role::Admin, Role::Auditor],
        operator: true,
    };
    for (user, _, _) in OFFICERS {
        ignore_exists(
            svc.create_user(
                &admin,
                name(user)?,
                String::new(),
                vec![Role::Officer],
                None,
            )
            .await,
        )?;
    }
    ignore_exists(
        svc.create_user(
            &admin,
            name("finance")?,
            "Logiciel financier".into(),
            vec![Role::Submitter],
            None,
        )
        .await,
    )?;
    let levels = TEST_POLICY_LEVELS
        .iter()
        .map(|(oid, level)| ((*oid).to_owned(), *level))
        .collect();
    svc.set_trust(
        &admin,
        TrustInput {
            anchors: vec![read(certs, TEST_ANCHOR)?],
            intermediates: vec![read(certs, TEST_INTERMEDIATE)?],
            crls: vec![read(certs, TEST_CRLS)?],
            policy_levels: levels,
            signature_policy: None,
        },
        None,
    )
    .await?;
    for (user, stem, _) in OFFICERS {
        svc.bind_certificate(
            &admin,
            name(user)?,
            read(certs, &format!("{stem}.cert.pem"))?,
            None,
        )
        .await?;
    }
    let circuits = svc.list_circuits(&admin).await?;
    if !circuits.iter().any(|c| c.name.as_str() == DEMO_CIRCUIT) {
        let step = |kind, actors: &[&str], level: Option<u32>| -> Result<StepDef, ServiceError> {
            Ok(StepDef {
                kind,
                actors: actors
                    .iter()
                    .map(|a| name(a).map(ActorRef::User))
                    .collect::<Result<_, _>>()?,
                mode: Mode::All,
                condition: None,
                level: level.map(RgsLevel::new).transpose()?,
                deadline_secs: None,
                fallback: None,
                escalate: Default::default(),
                claimed_role: None,
                pdf: Default::default(),
            })
        };
        svc.create_circuit(
            &admin,
            CircuitSpec {
                name: CircuitName::parse(DEMO_CIRCUIT)?,
                fallback: None,
                steps: vec![
                    step(StepKind::Visa, &["carol"], None)?,
                    step(StepKind::Signature, &["alice"], Some(2))?,
                    step(StepKind::Seal, &[], Some(2))?,
                ],
            },
            None,
        )
        .await?;
    }
    let mut tokens = Vec::new();
    for user in ["finance", "carol", "alice", "bob"] {
        let t = svc.issue_token(&admin, name(user)?, None).await?;
        tokens.push((user.to_owned(), t.secret, t.id.to_string()));
    }
    Ok(DemoInfo { tokens })
}

/// The instructions printed at a demo start.
pub fn instructions(info: &DemoInfo, certs: &Path) -> String {
    let token = |u: &str| {
        info.tokens
            .iter()
            .find(|(n, _, _)| n == u)
            .map(|(_, t, _)| t.as_str())
            .unwrap_or("?")
    };
    let mut out = String::new();
    out.push_str("\nDemo tenant 'demo' is ready: it trusts the TEST PKI in certs-test/ (never real certificates).\n");
    out.push_str(
        "Fresh tokens for this start (earlier ones stay valid until revoked: \
         paraph admin token revoke ID):\n",
    );
    for (u, t, id) in &info.tokens {
        let role = OFFICERS
            .iter()
            .find(|(n, _, _)| n == u)
            .map(|(_, stem, what)| format!("officer, {what}, certificate {stem}"))
            .unwrap_or_else(|| "submitter".into());
        out.push_str(&format!("  {u:<8} {t}   ({role}; token id {id})\n"));
    }
    let c = certs.display();
    out.push_str(&format!(
        "Circuit 'demo': visa by carol -> signature by alice (RGS **) -> seal of the commune.\n\
         Try, in another terminal (PKCS#12 passphrase: {P12_PASSWORD}):\n\
         \x20 ID=$(paraph submit README.md --type MANDATE --circuit demo --title 'Mandat 2026-001' --meta amount=1200.50 --token {fin})\n\
         \x20 paraph approve $ID --token {carol}\n\
         \x20 PARAPH_P12_PASSWORD={P12_PASSWORD} paraph sign $ID --p12 {c}/officer-l2-p256.p12 --token {alice}\n\
         \x20 paraph show $ID --token {alice}\n\
         \x20 paraph signatures $ID --out signatures/ --token {alice}\n",
        fin = token("finance"),
        carol = token("carol"),
        alice = token("alice"),
    ));
    out
}

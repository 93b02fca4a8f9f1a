//! The officers' web client in a real browser: `paraph serve --demo` on a loopback port, and
//! headless Chromium (Debian `chromium`) driven through the page by `web/tests/e2e.mjs`
//! (playwright-core, installed by `npm ci` in `web/`): sign-in, inbox, live update, carol's
//! visa, a rejection with its reason, alice's signature with her PKCS#12 in the page (a wrong
//! passphrase first) up to the seal, a PDF contract shown inline and signed in the page (PAdES),
//! another tenant's document not found, a delegated document marked in the delegate's inbox
//! and approved in a batch; batches of visas and signatures with their progress; a submitter's
//! page (his documents newest first with their progress, a PDF uploaded from the page and
//! followed live, withdrawn from his list, the state filter) and a withdrawal by id; an
//! administrator's read-only pages with a circuit's TOML; a PES flow's bordereaux as a table;
//! an auditor's events and evidence bundle (verified offline with `paraph verify-bundle`);
//! keyboard sign-in, labels, Paris time, 200 % zoom. Screenshots of the inbox and of a document
//! page go to `target/web-screenshots/` for reviewers.

mod common;

use common::cli::{DemoServer, BIN};
use common::{role, Org, TestServer};
use paraph::proto;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const PASSPHRASE: &str = "paraph-test";
/// The whole browser run, bounded.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread")]
async fn an_officer_day_in_the_browser() {
    let web = Path::new(ROOT).join("web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "run `npm ci` in web/ first (the browser tests drive Chromium with playwright-core)"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // Its settings come from its flags and an empty file, never from a `paraph.toml` at the
    // repository root, where the demo runs (it reads `certs-test/` there).
    let mut demo = DemoServer::start(dir, Path::new(ROOT), &common::isolated_config(dir), &[]);
    let (addr, operator) = (demo.addr.clone(), demo.operator.clone());
    // Another tenant on the same platform, with its own officers.
    let platform = TestServer::attach(addr.parse().expect("address"), operator).await;
    let other = Org::create(&platform, "ville-voisine").await;
    // A controller of the demo commune: administrator and auditor (read-only pages).
    let mut op = platform.admin(&platform.operator, Some("demo"));
    op.create_user(proto::CreateUserRequest {
        name: "controle".into(),
        display_name: "Contrôle de gestion".into(),
        roles: vec![role(proto::Role::Admin), role(proto::Role::Auditor)],
        idempotency_key: String::new(),
    })
    .await
    .expect("create the controller");
    let auditor = op
        .issue_token(proto::IssueTokenRequest {
            user: "controle".into(),
            idempotency_key: String::new(),
        })
        .await
        .expect("issue a token")
        .into_inner()
        .token
        .expect("token")
        .token;

    // A circuit PES flows can travel (one ordonnateur signs, no seal), made by the controller.
    let mut pes_step = common::step(
        proto::StepKind::Signature,
        &["alice"],
        proto::StepMode::All,
        0,
    );
    pes_step.level = 2;
    platform
        .circuits(&auditor, None)
        .create_circuit(proto::CreateCircuitRequest {
            name: "mandats-pes".into(),
            fallback: String::new(),
            steps: vec![common::visa(&["carol"]), pes_step],
            idempotency_key: String::new(),
        })
        .await
        .expect("create the PES circuit");

    let shots = Path::new(ROOT).join("target/web-screenshots");
    let mut run = Command::new("node");
    run.arg("tests/e2e.mjs")
        .current_dir(&web)
        .env("PARAPH_WEB_URL", format!("http://{addr}/"))
        .env("PARAPH_WEB_ADDR", &addr)
        .env("PARAPH_WEB_BIN", BIN)
        .env("PARAPH_WEB_SHOTS", &shots)
        .env("PARAPH_WEB_WORK", dir)
        .env(
            "PARAPH_WEB_P12",
            Path::new(ROOT).join("certs-test/officer-l2-p256.p12"),
        )
        .env("PARAPH_WEB_P12_PASSWORD", PASSPHRASE)
        .env("PARAPH_WEB_TOKEN_OTHER", other.token("alice"))
        .env("PARAPH_WEB_TOKEN_AUDITOR", &auditor)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for user in ["finance", "carol", "alice", "bob"] {
        run.env(
            format!("PARAPH_WEB_TOKEN_{}", user.to_uppercase()),
            demo.token(user),
        );
    }
    let child = run
        .spawn()
        .expect("run node (Node.js is needed for the browser tests)");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = tokio::task::spawn_blocking(move || rx.recv_timeout(RUN_TIMEOUT))
        .await
        .expect("join");
    let output = match output {
        Ok(o) => o.expect("wait for node"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("the browser run did not finish within {RUN_TIMEOUT:?}");
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "browser run failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
    );
    assert!(stdout.contains("all browser checks passed"), "{stdout}");
    for shot in [
        "inbox-carol.png",
        "document-completed.png",
        "document-pes.png",
        "submitter.png",
    ] {
        let png = std::fs::read(shots.join(shot)).expect(shot);
        assert!(png.starts_with(b"\x89PNG"), "{shot}");
    }
    // The evidence bundle the auditor downloaded from the page verifies offline.
    let key = proto::audit_service_client::AuditServiceClient::with_interceptor(
        platform.channel(),
        common::auth(&auditor),
    )
    .get_log_key(proto::GetLogKeyRequest {})
    .await
    .expect("log key")
    .into_inner()
    .public_key_pem;
    std::fs::write(dir.join("log-key.pem"), key).expect("write the log key");
    let verified = Command::new(BIN)
        .arg("verify-bundle")
        .arg("--log-key")
        .arg(dir.join("log-key.pem"))
        .arg("--trust")
        .arg(Path::new(ROOT).join("certs-test/root-ca.cert.pem"))
        .arg(dir.join("evidence.json"))
        .output()
        .expect("run verify-bundle");
    assert!(
        verified.status.success(),
        "verify-bundle refused the downloaded bundle:\n{}\n{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    demo.proc.terminate(Duration::from_secs(30));
}

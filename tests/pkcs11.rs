//! `paraph sign --pkcs11` and `paraph token list` against a real PKCS#11 token: SoftHSM2,
//! initialised by each test in its own temporary directory (SOFTHSM2_CONF), with the test PKI's
//! officer keys imported by `softhsm2-util` and their certificates written by OpenSC's
//! `pkcs11-tool`; the real `paraph serve --demo` on a loopback port over a temporary data
//! directory; the signatures checked by `openssl cms -verify` and pyHanko. One login for many
//! documents is counted by OpenSC's PKCS#11 spy module, which logs every call the client makes.
//!
//! SoftHSM2 and OpenSC are required (`.ci/run` installs them): a missing one fails the test with
//! the package to install, it never skips.

mod common;

use common::cli::{Cli, DemoServer, Out};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
const SPY: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so";
const PIN: &str = "4321";
const SO_PIN: &str = "87654321";
const POLICY_L2: &str = "1.3.6.1.4.1.99999.1.1.2";
const POLICY_L3: &str = "1.3.6.1.4.1.99999.1.1.3";

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn need(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install the Debian package {package} (.ci/run does)"
    );
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A SoftHSM2 installation of its own: a config file and a token directory.
struct Hsm {
    conf: PathBuf,
    dir: PathBuf,
}

impl Hsm {
    fn new(dir: &Path) -> Hsm {
        need(SOFTHSM, "softhsm2");
        need("/usr/bin/pkcs11-tool", "opensc");
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).expect("token dir");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("write softhsm2.conf");
        Hsm {
            conf,
            dir: dir.to_owned(),
        }
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SOFTHSM2_CONF", &self.conf).stdin(Stdio::null());
        c
    }

    /// A new token labelled `label` with the user PIN [`PIN`].
    fn init_token(&self, label: &str) {
        run_ok(
            self.cmd("softhsm2-util").args([
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                PIN,
                "--so-pin",
                SO_PIN,
            ]),
            "softhsm2-util --init-token",
        );
    }

    /// Imports certs-test/`stem`'s key and certificate under `label` and `id` (hex).
    fn import(&self, token: &str, stem: &str, label: &str, id: &str) {
        let key = Path::new(ROOT).join(format!("certs-test/{stem}.key.pem"));
        run_ok(
            self.cmd("softhsm2-util").args([
                "--import",
                s(&key),
                "--token",
                token,
                "--label",
                label,
                "--id",
                id,
                "--pin",
                PIN,
            ]),
            "softhsm2-util --import",
        );
        let der = self.dir.join(format!("{stem}.cert.der"));
        run_ok(
            Command::new("openssl")
                .args(["x509", "-outform", "DER", "-in"])
                .arg(Path::new(ROOT).join(format!("certs-test/{stem}.cert.pem")))
                .arg("-out")
                .arg(&der),
            "openssl x509",
        );
        run_ok(
            self.cmd("pkcs11-tool").args([
                "--module",
                SOFTHSM,
                "--token-label",
                token,
                "--login",
                "--pin",
                PIN,
                "--write-object",
                s(&der),
                "--type",
                "cert",
                "--id",
                id,
                "--label",
                label,
            ]),
            "pkcs11-tool --write-object",
        );
    }
}

/// The demo server (tenant `demo`, officers alice/bob/carol bound to their TEST certificates)
/// and the tokens it printed.
struct Demo {
    _server: DemoServer,
    cli: Cli,
    operator: String,
    finance: String,
    alice: String,
    bob: String,
    dir: PathBuf,
    hsm: Hsm,
}

impl Demo {
    fn start(tmp: &Path) -> Demo {
        let hsm = Hsm::new(tmp);
        // Its own settings: the PES policy hash, which signing a PES flow requires.
        let config = tmp.join("paraph.toml");
        std::fs::write(
            &config,
            "[pes]\npolicy_hash = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n",
        )
        .expect("write paraph.toml");
        let certs = Path::new(ROOT).join("certs-test");
        let demo = DemoServer::start(
            tmp,
            tmp,
            &config,
            &["--certs", certs.to_str().expect("UTF-8 path")],
        );
        let d = Demo {
            cli: Cli {
                dir: tmp.to_owned(),
                addr: demo.addr.clone(),
            },
            operator: demo.operator.clone(),
            finance: demo.token("finance"),
            alice: demo.token("alice"),
            bob: demo.token("bob"),
            _server: demo,
            dir: tmp.to_owned(),
            hsm,
        };
        // A circuit of one signature step for alice, no seal: documents wait for her at once.
        let circuit = tmp.join("direct.toml");
        std::fs::write(
            &circuit,
            "name = \"direct\"\n[[steps]]\nkind = \"signature\"\nactors = [\"alice\"]\nlevel = 2\n",
        )
        .expect("circuit file");
        d.op(&["circuit", "create", "--file", s(&circuit)]).ok();
        d
    }

    /// `paraph ARGS` as the operator, in the demo tenant.
    fn op(&self, args: &[&str]) -> Out {
        let mut v = args.to_vec();
        v.extend(["--tenant", "demo"]);
        self.run(&self.operator, &[], &v)
    }

    /// `paraph ARGS` as the holder of `token`, in the demo tenant, with SoftHSM2's config and
    /// `env`.
    fn run(&self, token: &str, env: &[(&str, &str)], args: &[&str]) -> Out {
        let mut cmd = self.cli.command(token, args);
        cmd.env("PARAPH_TENANT", "demo")
            .env("SOFTHSM2_CONF", &self.hsm.conf);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let what = format!("paraph {}", args.join(" "));
        let out = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("run paraph");
        Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            what,
        }
    }

    /// `paraph sign ARGS --pkcs11 SOFTHSM` with the PIN in the environment.
    fn sign(&self, token: &str, args: &[&str]) -> Out {
        let mut v = args.to_vec();
        v.extend(["--pkcs11", SOFTHSM]);
        self.run(token, &[("PARAPH_PKCS11_PIN", PIN)], &v)
    }

    /// Submits a document (as finance) to `circuit`; returns its id.
    fn submit(&self, circuit: &str, file: &Path, title: &str) -> String {
        self.run(
            &self.finance,
            &[],
            &[
                "submit",
                s(file),
                "--type",
                "MANDATE",
                "--circuit",
                circuit,
                "--title",
                title,
            ],
        )
        .ok()
        .trim()
        .to_owned()
    }

    /// Writes a document file; returns its path.
    fn document(&self, name: &str, body: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, body).expect("write document");
        p
    }

    /// Writes the signatures of `id` as .p7s files; returns signature 0's path.
    fn p7s(&self, token: &str, id: &str) -> PathBuf {
        let out = self.dir.join(format!("sigs-{id}"));
        self.run(token, &[], &["signatures", id, "--out", s(&out)])
            .ok();
        out.join(format!("{id}-0.p7s"))
    }
}

/// `openssl cms -verify` of a detached signature with the TEST root, its CRLs and a policy.
fn openssl_verify(dir: &Path, sig: &Path, data: &Path, policy: &str) {
    let mut ca = std::fs::read(Path::new(ROOT).join("certs-test/root-ca.cert.pem")).expect("root");
    ca.extend(std::fs::read(Path::new(ROOT).join("certs-test/crls.pem")).expect("crls"));
    let ca_file = dir.join("ca-and-crls.pem");
    std::fs::write(&ca_file, ca).expect("CA file");
    let o = Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
        .arg(sig)
        .arg("-content")
        .arg(data)
        .arg("-CAfile")
        .arg(&ca_file)
        .arg("-certfile")
        .arg(Path::new(ROOT).join("certs-test/signing-ca.cert.pem"))
        .args([
            "-purpose",
            "any",
            "-crl_check_all",
            "-explicit_policy",
            "-policy",
        ])
        .arg(policy)
        .args(["-out", "/dev/null"])
        .output()
        .expect("run openssl");
    assert!(
        o.status.success(),
        "openssl cms -verify {}: {}",
        sig.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// pyHanko's detached CMS validation (signing-certificate-v2, nonRepudiation, hard-fail
/// revocation with the TEST CRLs, no fetching).
fn pyhanko_verify(sig: &Path, data: &Path) {
    let script = r#"
import asyncio, sys
from asn1crypto import cms, pem, x509, crl
from pyhanko.sign.validation.generic_cms import async_validate_detached_cms
from pyhanko_certvalidator import ValidationContext
def load(path, kind):
    return [kind.load(der) for _t, _h, der in pem.unarmor(open(path, 'rb').read(), multiple=True)]
root = load('certs-test/root-ca.cert.pem', x509.Certificate)[0]
inter = load('certs-test/signing-ca.cert.pem', x509.Certificate)[0]
crls = load('certs-test/crls.pem', crl.CertificateList)
sd = cms.ContentInfo.load(open(sys.argv[1], 'rb').read())['content']
data = open(sys.argv[2], 'rb').read()
vc = ValidationContext(trust_roots=[root], other_certs=[inter], crls=crls, allow_fetching=False, revocation_mode='hard-fail')
st = asyncio.run(async_validate_detached_cms(data, sd, signer_validation_context=vc))
print(st.summary())
sys.exit(0 if (st.intact and st.valid and st.trusted) else 1)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(sig)
        .arg(data)
        .current_dir(ROOT)
        .output()
        .expect("run python3 (pyHanko)");
    assert!(
        out.status.success(),
        "pyHanko refuses {}: {}{}",
        sig.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The C_Login calls in a PKCS#11 spy log.
fn logins(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("C_Login"))
        .count()
}

#[test]
fn an_officer_signs_a_mandate_with_the_key_on_his_token_and_openssl_and_pyhanko_validate_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = Demo::start(tmp.path());
    d.hsm.init_token("alice-card");
    d.hsm
        .import("alice-card", "officer-l2-p256", "signature", "01");

    let doc = d.document("mandate.txt", &"Mandat 2026-001: 1200.50 EUR\n".repeat(50));
    let id = d.submit("direct", &doc, "Mandat 2026-001");
    // One key on the token: no label needed. The PIN never shows.
    let out = d.sign(&d.alice, &["sign", &id, "--json"]);
    assert!(!out.stdout.contains(PIN) && !out.stderr.contains(PIN));
    let signed = out.json();
    assert_eq!(signed["state"], "completed", "{signed}");
    assert_eq!(signed["signature"]["signer"], "alice");
    assert_eq!(signed["signature"]["level"], 2);

    let sig = d.p7s(&d.alice, &id);
    openssl_verify(&d.dir, &sig, &doc, POLICY_L2);
    pyhanko_verify(&sig, &doc);
    // The validators are not blind: other data fails.
    let other = d.document("other.txt", "not the mandate\n");
    let o = Command::new("openssl")
        .args([
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-noverify",
            "-in",
        ])
        .arg(&sig)
        .arg("-content")
        .arg(&other)
        .args(["-out", "/dev/null"])
        .output()
        .expect("openssl");
    assert!(!o.status.success(), "openssl accepted other data");

    // The server validates it too.
    let report = d.run(
        &d.alice,
        &[],
        &["validate", "--data", s(&doc), "--signature", s(&sig)],
    );
    assert!(report.ok().contains("TOTAL_PASSED"), "{}", report.stdout);
}

#[test]
fn fifty_documents_are_signed_with_one_pin_and_one_login() {
    need(SPY, "opensc");
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = Demo::start(tmp.path());
    d.hsm.init_token("alice-card");
    d.hsm
        .import("alice-card", "officer-l2-p256", "signature", "01");
    let mut docs = Vec::new();
    for i in 0..50 {
        let f = d.document(&format!("m{i}.txt"), &format!("Mandat {i}: {i}00.00 EUR\n"));
        docs.push((d.submit("direct", &f, &format!("Mandat {i}")), f));
    }
    // The spy module sits between paraph and SoftHSM2 and logs every PKCS#11 call.
    let spy_log = d.dir.join("spy.log");
    let out = d.run(
        &d.alice,
        &[
            ("PARAPH_PKCS11_PIN", PIN),
            ("PKCS11SPY", SOFTHSM),
            ("PKCS11SPY_OUTPUT", s(&spy_log)),
        ],
        &["sign", "--all", "--pkcs11", SPY, "--json"],
    );
    let v = out.json();
    assert_eq!(v["signed"].as_array().map(Vec::len), Some(50), "{v}");
    assert_eq!(v["failed"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(logins(&spy_log), 1, "one C_Login for fifty documents");
    let signs = std::fs::read_to_string(&spy_log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("C_SignInit"))
        .count();
    assert_eq!(signs, 50, "one signature operation per document");
    // Not on a terminal: one progress line per document on stderr, no bar redraws.
    assert!(!out.stderr.contains('\r'), "{}", out.stderr);
    for (id, f) in docs.iter().step_by(17) {
        let sig = d.p7s(&d.alice, id);
        openssl_verify(&d.dir, &sig, f, POLICY_L2);
    }
    let (id, f) = &docs[49];
    pyhanko_verify(&d.p7s(&d.alice, id), f);
}

#[test]
fn a_wrong_pin_stops_at_once_says_the_tries_are_low_and_is_never_retried() {
    need(SPY, "opensc");
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = Demo::start(tmp.path());
    d.hsm.init_token("alice-card");
    d.hsm
        .import("alice-card", "officer-l2-p256", "signature", "01");
    let f = d.document("m.txt", "Mandat\n");
    let id = d.submit("direct", &f, "Mandat");
    let f2 = d.document("m2.txt", "Mandat 2\n");
    d.submit("direct", &f2, "Mandat 2");
    let spy_log = d.dir.join("spy.log");
    let out = d.run(
        &d.alice,
        &[
            ("PARAPH_PKCS11_PIN", "9999"),
            ("PKCS11SPY", SOFTHSM),
            ("PKCS11SPY_OUTPUT", s(&spy_log)),
        ],
        &["sign", "--all", "--pkcs11", SPY],
    );
    out.fails(4, &["wrong PIN", "alice-card", "not retried"]);
    // SoftHSM2 raises CKF_USER_PIN_COUNT_LOW after a wrong PIN: the message says so.
    assert!(out.stderr.contains("few tries left"), "{}", out.stderr);
    assert!(!out.stderr.contains("9999"), "the PIN was printed");
    assert_eq!(logins(&spy_log), 1, "a wrong PIN is tried once");
    // Nothing was signed.
    let shown = d.run(&d.alice, &[], &["show", &id, "--json"]).json();
    assert_eq!(shown["state"], "in_progress", "{shown}");
    // The right PIN then works.
    d.sign(&d.alice, &["sign", &id]).ok();
}

#[test]
fn every_token_error_says_what_to_do_with_its_exit_code() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = Demo::start(tmp.path());
    let f = d.document("m.txt", "Mandat\n");
    let id = d.submit("direct", &f, "Mandat");

    // No initialised token yet: "no token present" (not found, 3).
    d.sign(&d.alice, &["sign", &id])
        .fails(3, &["no token present"]);

    d.hsm.init_token("alice-card");
    d.hsm
        .import("alice-card", "officer-l2-p256", "signature", "01");
    // The module: missing, or a file that is no PKCS#11 module (usage, 2).
    d.run(
        &d.alice,
        &[("PARAPH_PKCS11_PIN", PIN)],
        &["sign", &id, "--pkcs11", "/nonexistent/opensc-pkcs11.so"],
    )
    .fails(
        2,
        &[
            "/nonexistent/opensc-pkcs11.so",
            "not found",
            "opensc-pkcs11.so",
        ],
    );
    // Local errors come before the server is reached: the same with no server there.
    d.run(
        &d.alice,
        &[("PARAPH_PKCS11_PIN", PIN)],
        &[
            "sign",
            &id,
            "--pkcs11",
            "/nonexistent/opensc-pkcs11.so",
            "--addr",
            "http://127.0.0.1:1",
        ],
    )
    .fails(2, &["not found"]);
    let not_module = Path::new(ROOT).join("Cargo.toml");
    d.run(
        &d.alice,
        &[("PARAPH_PKCS11_PIN", PIN)],
        &["sign", &id, "--pkcs11", s(&not_module)],
    )
    .fails(2, &["not a PKCS#11 module"]);
    // The module from the environment works like --pkcs11.
    let none = d.run(
        &d.alice,
        &[
            ("PARAPH_PKCS11_PIN", PIN),
            ("PARAPH_PKCS11_MODULE", "/nonexistent/libvendor.so"),
        ],
        &["sign", &id],
    );
    none.fails(2, &["/nonexistent/libvendor.so", "not found"]);
    // Neither a PIN nor a terminal: a usage error naming the variable, no hang.
    d.run(&d.alice, &[], &["sign", &id, "--pkcs11", SOFTHSM])
        .fails(2, &["PARAPH_PKCS11_PIN"]);
    // Neither --p12 nor --pkcs11.
    d.run(&d.alice, &[], &["sign", &id])
        .fails(2, &["--p12", "--pkcs11"]);
    // Another token label, another slot, another key label or id: not found (3).
    d.sign(&d.alice, &["sign", &id, "--token-label", "bob-card"])
        .fails(3, &["bob-card", "alice-card"]);
    d.sign(&d.alice, &["sign", &id, "--slot", "424242"])
        .fails(3, &["no slot 424242"]);
    d.sign(&d.alice, &["sign", &id, "--key-label", "authentication"])
        .fails(3, &["no key with label \"authentication\"", "signature"]);
    d.sign(&d.alice, &["sign", &id, "--key-id", "02"])
        .fails(3, &["no key with id 02"]);
    // A key whose certificate is bound to nobody: the server's NOT_BOUND (conflict, 5), with
    // what to do.
    d.hsm
        .import("alice-card", "officer-l3-rsa2048", "other", "02");
    d.sign(&d.alice, &["sign", &id, "--key-label", "other"])
        .fails(5, &["NOT_BOUND", "bind-cert"]);
    // A key not allowed to sign (CKA_SIGN false): not allowed (4).
    set_sign_false(&d.hsm, "alice-card", "other");
    d.sign(&d.alice, &["sign", &id, "--key-id", "02"])
        .fails(4, &["not allowed to sign", "other"]);
    // The right key still signs.
    let signed = d
        .sign(&d.alice, &["sign", &id, "--key-id", "01", "--json"])
        .json();
    assert_eq!(signed["state"], "completed");
}

/// Sets CKA_SIGN to false on the private key labelled `label` (as an authentication-only key
/// of a real card has it), through the PKCS#11 API itself.
fn set_sign_false(hsm: &Hsm, token: &str, label: &str) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::object::{Attribute, ObjectClass};
    use cryptoki::session::UserType;
    // SoftHSM2 reads SOFTHSM2_CONF when it is initialised: set it for this process only.
    std::env::set_var("SOFTHSM2_CONF", &hsm.conf);
    let ctx = Pkcs11::new(SOFTHSM).expect("load SoftHSM2");
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    let slot = ctx
        .get_slots_with_initialized_token()
        .expect("slots")
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|t| t.label().trim() == token)
        })
        .expect("the token");
    let session = ctx.open_rw_session(slot).expect("session");
    session
        .login(UserType::User, Some(&PIN.to_owned().into()))
        .expect("login");
    let keys = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .expect("find");
    assert_eq!(keys.len(), 1);
    session
        .update_attributes(keys[0], &[Attribute::Sign(false)])
        .expect("set CKA_SIGN false");
}

#[test]
fn with_two_keys_on_a_token_the_one_bound_to_the_officer_is_chosen_else_a_label_is_required() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = Demo::start(tmp.path());
    d.hsm.init_token("alice-card");
    d.hsm
        .import("alice-card", "officer-l2-p256", "ec-signature", "01");
    d.hsm
        .import("alice-card", "officer-l2-rsa3072", "rsa-signature", "02");
    let f1 = d.document("m1.txt", "Mandat 1\n");
    let id1 = d.submit("direct", &f1, "Mandat 1");

    // `token list`: both keys, their subjects, policies, levels, types, and which is bound.
    let list = d
        .run(
            &d.alice,
            &[("PARAPH_PKCS11_PIN", PIN)],
            &["token", "list", "--pkcs11", SOFTHSM, "--json"],
        )
        .json();
    let slots = list["slots"].as_array().expect("slots");
    let card = slots
        .iter()
        .find(|s| s["token"]["label"] == "alice-card")
        .unwrap_or_else(|| panic!("{list}"));
    let certs = card["certificates"].as_array().expect("certificates");
    assert_eq!(certs.len(), 2, "{card}");
    let ec = certs
        .iter()
        .find(|c| c["label"] == "ec-signature")
        .expect("ec");
    let rsa = certs
        .iter()
        .find(|c| c["label"] == "rsa-signature")
        .expect("rsa");
    assert_eq!(ec["key_type"], "EC P-256");
    assert_eq!(rsa["key_type"], "RSA 3072");
    assert_eq!(ec["bound_to_you"], true);
    assert_eq!(rsa["bound_to_you"], false);
    assert_eq!(ec["level"], 2);
    assert_eq!(ec["can_sign"], true);
    assert!(
        ec["subject"]
            .as_str()
            .is_some_and(|s| s.contains("CN=TEST")),
        "{ec}"
    );
    assert!(
        ec["policies"]
            .as_array()
            .is_some_and(|p| p.iter().any(|o| o == POLICY_L2)),
        "{ec}"
    );
    let text = d.run(
        &d.alice,
        &[("PARAPH_PKCS11_PIN", PIN)],
        &["token", "list", "--pkcs11", SOFTHSM],
    );
    for needle in [
        "alice-card",
        "ec-signature",
        "rsa-signature",
        "EC P-256",
        "RSA 3072",
        "bound to you",
        "RGS level",
    ] {
        assert!(text.ok().contains(needle), "{needle}: {}", text.stdout);
    }

    // Only the P-256 certificate is bound to alice: chosen without a label.
    let signed = d.sign(&d.alice, &["sign", &id1, "--json"]).json();
    assert_eq!(signed["state"], "completed", "{signed}");
    let sig1 = d.p7s(&d.alice, &id1);
    openssl_verify(&d.dir, &sig1, &f1, POLICY_L2);

    // Once both are bound, a label is required; with it, the RSA key signs.
    let rsa_cert = Path::new(ROOT).join("certs-test/officer-l2-rsa3072.cert.pem");
    d.op(&["admin", "user", "bind-cert", "alice", s(&rsa_cert)])
        .ok();
    let f2 = d.document("m2.txt", "Mandat 2\n");
    let id2 = d.submit("direct", &f2, "Mandat 2");
    d.sign(&d.alice, &["sign", &id2])
        .fails(2, &["2 keys", "bound to you", "--key-label"]);
    let signed = d
        .sign(
            &d.alice,
            &["sign", &id2, "--key-label", "rsa-signature", "--json"],
        )
        .json();
    assert_eq!(signed["state"], "completed", "{signed}");
    let sig2 = d.p7s(&d.alice, &id2);
    openssl_verify(&d.dir, &sig2, &f2, POLICY_L2);
    pyhanko_verify(&sig2, &f2);
}

#[test]
fn a_delegate_signs_with_his_own_token_on_behalf_of_the_absent_officer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = Demo::start(tmp.path());
    // Bob's card holds his P-384 key (RGS ***) and a second, unbound key.
    d.hsm.init_token("bob-card");
    d.hsm
        .import("bob-card", "officer-l3-p384", "bob-signature", "0a");
    d.hsm.import("bob-card", "officer3-l3-p256", "spare", "0b");
    // Alice is away; bob acts for her.
    d.run(
        &d.alice,
        &[],
        &[
            "absence",
            "set",
            "--from",
            "2026-01-01",
            "--to",
            "2027-12-01",
            "--delegate",
            "bob",
        ],
    )
    .ok();
    let f = d.document("m.txt", "Mandat for the delegate\n");
    let id = d.submit("direct", &f, "Mandat delegated");
    let out = d.sign(&d.bob, &["sign", "--all", "--json"]);
    let v = out.json();
    assert_eq!(v["signed"].as_array().map(Vec::len), Some(1), "{v}");
    let shown = d.run(&d.bob, &[], &["show", &id, "--json"]).json();
    assert_eq!(shown["state"], "completed", "{shown}");
    let text = d.run(&d.bob, &[], &["show", &id]);
    assert!(text.ok().contains("on behalf of alice"), "{}", text.stdout);
    let sig = d.p7s(&d.bob, &id);
    openssl_verify(&d.dir, &sig, &f, POLICY_L3);
    pyhanko_verify(&sig, &f);
}

/// A one-page PDF with a correct cross-reference table.
fn small_pdf() -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let stream = "BT /F1 12 Tf 72 720 Td (Contrat de maintenance) Tj ET";
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// A PES V2 flow of two bordereaux with an Id each.
fn small_pes() -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PES_Aller>\n");
    x.push_str("  <EnTetePES><DteStr V=\"2026-12-01\"/><IdPost V=\"012345\"/><LibelleColBud V=\"Commune de Testville\"/><IdColl V=\"21690123400017\"/></EnTetePES>\n");
    x.push_str("  <PES_DepenseAller>\n    <EnTeteDepense><IdVer V=\"2\"/><InfoDematerialisee V=\"0\"/></EnTeteDepense>\n");
    for (b, id) in ["B1", "B2"].iter().enumerate() {
        x.push_str(&format!("    <Bordereau Id=\"{id}\">\n      <BlocBordereau><Exer V=\"2026\"/><IdBord V=\"{}\"/><DteBordEm V=\"2026-12-01\"/><TypBord V=\"01\"/><NbrPce V=\"1\"/><MtCumulAnnuel V=\"0\"/><MtBordHT V=\"120.50\"/></BlocBordereau>\n", b + 1));
        x.push_str("      <Piece><BlocPiece><InfoPce><IdPce V=\"1\"/><TypPce V=\"01\"/><Obj V=\"Fournitures\"/></InfoPce></BlocPiece><LigneDePiece><BlocLignePiece><InfoLignePiece><IdLigne V=\"1\"/><Nature V=\"6067\"/><MtHT V=\"120.50\"/></InfoLignePiece></BlocLignePiece><Tiers><InfoTiers><Nom V=\"ACME\"/></InfoTiers></Tiers></LigneDePiece></Piece>\n");
        x.push_str("    </Bordereau>\n");
    }
    x.push_str("  </PES_DepenseAller>\n</PES_Aller>\n");
    x
}

#[test]
fn pes_flows_and_pdf_contracts_are_signed_through_the_token_too() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = Demo::start(tmp.path());
    d.hsm.init_token("alice-card");
    d.hsm
        .import("alice-card", "officer-l2-p256", "signature", "01");
    d.hsm
        .import("alice-card", "officer-l2-rsa3072", "rsa", "02");
    let rsa_cert = Path::new(ROOT).join("certs-test/officer-l2-rsa3072.cert.pem");
    d.op(&["admin", "user", "bind-cert", "alice", s(&rsa_cert)])
        .ok();

    // PES: one XAdES signature per bordereau, by the EC key (r||s in the XML) and the RSA one;
    // xmlsec1 verifies each.
    for key in ["signature", "rsa"] {
        let pes = d.document(&format!("pes-{key}.xml"), &small_pes());
        let id = d.submit("direct", &pes, "Bordereaux");
        let shown = d.run(&d.alice, &[], &["show", &id, "--json"]).json();
        assert_eq!(shown["signature_format"], "xades-pes", "{shown}");
        d.sign(&d.alice, &["sign", &id, "--key-label", key]).ok();
        let signed = d.dir.join(format!("signed-{key}.xml"));
        d.run(&d.alice, &[], &["content", &id, "--out", s(&signed)])
            .ok();
        for b in ["B1", "B2"] {
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
                    &format!("//*[local-name()='Signature'][@Id='{b}_SIG']"),
                ])
                .arg(&signed)
                .current_dir(ROOT)
                .output()
                .expect("xmlsec1 is installed (.ci/run installs it)");
            assert!(
                out.status.success(),
                "xmlsec1 refuses {b} signed by {key}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    // PDF: a PAdES signature by the EC key; pyHanko validates the signed file.
    let pdf = d.dir.join("contrat.pdf");
    std::fs::write(&pdf, small_pdf()).expect("write pdf");
    let id = d.submit("direct", &pdf, "Contrat");
    let shown = d.run(&d.alice, &[], &["show", &id, "--json"]).json();
    assert_eq!(shown["signature_format"], "pades", "{shown}");
    d.sign(&d.alice, &["sign", &id, "--key-id", "01"]).ok();
    let signed = d.dir.join("contrat-signed.pdf");
    d.run(&d.alice, &[], &["content", &id, "--out", s(&signed)])
        .ok();
    let out = Command::new("pyhanko")
        .args([
            "sign",
            "validate",
            "--pretty-print",
            "--trust",
            "certs-test/root-ca.cert.pem",
        ])
        .args([
            "--trust-replace",
            "--other-certs",
            "certs-test/signing-ca.cert.pem",
        ])
        .arg("--no-revocation-check")
        .arg(&signed)
        .current_dir(ROOT)
        .output()
        .expect("pyhanko is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "pyHanko refuses the PDF signed through the token: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

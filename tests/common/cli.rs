//! The real `paraph` binary driven from tests: a server on a loopback port over a temporary
//! data directory (with the storage engine of `PARAPH_TEST_ENGINE`), and client commands run
//! with a clean environment and a bounded wait.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_paraph");
/// Longest wait for any one CLI command or server line.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// `--engine NAME` when the tests run on a chosen engine.
pub fn engine_args() -> Vec<String> {
    match super::test_engine() {
        Some(e) => vec!["--engine".into(), e.to_string()],
        None => Vec::new(),
    }
}

/// The flags that put the data directory `data` on the tests' store: `--store URL` when they
/// run on PostgreSQL (see [`super::test_store_url`]), else `--engine NAME` when they run on a
/// chosen engine. Every command that opens `data` takes them.
pub fn store_args(data: &Path) -> Vec<String> {
    match super::test_store_url(data) {
        Some(url) => vec!["--store".into(), url],
        None => engine_args(),
    }
}

/// `--store URL` when the tests run on PostgreSQL, else nothing: for the commands that open an
/// existing store and find its engine in the data directory (`admin check`, `admin
/// operator-token`), which take no `--engine`.
pub fn existing_store_args(data: &Path) -> Vec<String> {
    match super::test_store_url(data) {
        Some(url) => vec!["--store".into(), url],
        None => Vec::new(),
    }
}

pub fn token_of(v: &Value) -> String {
    v["token"].as_str().expect("token").to_owned()
}

/// A child process killed when dropped (also when the test panics).
pub struct Proc {
    pub child: Child,
}

impl Proc {
    /// Sends SIGTERM and waits (bounded) for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "process {} did not exit within {timeout:?} of SIGTERM",
                self.child.id()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards the lines of a pipe to a channel, from a reader thread.
pub fn lines(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

pub fn next_line(rx: &Receiver<String>, what: &str) -> String {
    rx.recv_timeout(STEP_TIMEOUT)
        .unwrap_or_else(|e| panic!("no {what} line: {e:?}"))
}

/// The result of one CLI run.
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub what: String,
}

impl Out {
    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code,
            Some(0),
            "`{}` failed\nstdout: {}\nstderr: {}",
            self.what,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}): {}", self.what, self.stdout))
    }

    /// Asserts failure with `code` and that stderr mentions every one of `needles`.
    pub fn fails(&self, code: i32, needles: &[&str]) {
        assert_eq!(
            self.code,
            Some(code),
            "`{}`: expected exit code {code}\nstdout: {}\nstderr: {}",
            self.what,
            self.stdout,
            self.stderr
        );
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "`{}`: stderr lacks {n:?}: {}",
                self.what,
                self.stderr
            );
        }
    }
}

pub struct Cli {
    pub dir: PathBuf,
    pub addr: String,
}

impl Cli {
    /// A `paraph` command with a clean environment: only the variables a user would export.
    pub fn command(&self, token: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("PARAPH") {
                cmd.env_remove(k);
            }
        }
        cmd.args(args)
            .current_dir(&self.dir)
            .env("PARAPH_ADDR", &self.addr)
            .env("PARAPH_TENANT", "default")
            .env("PARAPH_TOKEN", token)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `paraph ARGS` as the holder of `token`, with a bounded wait.
    pub fn run(&self, token: &str, args: &[&str]) -> Out {
        let mut cmd = self.command(token, args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn paraph");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let what = format!("paraph {}", args.join(" "));
        let out = match rx.recv_timeout(STEP_TIMEOUT) {
            Ok(o) => o.expect("wait for paraph"),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                panic!("`{what}` did not finish within {STEP_TIMEOUT:?}");
            }
        };
        Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            what,
        }
    }
}

/// Starts `paraph serve` on a loopback port over `dir/data`; returns the process, the operator
/// token printed on first start and the address.
pub fn start_server(dir: &Path) -> (Proc, Receiver<String>, String, String) {
    let data = dir.join("data");
    let server_log = std::fs::File::create(dir.join("server.log")).expect("log file");

    // --- The service: first start prints the operator token, then the address. ---
    let mut server_cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PARAPH") {
            server_cmd.env_remove(k);
        }
    }
    let mut server = Proc {
        child: server_cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .arg("--config")
            .arg(super::isolated_config(dir))
            .args(store_args(&data))
            .arg("--json")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(server_log)
            .spawn()
            .expect("spawn paraph serve"),
    };
    let server_out = lines(server.child.stdout.take().expect("server stdout"));
    let boot: Value =
        serde_json::from_str(&next_line(&server_out, "bootstrap")).expect("bootstrap JSON");
    assert_eq!(boot["tenant"], "default");
    let operator = token_of(&boot);
    let listening = next_line(&server_out, "listening");
    let addr = listening
        .strip_prefix("paraph listening on ")
        .unwrap_or_else(|| panic!("unexpected line {listening:?}"))
        .to_owned();
    (server, server_out, operator, addr)
}

/// Starts `paraph serve` again over an initialised `dir/data` (no bootstrap line): returns the
/// process and the address.
pub fn restart_server(dir: &Path) -> (Proc, Receiver<String>, String) {
    let server_log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("log file");
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PARAPH") {
            cmd.env_remove(k);
        }
    }
    let mut server = Proc {
        child: cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.join("data"))
            .arg("--config")
            .arg(super::isolated_config(dir))
            .args(store_args(&dir.join("data")))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(server_log)
            .spawn()
            .expect("spawn paraph serve"),
    };
    let out = lines(server.child.stdout.take().expect("server stdout"));
    let listening = next_line(&out, "listening");
    let addr = listening
        .strip_prefix("paraph listening on ")
        .unwrap_or_else(|| panic!("unexpected line {listening:?}"))
        .to_owned();
    (server, out, addr)
}

/// A `paraph serve --demo` process: its address, the operator token of its first start and its
/// demo block (one line per demo user: name, token, role, token id).
pub struct DemoServer {
    pub proc: Proc,
    pub out: Receiver<String>,
    pub addr: String,
    pub operator: String,
    pub block: Vec<String>,
}

impl DemoServer {
    /// Starts `paraph serve --demo` over `dir/data` on a loopback port, in `cwd` (where the demo
    /// reads `certs-test/` unless `extra` names `--certs`), with its settings from `config` and
    /// its flags only; its log goes to `dir/server.log`.
    pub fn start(dir: &Path, cwd: &Path, config: &Path, extra: &[&str]) -> DemoServer {
        let log = std::fs::File::create(dir.join("server.log")).expect("log file");
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("PARAPH") {
                cmd.env_remove(k);
            }
        }
        let mut proc = Proc {
            child: cmd
                .args([
                    "serve",
                    "--demo",
                    "--listen",
                    "127.0.0.1:0",
                    "--json",
                    "--data",
                ])
                .arg(dir.join("data"))
                .arg("--config")
                .arg(config)
                .args(store_args(&dir.join("data")))
                .args(extra)
                .current_dir(cwd)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .expect("spawn paraph serve --demo"),
        };
        let out = lines(proc.child.stdout.take().expect("server stdout"));
        let boot: Value =
            serde_json::from_str(&next_line(&out, "bootstrap")).expect("bootstrap JSON");
        let operator = token_of(&boot);
        let mut block = Vec::new();
        let addr = loop {
            let line = next_line(&out, "demo or listening");
            if let Some(a) = line.strip_prefix("paraph listening on ") {
                break a.to_owned();
            }
            block.push(line);
        };
        DemoServer {
            proc,
            out,
            addr,
            operator,
            block,
        }
    }

    /// The token the demo block printed for `user`.
    pub fn token(&self, user: &str) -> String {
        self.block
            .iter()
            .find_map(|l| {
                let mut words = l.split_whitespace();
                (l.starts_with("  ") && words.next() == Some(user))
                    .then(|| words.next())
                    .flatten()
                    .filter(|t| t.starts_with("pph_"))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no token for {user} in the demo block: {:#?}", self.block))
    }
}

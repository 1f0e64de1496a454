//! The official OpenAI Python client (PyPI `openai`, pinned in `tests/python/requirements.txt`) against a running
//! `verinfer devnet --model tiny`: `scripts/python-env` builds (or reuses) the venv, the devnet binary is started on a
//! free port, its endpoint and API key are read from its stdout, and `tests/python` runs under pytest. The suite's
//! output is printed when it fails; the devnet is stopped either way.
//!
//! Never skipped: a missing `python3`, venv module or PyPI access fails this test (`.ci/run` builds the venv first,
//! so CI fails loudly there already).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the devnet may take to print its endpoint and answer `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the whole pytest run may take.
const PYTEST_TIMEOUT: Duration = Duration::from_secs(600);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scripts/python-env` and returns the venv's python.
fn python_env() -> PathBuf {
    let out = Command::new(repo().join("scripts/python-env"))
        .stdin(Stdio::null())
        .output()
        .expect("scripts/python-env runs (bash)");
    assert!(
        out.status.success(),
        "scripts/python-env failed ({}): the OpenAI Python client tests need python3 with venv and PyPI access\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let python = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        python.is_file(),
        "scripts/python-env printed {stdout:?}, not a python path"
    );
    python
}

/// A `verinfer devnet` child process; stopped (SIGTERM, then SIGKILL) on drop.
struct Devnet {
    child: Child,
    /// OpenAI base URL, `http://127.0.0.1:PORT/v1`.
    base_url: String,
    /// `host:port` of the API.
    addr: String,
    key: String,
    /// Everything the devnet printed so far (stdout and stderr), for failure messages.
    log: Arc<Mutex<String>>,
    _data: tempfile::TempDir,
}

/// The first `http://…` URL in `line`, without a trailing `/v1` or punctuation.
fn find_url(line: &str) -> Option<String> {
    let start = line.find("http://")?;
    let url: String = line[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | ')' | '>' | ','))
        .collect();
    let url = url.trim_end_matches('/');
    Some(url.strip_suffix("/v1").unwrap_or(url).to_string())
}

/// The first `sk-…` API key in `line`.
fn find_key(line: &str) -> Option<String> {
    line.split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '=' | ':' | ','))
        .find(|w| w.starts_with("sk-") && w.len() > 10)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string()
        })
}

/// A minimal HTTP/1.0 GET (the root crate has no HTTP client): status code and body.
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

impl Devnet {
    fn start() -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        // Port 0: the devnet binds a free port itself and prints the one in use (no race for a port).
        let mut child = Command::new(env!("CARGO_BIN_EXE_verinfer"))
            .args(["devnet", "--model", "tiny", "--port", "0", "--data-dir"])
            .arg(data.path())
            .current_dir(data.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starts verinfer devnet");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for (stream, tx) in [
            (Box::new(stdout) as Box<dyn Read + Send>, Some(tx)),
            (Box::new(stderr), None),
        ] {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                    if let Some(tx) = &tx {
                        let _ = tx.send(line);
                    }
                }
            });
        }

        let deadline = Instant::now() + START_TIMEOUT;
        let (mut base, mut key) = (None::<String>, None::<String>);
        while base.is_none() || key.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(500))) {
                Ok(line) => {
                    if base.is_none() {
                        base = find_url(&line);
                    }
                    if key.is_none() {
                        key = find_key(&line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    thread::sleep(Duration::from_millis(200));
                    panic!(
                        "verinfer devnet exited before printing its endpoint and key ({:?}):\n{}",
                        child.try_wait(),
                        log.lock().map(|l| l.clone()).unwrap_or_default()
                    );
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "verinfer devnet printed no endpoint and API key within {START_TIMEOUT:?}:\n{}",
                    log.lock().map(|l| l.clone()).unwrap_or_default()
                );
            }
        }
        let base = base.unwrap_or_default();
        let addr = base.trim_start_matches("http://").to_string();
        let devnet = Self {
            child,
            base_url: format!("{base}/v1"),
            addr,
            key: key.unwrap_or_default(),
            log,
            _data: data,
        };
        while http_get(&devnet.addr, "/health").map(|(s, _)| s) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "devnet at {} never answered GET /health with 200:\n{}",
                devnet.addr,
                devnet.log()
            );
            thread::sleep(Duration::from_millis(200));
        }
        devnet
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs pytest on `tests/python` with the devnet's URL and key; returns (success, output).
fn pytest(python: &Path, devnet: &Devnet) -> (bool, String) {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out_path = out_dir.path().join("pytest.log");
    let out = std::fs::File::create(&out_path).expect("log file");
    let mut child = Command::new(python)
        .args([
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-v",
            "-rfEs",
            "--durations=5",
            "--color=no",
        ])
        .arg(repo().join("tests/python"))
        .current_dir(repo())
        .env("VERINFER_BASE_URL", &devnet.base_url)
        .env("VERINFER_API_KEY", &devnet.key)
        // The devnet posts batches within a second and finalizes them 5 s later: receipts must get there.
        .env("VERINFER_EXPECT_FINAL", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("VERINFER_MODEL")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .spawn()
        .expect("runs pytest");
    let deadline = Instant::now() + PYTEST_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("pytest status") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(s) => (s.success(), output),
        None => (
            false,
            format!("{output}\n(pytest killed after {PYTEST_TIMEOUT:?})"),
        ),
    }
}

#[test]
fn official_python_client_against_devnet() {
    let python = python_env();
    let devnet = Devnet::start();
    let (ok, output) = pytest(&python, &devnet);
    let summary = output
        .lines()
        .rev()
        .find(|l| l.contains(" passed") || l.contains(" failed") || l.contains(" error"))
        .unwrap_or("(no pytest summary line)")
        .to_string();
    assert!(
        ok,
        "pytest against verinfer devnet failed: {summary}\n\n--- pytest ---\n{output}\n--- devnet log ---\n{}",
        devnet.log()
    );
    // Nothing may be skipped: every case must run against the devnet.
    assert!(
        summary.contains(" passed")
            && !summary.contains("skipped")
            && !summary.contains("deselected"),
        "pytest did not run every case: {summary}\n{output}"
    );
    println!("pytest (openai client vs verinfer devnet): {summary}");

    // The traffic shows in the devnet's /metrics under the names the Grafana dashboard queries.
    let (status, metrics) = http_get(&devnet.addr, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    for sample in [
        "verinfer_sequencer_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"}",
        "verinfer_sequencer_http_requests_total{route=\"/v1/chat/completions\",status=\"400\"}",
        "verinfer_sequencer_requests_admitted_total{endpoint=",
        "verinfer_sequencer_time_to_first_token_seconds_bucket",
        "verinfer_sequencer_tokens_generated_total",
    ] {
        assert!(
            metrics.contains(sample),
            "/metrics lacks {sample}:\n{metrics}"
        );
    }
}

#[test]
fn devnet_output_parsing() {
    assert_eq!(
        find_url("OpenAI API:  http://127.0.0.1:8080/v1").as_deref(),
        Some("http://127.0.0.1:8080")
    );
    assert_eq!(
        find_url("export OPENAI_BASE_URL=\"http://127.0.0.1:9/v1\"").as_deref(),
        Some("http://127.0.0.1:9")
    );
    assert_eq!(
        find_key("API key:  sk-abc123def456").as_deref(),
        Some("sk-abc123def456")
    );
    assert_eq!(
        find_key("export OPENAI_API_KEY=sk-abc_123-def456.").as_deref(),
        Some("sk-abc_123-def456")
    );
    assert_eq!(find_key("no key here sk-x"), None);
}

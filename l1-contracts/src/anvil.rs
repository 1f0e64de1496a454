//! [`Anvil`]: a local anvil node for tests and the devnet, started from the npm package this crate pins
//! (`@foundry-rs/anvil` 1.7.1, a devDependency in `l1-contracts/package.json`; `npm ci` in `l1-contracts/` installs
//! it) and killed when the handle is dropped.
//!
//! The node listens on a free loopback port (anvil binds port 0 and prints the port it got, so two tests never race
//! for one), runs the Cancun rules the contracts are compiled for (`--hardfork cancun`) and has chain id 31337 and
//! anvil's ten funded development accounts ([`crate::dev`]). [`AnvilBuilder::spawn`] returns once the node answers
//! `eth_chainId`.
//!
//! Which binary runs ([`default_binary`]): `$VERINFER_ANVIL` when set; otherwise the platform binary the npm package
//! installed (`node_modules/@foundry-rs/anvil-<os>-<arch>/bin/anvil`); otherwise the npm wrapper
//! `node_modules/.bin/anvil` (a node script that forwards SIGTERM to the real binary, so it is stopped with SIGTERM,
//! not killed, or the real anvil would outlive it).
//!
//! ```no_run
//! # fn main() -> Result<(), verinfer_l1_contracts::anvil::AnvilError> {
//! let anvil = verinfer_l1_contracts::anvil::Anvil::spawn()?;
//! println!("anvil at {}", anvil.endpoint());
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Environment variable naming an anvil binary to use instead of the npm one.
pub const ANVIL_ENV: &str = "VERINFER_ANVIL";

/// The anvil version the npm package pins.
pub const ANVIL_VERSION: &str = "1.7.1";

/// Output lines kept for error messages.
const KEPT_LINES: usize = 40;

/// Errors starting anvil.
#[derive(Debug, thiserror::Error)]
pub enum AnvilError {
    /// No binary at the expected path.
    #[error(
        "anvil not found at {}: run `npm ci` in l1-contracts/ (installs @foundry-rs/anvil {ANVIL_VERSION}), \
         or set {ANVIL_ENV} to an anvil binary",
        path.display()
    )]
    NotInstalled {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The process could not be started.
    #[error("cannot start anvil ({}): {source}", path.display())]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// anvil exited during startup.
    #[error("anvil exited during startup ({status}); its output:\n{output}")]
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// The last lines it printed.
        output: String,
    },
    /// anvil did not report a port or did not answer JSON-RPC in time.
    #[error("anvil did not come up within {waited:?}: {reason}; its output:\n{output}")]
    Timeout {
        /// How long we waited.
        waited: Duration,
        /// What was missing.
        reason: &'static str,
        /// The last lines it printed.
        output: String,
    },
}

/// The anvil binary [`Anvil::spawn`] runs (see the module docs for the order).
pub fn default_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(ANVIL_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let node_modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules");
    if let Some(platform) = npm_platform() {
        let exe = if cfg!(windows) { "anvil.exe" } else { "anvil" };
        let native = node_modules
            .join("@foundry-rs")
            .join(format!("anvil-{platform}"))
            .join("bin")
            .join(exe);
        if native.is_file() {
            return native;
        }
    }
    node_modules.join(".bin").join("anvil")
}

/// The platform suffix of the npm package's binary packages (`@foundry-rs/anvil-<suffix>`).
fn npm_platform() -> Option<&'static str> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Some("linux-amd64"),
        ("linux", "aarch64") => Some("linux-arm64"),
        ("macos", "x86_64") => Some("darwin-amd64"),
        ("macos", "aarch64") => Some("darwin-arm64"),
        ("windows", "x86_64") => Some("win32-amd64"),
        _ => None,
    }
}

/// Options of a new anvil; [`Anvil::builder`].
#[derive(Debug, Clone)]
pub struct AnvilBuilder {
    binary: Option<PathBuf>,
    port: u16,
    chain_id: u64,
    hardfork: String,
    block_time: Option<u64>,
    args: Vec<String>,
    startup_timeout: Duration,
}

impl Default for AnvilBuilder {
    fn default() -> Self {
        Self {
            binary: None,
            port: 0,
            chain_id: 31337,
            hardfork: "cancun".into(),
            block_time: None,
            args: Vec::new(),
            startup_timeout: Duration::from_secs(30),
        }
    }
}

impl AnvilBuilder {
    /// Runs `binary` instead of [`default_binary`].
    pub fn binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = Some(binary.into());
        self
    }

    /// Listens on `port` (default 0: a free port chosen by the OS).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Chain id (default 31337).
    pub fn chain_id(mut self, chain_id: u64) -> Self {
        self.chain_id = chain_id;
        self
    }

    /// Hardfork (default `cancun`, the contracts' `evmVersion`).
    pub fn hardfork(mut self, hardfork: impl Into<String>) -> Self {
        self.hardfork = hardfork.into();
        self
    }

    /// Mines a block every `seconds` instead of one per transaction.
    pub fn block_time(mut self, seconds: u64) -> Self {
        self.block_time = Some(seconds);
        self
    }

    /// Passes `arg` to anvil as well.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// How long to wait for the node to answer (default 30 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Starts anvil and waits until it answers `eth_chainId`.
    pub fn spawn(self) -> Result<Anvil, AnvilError> {
        let binary = self.binary.clone().unwrap_or_else(default_binary);
        if !binary.is_file() {
            return Err(AnvilError::NotInstalled { path: binary });
        }
        let mut cmd = Command::new(&binary);
        cmd.args(["--host", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--hardfork", &self.hardfork, "--chain-id"])
            .arg(self.chain_id.to_string());
        if let Some(block_time) = self.block_time {
            cmd.args(["--block-time", &block_time.to_string()]);
        }
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| AnvilError::Spawn {
            path: binary.clone(),
            source,
        })?;
        // A native binary is killed directly; the npm wrapper (a node script) is asked to stop, so that it forwards
        // the signal to the anvil it started.
        let wrapper = binary
            .file_name()
            .is_some_and(|n| n == "anvil" || n == "anvil.cmd")
            && binary.parent().is_some_and(|p| p.ends_with(".bin"));
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let (port_tx, port_rx) = mpsc::channel();
        // Drain both pipes for the node's whole life (anvil logs every request; a full pipe would block it).
        if let Some(stdout) = child.stdout.take() {
            drain(stdout, Arc::clone(&output), Some(port_tx));
        }
        if let Some(stderr) = child.stderr.take() {
            drain(stderr, Arc::clone(&output), None);
        }
        let mut anvil = Anvil {
            child,
            port: 0,
            endpoint: String::new(),
            output,
            wrapper,
        };
        let started = Instant::now();
        let port = loop {
            if let Some(status) = anvil.exited() {
                return Err(AnvilError::Exited {
                    status,
                    output: anvil.output(),
                });
            }
            match port_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(port) => break port,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed without a port: anvil is exiting; report its status.
                    std::thread::sleep(Duration::from_millis(100));
                    if let Some(status) = anvil.exited() {
                        return Err(AnvilError::Exited {
                            status,
                            output: anvil.output(),
                        });
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if started.elapsed() > self.startup_timeout {
                return Err(AnvilError::Timeout {
                    waited: self.startup_timeout,
                    reason: "no `Listening on` line",
                    output: anvil.output(),
                });
            }
        };
        anvil.port = port;
        anvil.endpoint = format!("http://127.0.0.1:{port}");
        while !answers_chain_id(port, self.chain_id) {
            if let Some(status) = anvil.exited() {
                return Err(AnvilError::Exited {
                    status,
                    output: anvil.output(),
                });
            }
            if started.elapsed() > self.startup_timeout {
                return Err(AnvilError::Timeout {
                    waited: self.startup_timeout,
                    reason: "no eth_chainId answer",
                    output: anvil.output(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(anvil)
    }
}

/// A running anvil; stopped when dropped. See the module docs.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    port: u16,
    endpoint: String,
    output: Arc<Mutex<VecDeque<String>>>,
    wrapper: bool,
}

impl Anvil {
    /// Options for a new node.
    pub fn builder() -> AnvilBuilder {
        AnvilBuilder::default()
    }

    /// Starts anvil with the defaults: [`default_binary`], a free loopback port, `--hardfork cancun --chain-id
    /// 31337`.
    pub fn spawn() -> Result<Self, AnvilError> {
        AnvilBuilder::default().spawn()
    }

    /// The HTTP JSON-RPC endpoint, `http://127.0.0.1:<port>` (anvil serves WebSocket on the same port).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines anvil printed.
    pub fn output(&self) -> String {
        let lines = self.output.lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        if self.wrapper && cfg!(unix) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if self.exited().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `pipe` line by line into `output` (last [`KEPT_LINES`]); reports the port of `Listening on <addr>:<port>`.
fn drain(
    pipe: impl Read + Send + 'static,
    output: Arc<Mutex<VecDeque<String>>>,
    port_tx: Option<mpsc::Sender<u16>>,
) {
    std::thread::spawn(move || {
        let mut port_tx = port_tx;
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = &port_tx
                && let Some(port) = listening_port(&line)
            {
                let _ = tx.send(port);
                port_tx = None;
            }
            let mut lines = output.lock().unwrap_or_else(|p| p.into_inner());
            if lines.len() == KEPT_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    });
}

fn listening_port(line: &str) -> Option<u16> {
    let addr = line.trim().strip_prefix("Listening on ")?;
    addr.rsplit(':').next()?.trim().parse().ok()
}

/// One blocking `eth_chainId` over HTTP/1.1; true when the node answers with `chain_id`.
fn answers_chain_id(port: u16, chain_id: u64) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains(&format!("\"result\":\"{chain_id:#x}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_line() {
        assert_eq!(listening_port("Listening on 127.0.0.1:41371"), Some(41371));
        assert_eq!(listening_port("  Listening on 127.0.0.1:8545 "), Some(8545));
        assert_eq!(listening_port("Private Keys"), None);
    }

    #[test]
    fn missing_binary_says_how_to_install() {
        let e = Anvil::builder()
            .binary("/nonexistent/node_modules/.bin/anvil")
            .spawn()
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, AnvilError::NotInstalled { .. }));
        assert!(msg.contains("npm ci") && msg.contains(ANVIL_ENV), "{msg}");
    }
}

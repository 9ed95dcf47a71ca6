//! Which artifacts a model created through the API may name. A key that
//! may manage a project must not be able to make the server open any file
//! it can read: local artifacts must lie under one of the operator's
//! artifact directories. Object-store URIs are allowed (the node's
//! credentials decide what they reach); other schemes never parse. A
//! cluster's nodes apply the same policy to every model they are asked to
//! stage, with their own directories, since the files are theirs.

use std::path::{Component, Path, PathBuf};

use greenthread_core::ArtifactUri;
use greenthread_node_runtime::embed::pack;

/// The directories local artifacts may come from.
#[derive(Debug, Clone, Default)]
pub struct ArtifactPolicy {
    /// Directories on this machine, links resolved.
    roots: Vec<PathBuf>,
    /// Absolute directories not on this machine: a cluster scheduler's view
    /// of its nodes' folders (`/models`). A path under one passes here by
    /// name; the node that opens it checks it again, links resolved.
    elsewhere: Vec<PathBuf>,
}

impl ArtifactPolicy {
    /// Allows files under `roots`: those that exist here with symlinks
    /// resolved, absolute ones that do not by name.
    pub fn new(roots: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut policy = Self::default();
        for root in roots {
            match root.canonicalize() {
                Ok(resolved) => policy.roots.push(resolved),
                Err(_) if root.is_absolute() => policy.elsewhere.push(root),
                Err(_) => {}
            }
        }
        policy
    }

    /// # Errors
    /// A message safe to show, naming the allowed directories' count, not their paths.
    pub fn check(&self, artifact: &ArtifactUri) -> Result<(), String> {
        let Some(path) = artifact.local_path() else { return Ok(()) };
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err("artifact paths may not contain `..`".into());
        }
        // A folder that is not here passes by name; one that has appeared
        // here since is judged like the others, links resolved.
        let mut roots = self.roots.clone();
        for root in &self.elsewhere {
            match root.canonicalize() {
                Ok(resolved) => roots.push(resolved),
                Err(_) if path.is_absolute() && path.starts_with(root) => return Ok(()),
                Err(_) => {}
            }
        }
        // A file that does not exist yet is judged by its directory.
        let resolved = path.canonicalize().or_else(|_| {
            let parent = path.parent().unwrap_or(Path::new("/")).canonicalize()?;
            Ok::<_, std::io::Error>(parent.join(path.file_name().unwrap_or_default()))
        });
        let inside = |p: &Path| roots.iter().any(|r| p.starts_with(r));
        // A model directory's files may be links: each must resolve inside too.
        if path.is_dir() {
            let files = pack::DIRECTORY_FILES.iter().map(|(f, _)| *f).chain(pack::WEIGHTS_FILES);
            for file in files {
                if let Ok(target) = path.join(file).canonicalize()
                    && !inside(&target)
                {
                    return Err(format!(
                        "{file} in artifact {} leads outside the artifact directories",
                        path.display()
                    ));
                }
            }
        }
        match resolved {
            Ok(p) if inside(&p) => Ok(()),
            _ => Err(format!(
                "artifact {} is outside the server's artifact directories (--artifact-dir); \
                 put the file there or use an object-store URI",
                path.display()
            )),
        }
    }
}

/// A model file or folder an artifact directory holds, as a deploy form offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactFile {
    pub path: PathBuf,
    /// The file's size, or the sum of a folder's files.
    pub bytes: u64,
    pub format: ArtifactFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactFormat {
    /// One GGUF file.
    Gguf,
    /// A model folder: `config.json` beside its weights (safetensors or ONNX).
    Folder,
}

/// How deep a listing looks below each artifact directory.
const LISTING_DEPTH: usize = 4;
/// Most directory entries one listing reads, whatever the folders hold (a
/// dataset beside the models must not make each listing read millions).
const LISTING_ENTRIES: usize = 100_000;

impl ArtifactPolicy {
    /// The GGUF files and model folders under the directories on this
    /// machine that [`check`](Self::check) would allow, by path, at most
    /// `limit` of them. Hidden entries and unreadable folders are skipped,
    /// links are not followed into folders, and a model folder's own files
    /// are not listed on their own. At most [`LISTING_ENTRIES`] entries are
    /// read. Blocking: it reads the file system.
    pub fn listing(&self, limit: usize) -> Vec<ArtifactFile> {
        let mut found = Vec::new();
        let mut budget = LISTING_ENTRIES;
        let roots = self.roots.iter().cloned().chain(self.elsewhere.iter().filter_map(|r| r.canonicalize().ok()));
        for root in roots {
            // Sorted by name, so the first `limit` of a root are its first `limit` by path.
            let before = found.len();
            let mut walk = walkdir::WalkDir::new(&root).max_depth(LISTING_DEPTH).sort_by_file_name().into_iter();
            while let Some(next) = walk.next() {
                if budget == 0 || found.len() - before >= limit {
                    break;
                }
                budget -= 1;
                let Ok(entry) = next else { continue };
                let hidden = entry.depth() > 0 && entry.file_name().to_string_lossy().starts_with('.');
                if hidden {
                    if entry.file_type().is_dir() {
                        walk.skip_current_dir();
                    }
                    continue;
                }
                let path = entry.path();
                let file = if entry.file_type().is_dir() {
                    if !is_model_folder(path) {
                        continue;
                    }
                    walk.skip_current_dir();
                    ArtifactFile { path: path.to_path_buf(), bytes: folder_bytes(path), format: ArtifactFormat::Folder }
                } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
                    let Ok(meta) = std::fs::metadata(path) else { continue };
                    ArtifactFile { path: path.to_path_buf(), bytes: meta.len(), format: ArtifactFormat::Gguf }
                } else {
                    continue;
                };
                if self.check(&ArtifactUri::File(file.path.clone())).is_ok() {
                    found.push(file);
                }
            }
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        found.dedup_by(|a, b| a.path == b.path);
        found.truncate(limit);
        found
    }
}

fn is_model_folder(path: &Path) -> bool {
    path.join("config.json").is_file() && pack::WEIGHTS_FILES.iter().any(|w| path.join(w).is_file())
}

/// The bytes of the files a model folder is packed from.
fn folder_bytes(path: &Path) -> u64 {
    let files = pack::DIRECTORY_FILES.iter().map(|(f, _)| *f).chain(pack::WEIGHTS_FILES);
    files.filter_map(|f| std::fs::metadata(path.join(f)).ok()).map(|m| m.len()).sum()
}

/// An object-store prefix as an admin allows it for a project: a URI of a
/// supported store naming a bucket (and maybe a folder), without
/// credentials, ending in `/` so that it matches whole path segments.
///
/// # Errors
/// A message naming what is wrong.
pub fn normalize_prefix(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let prefix = if raw.ends_with('/') { raw.to_owned() } else { format!("{raw}/") };
    match ArtifactUri::parse(&format!("{prefix}model"), None) {
        Ok(ArtifactUri::Object(_)) => Ok(prefix),
        Ok(ArtifactUri::File(_)) => Err(format!("{raw:?} is not an object-store URI (s3://, gs://, az://)")),
        Err(e) => Err(format!("{raw:?}: {e}")),
    }
}

/// Whether an object-store artifact lies under one of `prefixes` (as
/// [`normalize_prefix`] makes them). Local files are the artifact
/// policy's to judge, not this.
///
/// # Errors
/// A message safe to show, saying how to get a prefix allowed.
pub fn object_allowed(artifact: &ArtifactUri, prefixes: &[String]) -> Result<(), String> {
    let ArtifactUri::Object(uri) = artifact else { return Ok(()) };
    if prefixes.iter().any(|p| uri.starts_with(p.as_str())) {
        return Ok(());
    }
    Err(format!(
        "object-store artifact {uri} is outside the prefixes allowed for this project; \
         an admin key may allow one (setArtifactPrefixes) or create the model"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_artifacts_need_an_allowed_prefix_by_whole_segments() {
        let prefixes = vec![normalize_prefix("s3://models/team-a").unwrap()];
        assert_eq!(prefixes, ["s3://models/team-a/"]);
        let object = |u: &str| ArtifactUri::Object(u.into());
        assert!(object_allowed(&object("s3://models/team-a/qwen.gguf"), &prefixes).is_ok());
        assert!(object_allowed(&object("s3://models/team-ab/qwen.gguf"), &prefixes).is_err());
        assert!(object_allowed(&object("s3://other/team-a/qwen.gguf"), &prefixes).is_err());
        assert!(object_allowed(&object("gs://models/team-a/qwen.gguf"), &[]).is_err(), "none until one is allowed");
        assert!(
            object_allowed(&ArtifactUri::File("/m/q.gguf".into()), &[]).is_ok(),
            "local files are judged elsewhere"
        );
        for bad in ["/models", "https://x/y", "s3://u:p@bucket/", "s3://"] {
            assert!(normalize_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    #[cfg(unix)]
    fn a_model_directory_passes_unless_a_file_in_it_links_out() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let model = root.path().join("bert");
        std::fs::create_dir(&model).unwrap();
        std::fs::write(model.join("config.json"), b"{}").unwrap();
        let policy = ArtifactPolicy::new([root.path().canonicalize().unwrap()]);
        assert!(policy.check(&ArtifactUri::File(model.clone())).is_ok());
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), model.join("tokenizer.json")).unwrap();
        let err = policy.check(&ArtifactUri::File(model)).unwrap_err();
        assert!(err.contains("tokenizer.json"), "{err}");
    }

    #[test]
    #[cfg(unix)]
    fn a_listing_offers_gguf_files_and_model_folders_under_the_roots_only() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("b.gguf"), vec![0u8; 10]).unwrap();
        std::fs::write(root.path().join("notes.txt"), b"x").unwrap();
        std::fs::create_dir_all(root.path().join("team/bert/1_Pooling")).unwrap();
        std::fs::write(root.path().join("team/bert/config.json"), b"{}").unwrap();
        std::fs::write(root.path().join("team/bert/model.safetensors"), vec![0u8; 100]).unwrap();
        std::fs::write(root.path().join("team/bert/1_Pooling/x.gguf"), b"inside a folder").unwrap();
        std::fs::create_dir(root.path().join(".hidden")).unwrap();
        std::fs::write(root.path().join(".hidden/a.gguf"), b"x").unwrap();
        std::fs::create_dir(root.path().join("empty")).unwrap();
        std::fs::write(root.path().join("empty/config.json"), b"{}").unwrap();
        std::fs::write(outside.path().join("secret.gguf"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.gguf"), root.path().join("link.gguf")).unwrap();
        let policy = ArtifactPolicy::new([root.path().to_path_buf()]);
        let listed = policy.listing(100);
        let base = root.path().canonicalize().unwrap();
        let names: Vec<_> = listed.iter().map(|f| f.path.strip_prefix(&base).unwrap().to_path_buf()).collect();
        assert_eq!(names, [PathBuf::from("b.gguf"), PathBuf::from("team/bert")]);
        assert_eq!((listed[0].bytes, listed[0].format), (10, ArtifactFormat::Gguf));
        assert_eq!((listed[1].bytes, listed[1].format), (102, ArtifactFormat::Folder));
        assert_eq!(policy.listing(1).len(), 1);
        assert_eq!(policy.listing(1)[0].path, listed[0].path, "the first by path");
    }

    #[test]
    fn only_files_under_the_roots_pass() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("m.gguf"), b"x").unwrap();
        std::fs::write(outside.path().join("m.gguf"), b"x").unwrap();
        let policy = ArtifactPolicy::new([root.path().to_path_buf()]);
        let file = |p: PathBuf| ArtifactUri::File(p);
        assert!(policy.check(&file(root.path().join("m.gguf"))).is_ok());
        assert!(policy.check(&file(root.path().join("not-yet.gguf"))).is_ok());
        assert!(policy.check(&file(outside.path().join("m.gguf"))).is_err());
        assert!(policy.check(&file(root.path().join("../etc/passwd"))).is_err());
        assert!(policy.check(&file("/etc/passwd".into())).is_err());
        assert!(policy.check(&ArtifactUri::Object("s3://bucket/m.gguf".into())).is_ok());
    }

    #[test]
    fn a_folder_that_is_not_here_is_judged_by_name() {
        let here = tempfile::tempdir().unwrap();
        let nodes = here.path().join("on-the-nodes");
        let policy = ArtifactPolicy::new([nodes.clone()]);
        let file = |p: PathBuf| ArtifactUri::File(p);
        assert!(policy.check(&file(nodes.join("qwen/model.gguf"))).is_ok());
        assert!(policy.check(&file(nodes.join("../escape.gguf"))).is_err());
        assert!(policy.check(&file(here.path().join("on-the-nodes-2/m.gguf"))).is_err(), "by component, not prefix");
        assert!(policy.check(&file("/etc/passwd".into())).is_err());
        assert!(ArtifactPolicy::new([PathBuf::from("relative")]).check(&file("relative/m.gguf".into())).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_that_appears_later_is_judged_with_links_resolved() {
        let here = tempfile::tempdir().unwrap();
        let later = here.path().join("mounted-later");
        let policy = ArtifactPolicy::new([later.clone()]);
        std::fs::create_dir(&later).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", later.join("link.gguf")).unwrap();
        assert!(policy.check(&ArtifactUri::File(later.join("link.gguf"))).is_err());
        std::fs::write(later.join("m.gguf"), b"x").unwrap();
        assert!(policy.check(&ArtifactUri::File(later.join("m.gguf"))).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_out_of_the_root_is_refused() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("link.gguf")).unwrap();
        let policy = ArtifactPolicy::new([root.path().to_path_buf()]);
        assert!(policy.check(&ArtifactUri::File(root.path().join("link.gguf"))).is_err());
    }
}

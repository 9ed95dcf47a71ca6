//! Which local files a node reads as artifacts, checked on the file it
//! actually opened. A path is checked when a model is created, but the file
//! behind it can change afterwards (a link swapped in for a file that did
//! not exist yet): so the node opens the file, resolves the path to its real
//! location and makes sure that location is the very file it holds open
//! (same device and inode) and lies inside the allowed folders. A swap
//! between the check and the read cannot escape, because the read is from
//! the file already checked.

use std::fs::File;
use std::path::{Path, PathBuf};

/// The local files a node may read as artifacts.
#[derive(Debug, Clone, Default)]
pub enum LocalArtifacts {
    /// Any file: tools, benchmarks and tests that name their own files.
    #[default]
    Anywhere,
    /// Files under these folders (links resolved), and these exact files
    /// or model directories (the operator's config may name models anywhere).
    Within { folders: Vec<PathBuf>, files: Vec<PathBuf> },
}

impl LocalArtifacts {
    /// Files under `folders`, and exactly `files`.
    pub fn within(folders: impl IntoIterator<Item = PathBuf>, files: impl IntoIterator<Item = PathBuf>) -> Self {
        Self::Within { folders: folders.into_iter().collect(), files: files.into_iter().collect() }
    }

    /// Whether a file whose real path is `real` may be read.
    fn allows(&self, real: &Path) -> bool {
        match self {
            Self::Anywhere => true,
            Self::Within { folders, files } => {
                // Folders are resolved now: one may have appeared (a mount) since the start.
                folders.iter().filter_map(|f| f.canonicalize().ok()).any(|f| real.starts_with(&f))
                    || files
                        .iter()
                        .filter_map(|f| f.canonicalize().ok())
                        .any(|f| real == f || (f.is_dir() && real.parent() == Some(f.as_path())))
            }
        }
    }

    /// Opens `path` for reading if the file it leads to is allowed.
    ///
    /// # Errors
    /// A message safe to show (it names `path`'s last component only) when
    /// the file cannot be opened, is not a regular file, or lies outside the
    /// allowed folders.
    pub fn open(&self, path: &Path) -> Result<File, String> {
        let name = path.file_name().map_or_else(|| "?".into(), |n| n.to_string_lossy().into_owned());
        let file = File::open(path).map_err(|e| format!("cannot open {name}: {}", e.kind()))?;
        let opened = file.metadata().map_err(|e| format!("cannot read {name}: {}", e.kind()))?;
        if !opened.is_file() {
            return Err(format!("{name} is not a regular file"));
        }
        if matches!(self, Self::Anywhere) {
            return Ok(file);
        }
        let real = path.canonicalize().map_err(|e| format!("cannot resolve {name}: {}", e.kind()))?;
        let resolved = std::fs::metadata(&real).map_err(|e| format!("cannot resolve {name}: {}", e.kind()))?;
        if !same_file(&opened, &resolved) {
            return Err(format!("{name} changed while it was being opened; refused"));
        }
        if !self.allows(&real) {
            return Err(format!("{name} leads outside the node's artifact folders (--artifact-dir); refused"));
        }
        Ok(file)
    }
}

impl LocalArtifacts {
    /// The real path of a model directory an external engine will read, if
    /// it lies inside the allowed folders (or is a directory named exactly).
    ///
    /// # Errors
    /// A message safe to show when it is not a directory or lies outside.
    pub fn resolve_directory(&self, path: &Path) -> Result<PathBuf, String> {
        let name = path.file_name().map_or_else(|| "?".into(), |n| n.to_string_lossy().into_owned());
        let real = path.canonicalize().map_err(|e| format!("cannot resolve {name}: {}", e.kind()))?;
        if !real.is_dir() {
            return Err(format!("{name} is not a directory"));
        }
        let allowed = match self {
            Self::Anywhere => true,
            Self::Within { files, .. } => {
                self.allows(&real) || files.iter().filter_map(|f| f.canonicalize().ok()).any(|f| f == real)
            }
        };
        if allowed {
            Ok(real)
        } else {
            Err(format!("{name} leads outside the node's artifact folders (--artifact-dir); refused"))
        }
    }
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_link_out_of_the_folders_is_refused_when_opened() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"root:x:0:0").unwrap();
        std::fs::write(root.path().join("model.gguf"), b"GGUF").unwrap();
        let access = LocalArtifacts::within([root.path().to_path_buf()], []);
        assert!(access.open(&root.path().join("model.gguf")).is_ok());
        // Created after the model was: the check happens at open.
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("late.gguf")).unwrap();
        let refused = access.open(&root.path().join("late.gguf")).unwrap_err();
        assert!(refused.contains("outside"), "{refused}");
        assert!(!refused.contains("root:x") && !refused.contains(&outside.path().display().to_string()), "{refused}");
    }

    #[test]
    fn a_link_inside_the_folders_and_named_files_are_allowed() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("blobs")).unwrap();
        std::fs::write(root.path().join("blobs/abc"), b"GGUF").unwrap();
        std::os::unix::fs::symlink(root.path().join("blobs/abc"), root.path().join("m.gguf")).unwrap();
        std::fs::write(elsewhere.path().join("configured.gguf"), b"GGUF").unwrap();
        std::fs::write(elsewhere.path().join("other.gguf"), b"GGUF").unwrap();
        let access = LocalArtifacts::within([root.path().to_path_buf()], [elsewhere.path().join("configured.gguf")]);
        assert!(access.open(&root.path().join("m.gguf")).is_ok());
        assert!(access.open(&elsewhere.path().join("configured.gguf")).is_ok());
        assert!(access.open(&elsewhere.path().join("other.gguf")).is_err(), "only the named file, not its folder");
    }

    #[test]
    fn directories_and_missing_files_are_refused_by_name() {
        let root = tempfile::tempdir().unwrap();
        let access = LocalArtifacts::within([root.path().to_path_buf()], []);
        assert!(access.open(root.path()).unwrap_err().contains("not a regular file"));
        assert!(access.open(&root.path().join("missing.gguf")).unwrap_err().contains("missing.gguf"));
    }
}

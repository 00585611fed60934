//! The Hugging Face cache layout (`models--ORG--NAME/{refs,blobs,snapshots}`), written only by
//! this module and only under names it has checked: a commit id is 40 hex digits, a blob is named
//! by a git object id or an LFS sha256, a revision follows git's rules for branch and tag names,
//! and a file name is a plain name. Nothing a server sends becomes a path unchecked.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha1::Digest as _;

use super::RepoSpec;
use crate::files::is_plain_file_name;

/// A full git commit id: 40 lower-case hex digits.
pub fn is_commit(text: &str) -> bool {
    text.len() == 40 && is_lower_hex(text)
}

/// A sha256 in hex, as the hub names LFS objects.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && is_lower_hex(text)
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks a revision (branch, tag or commit) the way `git check-ref-format` checks a ref name,
/// so that `refs/REV` can never leave the `refs` folder.
pub fn check_revision(rev: &str) -> Result<()> {
    let why = if rev.is_empty() {
        Some("it is empty")
    } else if rev.len() > 255 {
        Some("it is longer than 255 characters")
    } else if rev
        .chars()
        .any(|c| c.is_control() || " ~^:?*[\\".contains(c))
    {
        Some("it holds a space, a control character or one of ~ ^ : ? * [ \\")
    } else if rev.starts_with('/') || rev.ends_with('/') || rev.contains("//") {
        Some("it starts or ends with '/' or holds '//'")
    } else if rev.contains("..") || rev.contains("@{") || rev == "@" {
        Some("it holds '..' or '@{'")
    } else if rev.ends_with('.') || rev.starts_with('-') {
        Some("it ends with '.' or starts with '-'")
    } else if rev
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        Some("a part of it starts with '.' or ends with '.lock'")
    } else {
        None
    };
    match why {
        Some(why) => bail!("{rev:?} is not a valid revision: {why} (want a branch, tag or commit)"),
        None => Ok(()),
    }
}

/// What the bytes of a downloaded file must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// An LFS object: the sha256 of the content.
    Sha256(String),
    /// A plain git object: the sha1 of `blob LEN\0` followed by the content.
    GitSha1(String),
}

impl Checksum {
    /// The checked name the blob is stored under (what the hub's ETag would be).
    pub fn blob_name(&self) -> &str {
        match self {
            Checksum::Sha256(h) | Checksum::GitSha1(h) => h,
        }
    }

    /// The hash of the file at `path` (of `size` bytes) in this checksum's kind.
    pub fn compute(&self, path: &Path, size: u64) -> Result<String> {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut feed = |update: &mut dyn FnMut(&[u8])| -> Result<()> {
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                update(&buf[..n]);
            }
        };
        let hex = match self {
            Checksum::Sha256(_) => {
                let mut h = sha2::Sha256::new();
                feed(&mut |b| h.update(b))?;
                hex(&h.finalize())
            }
            Checksum::GitSha1(_) => {
                let mut h = sha1::Sha1::new();
                h.update(format!("blob {size}\0").as_bytes());
                feed(&mut |b| h.update(b))?;
                hex(&h.finalize())
            }
        };
        Ok(hex)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One repository's folder in the cache.
#[derive(Debug, Clone)]
pub struct RepoCache {
    root: PathBuf,
}

impl RepoCache {
    /// `cache_dir/models--ORG--NAME` (the parts were checked by [`RepoSpec::parse`]).
    pub fn new(cache_dir: &Path, spec: &RepoSpec) -> Self {
        Self {
            root: cache_dir.join(format!("models--{}--{}", spec.owner, spec.name)),
        }
    }

    /// The commit a revision points to in the cache: itself for a commit id, else what
    /// `refs/REV` holds if that is a commit id.
    pub fn resolve(&self, rev: &str) -> Option<String> {
        if is_commit(rev) {
            return Some(rev.to_string());
        }
        check_revision(rev).ok()?;
        let text = std::fs::read_to_string(self.root.join("refs").join(rev)).ok()?;
        let commit = text.trim();
        is_commit(commit).then(|| commit.to_string())
    }

    pub fn snapshot(&self, commit: &str) -> Result<PathBuf> {
        if !is_commit(commit) {
            bail!("{commit:?} is not a commit id (40 hex digits)");
        }
        Ok(self.root.join("snapshots").join(commit))
    }

    /// Records that `rev` (a branch or tag) points at `commit`.
    pub fn write_ref(&self, rev: &str, commit: &str) -> Result<()> {
        check_revision(rev)?;
        if !is_commit(commit) {
            bail!("{commit:?} is not a commit id (40 hex digits)");
        }
        if is_commit(rev) {
            return Ok(());
        }
        let path = self.root.join("refs").join(rev);
        crate::files::write_atomically(&path, commit.as_bytes(), false)
    }

    pub fn blob(&self, checksum: &Checksum) -> PathBuf {
        self.root.join("blobs").join(checksum.blob_name())
    }

    /// Where a blob is written while it downloads (kept across runs to resume).
    pub fn partial(&self, checksum: &Checksum) -> PathBuf {
        self.root
            .join("blobs")
            .join(format!("{}.incomplete", checksum.blob_name()))
    }

    /// Points `snapshots/COMMIT/FILE` at the blob (a relative symlink, as the Python client makes).
    pub fn link(&self, commit: &str, file: &str, checksum: &Checksum) -> Result<PathBuf> {
        if !is_plain_file_name(file) {
            bail!("{file:?} is not a plain file name");
        }
        let dir = self.snapshot(commit)?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(file);
        let target = Path::new("../../blobs").join(checksum.blob_name());
        let _ = std::fs::remove_file(&path);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, &path)
            .with_context(|| format!("linking {}", path.display()))?;
        #[cfg(not(unix))]
        std::fs::copy(self.blob(checksum), &path)
            .with_context(|| format!("copying to {}", path.display()))?;
        Ok(path)
    }
}

/// Names the hub lists for a model's top-level files: checked before any use as a path.
pub fn check_file_name(name: &str) -> Result<()> {
    if !is_plain_file_name(name) || name.starts_with('.') {
        bail!("the hub listed a file named {name:?}, which is not a plain file name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_follow_git_ref_rules() {
        for good in [
            "main",
            "v1.0",
            "refs/pr/1",
            "release-2024_01",
            "0123456789abcdef0123456789abcdef01234567",
        ] {
            assert!(check_revision(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "..",
            "../../../file",
            "a/../b",
            "/etc/passwd",
            "main/",
            "a//b",
            ".hidden",
            "a/.b",
            "x.lock",
            "a b",
            "a\nb",
            "a\u{0}b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[b",
            "a\\b",
            "a@{1}",
            "@",
            "-rf",
            "end.",
        ] {
            assert!(check_revision(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn commits_and_hashes_are_exact_hex() {
        assert!(is_commit("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit("0123456789ABCDEF0123456789abcdef01234567"));
        assert!(!is_commit("../../../../tmp/x/0123456789abcdef012345"));
        assert!(!is_commit("0123456789abcdef0123456789abcdef0123456"));
        assert!(is_sha256(&"a".repeat(64)));
        assert!(!is_sha256(&"a".repeat(63)));
        assert!(!is_sha256(&format!("../{}", "a".repeat(61))));
    }

    #[test]
    fn checksums_match_git_and_sha256() {
        let path = std::env::temp_dir().join(format!("dlm-tui-checksum-{}", std::process::id()));
        std::fs::write(&path, b"hello\n").unwrap();
        // `git hash-object` and `sha256sum` of "hello\n".
        let git = Checksum::GitSha1("ce013625030ba8dba906f756967f9e9ca394464a".into());
        assert_eq!(git.compute(&path, 6).unwrap(), git.blob_name());
        let lfs = Checksum::Sha256(
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03".into(),
        );
        assert_eq!(lfs.compute(&path, 6).unwrap(), lfs.blob_name());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn refs_and_links_stay_inside_the_cache() {
        let dir = std::env::temp_dir().join(format!("dlm-tui-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spec = RepoSpec::parse("org/name").unwrap();
        let cache = RepoCache::new(&dir, &spec);
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert!(cache.write_ref("../../../escape", commit).is_err());
        assert!(cache.write_ref("main", "../../x").is_err());
        cache.write_ref("main", commit).unwrap();
        assert_eq!(cache.resolve("main").as_deref(), Some(commit));
        assert!(cache.snapshot("../../x").is_err());
        let checksum = Checksum::GitSha1("a".repeat(40));
        assert!(cache.link(commit, "../config.json", &checksum).is_err());
        assert!(cache.link(commit, "/etc/passwd", &checksum).is_err());
        // A ref that does not hold a commit id is not followed.
        std::fs::write(dir.join("models--org--name/refs/main"), "../../../tmp").unwrap();
        assert_eq!(cache.resolve("main"), None);
        assert!(!dir.join("escape").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Noticing that a config (or certificate) file changed, for hot reload.
//!
//! A [`Stamp`] is what `stat(2)` says of the file: device and inode,
//! modification and change times (to the nanosecond) and size. Editors and
//! deploy tools usually write a new file and `rename(2)` it into place; that
//! keeps the old mtime on some tools (`cp -p`, `install -p`, tar) but always
//! changes the inode, so comparing the whole stamp sees both in-place writes
//! and atomic renames. Polling, not inotify: it also works across bind
//! mounts, ConfigMap symlink swaps and network filesystems, and one `stat`
//! per second costs nothing.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// What `stat(2)` says of a file; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    len: u64,
}

impl Stamp {
    /// The stamp of `path` now (following symlinks); `None` when it cannot be
    /// read, which the reload that follows then reports.
    pub fn of(path: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp { dev: m.dev(), ino: m.ino(), mtime: (m.mtime(), m.mtime_nsec()), ctime: (m.ctime(), m.ctime_nsec()), len: m.len() })
    }
}

/// Remembers the stamps of a set of files and says when any changed.
#[derive(Clone, Debug)]
pub struct FileWatch {
    files: Vec<(PathBuf, Option<Stamp>)>,
}

impl FileWatch {
    /// Watches `paths`, taking their stamps now.
    pub fn new<P: Into<PathBuf>>(paths: impl IntoIterator<Item = P>) -> FileWatch {
        FileWatch { files: paths.into_iter().map(Into::into).map(|p| (p.clone(), Stamp::of(&p))).collect() }
    }

    /// Whether any file changed (appeared, vanished, was rewritten or
    /// replaced) since the last call or since [`FileWatch::new`]; remembers
    /// the new stamps.
    pub fn changed(&mut self) -> bool {
        let mut any = false;
        for (path, stamp) in &mut self.files {
            let now = Stamp::of(path);
            if now != *stamp {
                *stamp = now;
                any = true;
            }
        }
        any
    }

    /// Takes the stamps again without reporting a change (after a reload
    /// that read the files anyway).
    pub fn rearm(&mut self) {
        for (path, stamp) in &mut self.files {
            *stamp = Stamp::of(path);
        }
    }

    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn sees_rewrites_renames_and_removal() {
        let dir = std::env::temp_dir().join(format!("xdplb-watch-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.yaml");
        fs::write(&file, "a: 1\n").unwrap();
        let mut w = FileWatch::new([&file]);
        assert!(!w.changed(), "nothing happened");

        fs::write(&file, "a: 22\n").unwrap();
        assert!(w.changed(), "rewrite in place");
        assert!(!w.changed(), "reported once");

        // An atomic rename with the same size and the same mtime: only the
        // inode tells.
        let tmp = dir.join("c.yaml.tmp");
        fs::write(&tmp, "a: 33\n").unwrap();
        let old = fs::metadata(&file).unwrap().modified().unwrap();
        fs::File::options().write(true).open(&tmp).unwrap().set_modified(old).unwrap();
        fs::rename(&tmp, &file).unwrap();
        assert!(w.changed(), "atomic rename into place");

        fs::remove_file(&file).unwrap();
        assert!(w.changed(), "removal");
        fs::write(&file, "a: 1\n").unwrap();
        assert!(w.changed(), "reappearance");
        w.rearm();
        assert!(!w.changed());
        assert_eq!(w.paths().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}

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
//!
//! Stamps are taken *before* a file is read, never after: a write that lands
//! between the read and the stamp would otherwise be part of the stamp, show
//! as no change, and leave the running config behind the file until the next
//! edit. Taken before, such a write costs at worst one reload that finds
//! nothing new. [`ConfigFile`] is the one file a tier reloads from, stamped
//! when it is made, which is before the first read.

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
    /// Watches `paths`, taking their stamps now: before they are read (see
    /// the module documentation).
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

    /// Takes the stamps again without reporting a change, just before a
    /// reload reads the files anyway.
    pub fn rearm(&mut self) {
        for (path, stamp) in &mut self.files {
            *stamp = Stamp::of(path);
        }
    }

    /// Watches `paths` from now on (a reload can name other files): a path
    /// watched already keeps its stamp, so a change since the last
    /// [`FileWatch::rearm`] is still reported; a new one is stamped now.
    pub fn retarget<P: Into<PathBuf>>(&mut self, paths: impl IntoIterator<Item = P>) {
        let old = std::mem::take(&mut self.files);
        self.files = paths
            .into_iter()
            .map(Into::into)
            .map(|p| match old.iter().find(|(q, _)| *q == p) {
                Some((_, stamp)) => (p, *stamp),
                None => (p.clone(), Stamp::of(&p)),
            })
            .collect();
    }

    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }
}

/// The config file a tier reloads from, watched from before its first read
/// (see the module documentation): make it, then read the file.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    path: PathBuf,
    watch: FileWatch,
}

impl ConfigFile {
    /// Stamps `path` now; read it afterwards.
    pub fn new(path: impl Into<PathBuf>) -> ConfigFile {
        let path = path.into();
        ConfigFile { watch: FileWatch::new([path.clone()]), path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// See [`FileWatch::changed`].
    pub fn changed(&mut self) -> bool {
        self.watch.changed()
    }

    /// See [`FileWatch::rearm`]: call it just before reading the file again.
    pub fn rearm(&mut self) {
        self.watch.rearm();
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

    /// The race a stamp taken after the read loses: the file changes between
    /// the read and the start of the watch.
    #[test]
    fn a_write_after_the_read_and_before_the_first_poll_is_seen() {
        let dir = std::env::temp_dir().join(format!("xdplb-watch-first-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.yaml");
        fs::write(&file, "a: 1\n").unwrap();
        let mut config = ConfigFile::new(&file);
        assert_eq!(fs::read_to_string(config.path()).unwrap(), "a: 1\n");
        fs::write(&file, "a: 22\n").unwrap();
        assert!(config.changed(), "written after the read");
        assert!(!config.changed());
        // Rearmed before the next read: the write before the read is no
        // change, one after it is.
        fs::write(&file, "a: 33\n").unwrap();
        config.rearm();
        assert!(!config.changed());
        fs::write(&file, "a: 4\n").unwrap();
        assert!(config.changed());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn retarget_keeps_the_stamps_of_files_it_still_watches() {
        let dir = std::env::temp_dir().join(format!("xdplb-watch-retarget-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (a, b, c) = (dir.join("a.pem"), dir.join("b.pem"), dir.join("c.pem"));
        for f in [&a, &b, &c] {
            fs::write(f, "x").unwrap();
        }
        let mut w = FileWatch::new([&a, &b]);
        // `a` changes while the reload that names `a` and `c` runs.
        fs::write(&a, "yy").unwrap();
        w.retarget([&a, &c]);
        assert_eq!(w.paths().collect::<Vec<_>>(), [a.as_path(), c.as_path()]);
        assert!(w.changed(), "the change of a file watched before and after");
        assert!(!w.changed(), "c is new and stamped as it is; b is no longer watched");
        fs::write(&b, "zzz").unwrap();
        assert!(!w.changed());
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! Which file a path names: how a SQLite store tells that its file was removed or replaced on
//! disk while it had it open (an operator's `rm` to reset, a `mv` of a restored backup over
//! it, a deploy that writes a new file). A connection keeps the file it opened, whatever the
//! path names afterwards; comparing identities finds out.

use std::fs::Metadata;
use std::io;
use std::path::Path;

/// A file as the file system knows it, whatever its name: on Unix its device and inode numbers
/// (`st_dev`, `st_ino`). A path whose identity is not the one of the file a connection opened
/// names another file now (replaced, or removed and created again).
///
/// On other targets every file has the same identity, so only a removed file is told: there
/// (Windows) SQLite opens its files without `FILE_SHARE_DELETE`, and a file it has open can
/// be neither removed nor renamed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileIdentity {
    device: u64,
    inode: u64,
}

impl FileIdentity {
    /// The identity of the file `path` names now, following symbolic links as SQLite does;
    /// `None` when it names none.
    ///
    /// # Errors
    /// The file system's, when it cannot tell (a directory on the way that cannot be searched).
    pub(super) fn of(path: &Path) -> io::Result<Option<Self>> {
        match std::fs::metadata(path) {
            Ok(metadata) => Ok(Some(Self::from_metadata(&metadata))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The inode number, for the logs (0 on targets without one).
    pub(super) fn inode(self) -> u64 {
        self.inode
    }

    #[cfg(unix)]
    fn from_metadata(metadata: &Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            device: metadata.dev(),
            inode: metadata.ino(),
        }
    }

    #[cfg(not(unix))]
    fn from_metadata(_: &Metadata) -> Self {
        Self {
            device: 0,
            inode: 0,
        }
    }
}

//! The backup archive of `redeploy backup` and `redeploy restore`: a gzip-compressed tar whose
//! first entry, `manifest.json`, names every other file with its size and SHA-256; the files
//! are the database (a SQLite snapshot or a `pg_dump`), the data folder's key material and
//! tokens, and the settings file. Reading checks everything against the manifest before
//! anything is restored: a damaged or altered archive restores nothing.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use server::bootstrap::{ADMIN_TOKEN, CA_CERT, CA_KEY, ENROLLMENT_TOKEN, SERVER_CERT, SERVER_KEY};
use sha2::{Digest, Sha256};

/// The manifest's name: the archive's first entry.
pub const MANIFEST: &str = "manifest.json";
/// `format` of the manifest.
const FORMAT: &str = "redeploy-backup";
/// `format_version` this build writes and reads.
const FORMAT_VERSION: u32 = 1;
/// The largest manifest read (it lists a handful of files).
const MANIFEST_MAX_BYTES: u64 = 1 << 20;

/// The SQLite snapshot in the archive (the data folder's `redeploy.db`).
pub const SQLITE_SNAPSHOT: &str = server::bootstrap::SQLITE_DB;
/// The `pg_dump --format=custom` file in the archive.
pub const POSTGRES_DUMP: &str = "redeploy.pgdump";
/// The settings file in the archive, and its name in the restored data folder.
pub const CONFIG: &str = "redeploy.toml";

/// What a file of the archive is, and so where a restore puts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The database: the snapshot or dump of the manifest's backend.
    Database(Backend),
    /// A file of the data folder, restored under its own name.
    DataFolder,
    /// The settings file (`--config`), restored as `redeploy.toml` in the data folder.
    Config,
}

/// A file a backup may hold.
#[derive(Debug)]
pub struct Known {
    /// Its name in the archive (for a data-folder file, also in the data folder).
    pub name: &'static str,
    pub part: Part,
    /// Key material, tokens, the database or settings that may hold a password: mode 0600.
    pub secret: bool,
    /// Every backup holds it.
    pub required: bool,
}

/// Every file a backup may hold; a manifest naming another is refused (a newer format).
pub const KNOWN: &[Known] = &[
    Known {
        name: SQLITE_SNAPSHOT,
        part: Part::Database(Backend::Sqlite),
        secret: true,
        required: false,
    },
    Known {
        name: POSTGRES_DUMP,
        part: Part::Database(Backend::Postgres),
        secret: true,
        required: false,
    },
    Known {
        name: CA_CERT,
        part: Part::DataFolder,
        secret: false,
        required: true,
    },
    Known {
        name: CA_KEY,
        part: Part::DataFolder,
        secret: true,
        required: true,
    },
    Known {
        name: SERVER_CERT,
        part: Part::DataFolder,
        secret: false,
        required: false,
    },
    Known {
        name: SERVER_KEY,
        part: Part::DataFolder,
        secret: true,
        required: false,
    },
    Known {
        name: ADMIN_TOKEN,
        part: Part::DataFolder,
        secret: true,
        required: false,
    },
    Known {
        name: ENROLLMENT_TOKEN,
        part: Part::DataFolder,
        secret: true,
        required: false,
    },
    Known {
        name: CONFIG,
        part: Part::Config,
        secret: true,
        required: false,
    },
];

/// The known file named `name`.
pub fn known(name: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.name == name)
}

/// The database family a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Its name in messages.
    pub fn title(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }

    /// The database file of this backend in the archive.
    pub fn database_file(self) -> &'static str {
        match self {
            Backend::Sqlite => SQLITE_SNAPSHOT,
            Backend::Postgres => POSTGRES_DUMP,
        }
    }
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `redeploy-backup`.
    pub format: String,
    pub format_version: u32,
    /// The version of the `redeploy` that wrote it.
    pub redeploy_version: String,
    pub backend: Backend,
    /// The newest migration applied to the database (`None`: never migrated).
    pub schema_version: Option<i64>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub files: Vec<FileEntry>,
}

/// One file of the archive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// Restored with mode 0600.
    pub secret: bool,
}

impl Manifest {
    /// A manifest of this build for `files`.
    pub fn new(
        backend: Backend,
        schema_version: Option<i64>,
        created_at: time::OffsetDateTime,
        files: Vec<FileEntry>,
    ) -> anyhow::Result<Manifest> {
        Ok(Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            redeploy_version: env!("CARGO_PKG_VERSION").into(),
            backend,
            schema_version,
            created_at: created_at.format(&time::format_description::well_known::Rfc3339)?,
            files,
        })
    }

    /// Refuses a manifest this build cannot restore whole: another format or version, a file
    /// it does not know, named twice, or of the other backend, or a required file missing.
    fn check(&self) -> anyhow::Result<()> {
        if self.format != FORMAT || self.format_version != FORMAT_VERSION {
            bail!(
                "not a backup this redeploy can read (format {:?} version {}, expected {FORMAT:?} \
                 version {FORMAT_VERSION}; written by redeploy {})",
                self.format,
                self.format_version,
                self.redeploy_version
            );
        }
        let mut names = BTreeSet::new();
        for file in &self.files {
            let Some(known) = known(&file.name) else {
                bail!(
                    "the manifest names {:?}, which this redeploy does not know (written by \
                     redeploy {})",
                    file.name,
                    self.redeploy_version
                );
            };
            if let Part::Database(backend) = known.part {
                if backend != self.backend {
                    bail!(
                        "the manifest of a {} backup names {:?}",
                        self.backend.title(),
                        file.name
                    );
                }
            }
            if !names.insert(file.name.as_str()) {
                bail!("the manifest names {:?} twice", file.name);
            }
        }
        let database = self.backend.database_file();
        for required in KNOWN
            .iter()
            .filter(|k| k.required)
            .map(|k| k.name)
            .chain([database])
        {
            if !names.contains(required) {
                bail!("the backup has no {required}");
            }
        }
        Ok(())
    }

    /// The entry of `name`.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// Creates `path` (which must not exist) with mode 0600.
pub fn create_private(path: &Path) -> anyhow::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Gives `path` mode 0600 (`secret`) or 0644.
pub fn set_mode(path: &Path, secret: bool) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if secret { 0o600 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = (path, secret);
    Ok(())
}

/// Copies everything `from` gives into `to`, returning its size and SHA-256 (lowercase hex).
fn copy_hashing(mut from: impl Read, to: &mut impl Write) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// The manifest entry of the staged file `path`.
pub fn describe(path: &Path, name: &str, secret: bool) -> anyhow::Result<FileEntry> {
    let file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let (bytes, sha256) = copy_hashing(BufReader::new(file), &mut std::io::sink())
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(FileEntry {
        name: name.into(),
        bytes,
        sha256,
        secret,
    })
}

/// Writes the archive `out` (which must not exist; mode 0600): the manifest, then each of its
/// files from the folder `staged`. Written to `out.partial` and renamed when complete and
/// synced, so `out` is never half an archive. Returns the archive's size.
pub fn write(out: &Path, manifest: &Manifest, staged: &Path) -> anyhow::Result<u64> {
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let file = create_private(&partial)?;
    let written = (|| -> anyhow::Result<File> {
        let gz =
            flate2::write::GzEncoder::new(BufWriter::new(file), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mtime = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        let json = serde_json::to_vec_pretty(manifest)?;
        tar.append_data(
            &mut header(json.len() as u64, mtime),
            MANIFEST,
            json.as_slice(),
        )?;
        for entry in &manifest.files {
            let path = staged.join(&entry.name);
            let file = File::open(&path).with_context(|| format!("reading {}", path.display()))?;
            tar.append_data(&mut header(entry.bytes, mtime), &entry.name, file)
                .with_context(|| format!("adding {} to the archive", entry.name))?;
        }
        let file = tar.into_inner()?.finish()?;
        Ok(file.into_inner().map_err(|e| e.into_error())?)
    })();
    let result = written.and_then(|file| {
        file.sync_all()?;
        publish(&partial, out)?;
        Ok(std::fs::metadata(out)?.len())
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result.with_context(|| format!("writing {}", out.display()))
}

/// Gives the complete `partial` its name `out`, never replacing a file of that name: a hard
/// link fails when `out` exists (a rename where links are not supported).
fn publish(partial: &Path, out: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(partial, out) {
        Ok(()) => std::fs::remove_file(partial),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists || out.exists() => Err(e),
        Err(_) => std::fs::rename(partial, out),
    }
}

/// A tar header of a regular file of `size` bytes, mode 0600.
fn header(size: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn open(archive: &Path) -> anyhow::Result<tar::Archive<flate2::read::GzDecoder<BufReader<File>>>> {
    let file = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    Ok(tar::Archive::new(flate2::read::GzDecoder::new(
        BufReader::new(file),
    )))
}

fn damaged(archive: &Path) -> String {
    format!("{} is damaged or not a Redeploy backup", archive.display())
}

/// The archive's manifest (its first entry), checked: a quick look before the whole archive
/// is read.
pub fn read_manifest(archive: &Path) -> anyhow::Result<Manifest> {
    let mut tar = open(archive)?;
    let mut entries = tar.entries().with_context(|| damaged(archive))?;
    let mut first = entries
        .next()
        .with_context(|| damaged(archive))?
        .with_context(|| damaged(archive))?;
    let name = first.path().with_context(|| damaged(archive))?.into_owned();
    if name != Path::new(MANIFEST) || first.size() > MANIFEST_MAX_BYTES {
        bail!("{}: its first file is not {MANIFEST}", damaged(archive));
    }
    let mut json = Vec::new();
    first
        .read_to_end(&mut json)
        .with_context(|| damaged(archive))?;
    let manifest: Manifest = serde_json::from_slice(&json)
        .with_context(|| format!("{}: {MANIFEST} is not readable", damaged(archive)))?;
    manifest
        .check()
        .with_context(|| format!("{} cannot be restored", archive.display()))?;
    Ok(manifest)
}

/// Reads the whole archive into the folder `staging` (files mode 0600), checking each file's
/// size and SHA-256 against the manifest, that every file the manifest names is there once and
/// nothing else is, and the gzip stream's own checksum. Returns the manifest.
pub fn extract(archive: &Path, staging: &Path) -> anyhow::Result<Manifest> {
    let manifest = read_manifest(archive)?;
    let mut tar = open(archive)?;
    let mut seen = BTreeSet::new();
    for (index, entry) in tar.entries().with_context(|| damaged(archive))?.enumerate() {
        let entry = entry.with_context(|| damaged(archive))?;
        if index == 0 {
            continue; // the manifest, read above
        }
        let name = entry
            .path()
            .with_context(|| damaged(archive))?
            .to_string_lossy()
            .into_owned();
        let Some(expected) = manifest.file(&name) else {
            bail!(
                "{}: it holds {name:?}, which its manifest does not list",
                damaged(archive)
            );
        };
        if !seen.insert(name.clone()) {
            bail!("{}: it holds {name:?} twice", damaged(archive));
        }
        // `name` is one of the known plain names (the manifest was checked), never a path.
        let path = staging.join(&name);
        let mut out = BufWriter::new(create_private(&path)?);
        let (bytes, sha256) = copy_hashing(entry, &mut out).with_context(|| damaged(archive))?;
        out.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
        if bytes != expected.bytes || sha256 != expected.sha256 {
            bail!(
                "{}: {name} does not match its checksum in the manifest (SHA-256 {sha256}, \
                 {bytes} bytes; expected {}, {} bytes)",
                damaged(archive),
                expected.sha256,
                expected.bytes
            );
        }
    }
    // Read to the end so that the gzip trailer's CRC-32 and length are checked too.
    let mut rest = tar.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).with_context(|| damaged(archive))?;
    if let Some(missing) = manifest.files.iter().find(|f| !seen.contains(&f.name)) {
        bail!(
            "{}: {} is in its manifest but not in the archive",
            damaged(archive),
            missing.name
        );
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(dir: &Path, files: &[(&str, &str)]) -> Vec<FileEntry> {
        files
            .iter()
            .map(|(name, text)| {
                std::fs::write(dir.join(name), text).unwrap();
                describe(&dir.join(name), name, known(name).unwrap().secret).unwrap()
            })
            .collect()
    }

    #[test]
    fn an_archive_round_trips_and_a_changed_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let stage = dir.path().join("stage");
        std::fs::create_dir(&stage).unwrap();
        let files = staged(
            &stage,
            &[
                (SQLITE_SNAPSHOT, "database"),
                (CA_CERT, "cert"),
                (CA_KEY, "key"),
            ],
        );
        let manifest = Manifest::new(
            Backend::Sqlite,
            Some(7),
            time::OffsetDateTime::now_utc(),
            files,
        )
        .unwrap();
        let out = dir.path().join("b.tar.gz");
        write(&out, &manifest, &stage).unwrap();
        assert!(write(&out, &manifest, &stage).is_err(), "never overwritten");

        let back = dir.path().join("back");
        std::fs::create_dir(&back).unwrap();
        let read = extract(&out, &back).unwrap();
        assert_eq!(read.files, manifest.files);
        assert_eq!(std::fs::read_to_string(back.join(CA_KEY)).unwrap(), "key");

        // A changed byte anywhere restores nothing different: it is refused, or it was in what
        // carries no content (the gzip header's time stamp, the deflate stream's padding).
        let bytes = std::fs::read(&out).unwrap();
        let mut refused = 0;
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            let path = dir.path().join("bad.tar.gz");
            std::fs::write(&path, &bad).unwrap();
            let into = tempfile::tempdir().unwrap();
            match extract(&path, into.path()) {
                Err(_) => refused += 1,
                Ok(read) => {
                    assert_eq!(read.files, manifest.files, "byte {at}");
                    for file in &read.files {
                        assert_eq!(
                            std::fs::read(into.path().join(&file.name)).unwrap(),
                            std::fs::read(stage.join(&file.name)).unwrap(),
                            "byte {at}"
                        );
                    }
                }
            }
        }
        assert!(
            refused > bytes.len() * 9 / 10,
            "{refused} of {}",
            bytes.len()
        );
    }

    #[test]
    fn manifests_this_build_cannot_restore_are_refused() {
        let entry = |name: &str| FileEntry {
            name: name.into(),
            bytes: 0,
            sha256: String::new(),
            secret: true,
        };
        let now = time::OffsetDateTime::now_utc();
        let with = |backend, names: &[&str]| {
            Manifest::new(backend, None, now, names.iter().map(|n| entry(n)).collect())
                .unwrap()
                .check()
                .map_err(|e| e.to_string())
        };
        assert!(with(Backend::Sqlite, &[SQLITE_SNAPSHOT, CA_CERT, CA_KEY]).is_ok());
        let no_key = with(Backend::Sqlite, &[SQLITE_SNAPSHOT, CA_CERT]).unwrap_err();
        assert!(no_key.contains(CA_KEY), "{no_key}");
        let other = with(Backend::Postgres, &[SQLITE_SNAPSHOT, CA_CERT, CA_KEY]).unwrap_err();
        assert!(other.contains("PostgreSQL backup"), "{other}");
        let path = with(Backend::Sqlite, &[SQLITE_SNAPSHOT, CA_CERT, CA_KEY, "../x"]).unwrap_err();
        assert!(path.contains("does not know"), "{path}");
    }
}

//! Copy-out restore: stream a file or directory tree out of a snapshot to a
//! local path, with a progress bar.

use std::ffi::OsStr;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use cairn_rpc::{Client, pb};
use serde_json::json;

use crate::output::{Out, size};
use crate::{Failure, Result};

fn io(what: &str, path: &Path, e: std::io::Error) -> Failure {
    Failure::new(1, format!("cannot {what} {}: {e}", path.display()))
}

/// Where an entry goes: `dest` joined with its relative path, which must be
/// plain components only.
fn local_path(dest: &Path, rel: &[u8]) -> Result<PathBuf> {
    if rel.is_empty() {
        return Ok(dest.to_path_buf());
    }
    let rel = Path::new(OsStr::from_bytes(rel));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(Failure::new(
            1,
            format!("the server sent an unsafe path {}", rel.display()),
        ));
    }
    Ok(dest.join(rel))
}

/// Copy `source` of `snapshot` to `dest` (into it, when it is an existing
/// directory). Existing files are refused unless `force`.
pub async fn copy_out(
    out: &Out,
    c: &mut Client,
    snapshot: &str,
    source: &str,
    dest: &Path,
    force: bool,
) -> Result<()> {
    let dest = if dest.is_dir() {
        let base = Path::new(source).file_name().ok_or_else(|| {
            Failure::new(
                2,
                format!(
                    "{} is a directory; give a new path to restore the whole dataset root to",
                    dest.display()
                ),
            )
        })?;
        dest.join(base)
    } else {
        dest.to_path_buf()
    };
    if !force && std::fs::symlink_metadata(&dest).is_ok() {
        return Err(Failure::new(
            4,
            format!(
                "{} exists; pass --force to overwrite, or choose another --destination",
                dest.display()
            ),
        ));
    }
    let mut stream = c
        .read_snapshot_file(pb::ReadSnapshotFileRequest {
            snapshot: snapshot.to_string(),
            path: source.to_string(),
        })
        .await?
        .into_inner();
    let mut bar = None;
    let mut file: Option<(std::fs::File, PathBuf, u32, i64, u64)> = None;
    let (mut files, mut dirs, mut links, mut skipped, mut bytes) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut holes = 0u64;
    let finish = |f: Option<(std::fs::File, PathBuf, u32, i64, u64)>| -> Result<()> {
        if let Some((f, path, mode, mtime, size)) = f {
            f.set_len(size)
                .map_err(|e| io("set the length of", &path, e))?;
            f.set_modified(UNIX_EPOCH + Duration::from_millis(mtime.max(0) as u64))
                .map_err(|e| io("set the time of", &path, e))?;
            drop(f);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
                .map_err(|e| io("set the mode of", &path, e))?;
        }
        Ok(())
    };
    while let Some(msg) = stream.message().await? {
        match msg.item {
            Some(pb::read_snapshot_file_response::Item::Entry(e)) => {
                finish(file.take())?;
                let pb = bar.get_or_insert_with(|| out.bytes_bar(e.total_bytes));
                let path = local_path(&dest, &e.path)?;
                pb.set_message(path.display().to_string());
                match pb::FileType::try_from(e.r#type).unwrap_or(pb::FileType::Unspecified) {
                    pb::FileType::Directory => {
                        std::fs::create_dir_all(&path).map_err(|x| io("create", &path, x))?;
                        dirs += 1;
                    }
                    pb::FileType::Regular => {
                        let mut o = std::fs::OpenOptions::new();
                        o.write(true);
                        if force {
                            o.create(true).truncate(true);
                        } else {
                            o.create_new(true);
                        }
                        let f = o.open(&path).map_err(|x| io("create", &path, x))?;
                        file = Some((f, path, e.mode, e.mtime_unix_ms, e.size));
                        files += 1;
                    }
                    pb::FileType::Symlink => {
                        if force && std::fs::symlink_metadata(&path).is_ok() {
                            std::fs::remove_file(&path).map_err(|x| io("replace", &path, x))?;
                        }
                        std::os::unix::fs::symlink(OsStr::from_bytes(&e.target), &path)
                            .map_err(|x| io("create the symlink", &path, x))?;
                        links += 1;
                    }
                    _ => skipped += 1,
                }
            }
            Some(pb::read_snapshot_file_response::Item::Hole(n)) => {
                let Some((f, path, ..)) = file.as_mut() else {
                    return Err(Failure::new(
                        1,
                        "the server sent a hole before a file entry",
                    ));
                };
                // Seek past it; the file's length is set when it ends, so
                // a trailing hole is allocated nowhere either.
                let by = i64::try_from(n)
                    .map_err(|_| Failure::new(1, format!("the server sent a hole of {n} bytes")))?;
                f.seek(SeekFrom::Current(by))
                    .map_err(|x| io("seek in", path, x))?;
                holes += n;
                if let Some(pb) = &bar {
                    pb.inc(n);
                }
            }
            Some(pb::read_snapshot_file_response::Item::Data(d)) => {
                let Some((f, path, ..)) = file.as_mut() else {
                    return Err(Failure::new(1, "the server sent data before a file entry"));
                };
                f.write_all(&d).map_err(|x| io("write", path, x))?;
                bytes += d.len() as u64;
                if let Some(pb) = &bar {
                    pb.inc(d.len() as u64);
                }
            }
            None => {}
        }
    }
    finish(file.take())?;
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    let holes_note = if holes > 0 {
        format!(" (and {} of holes, left sparse)", size(holes))
    } else {
        String::new()
    };
    let skipped_note = if skipped > 0 {
        format!(", {skipped} special file(s) skipped")
    } else {
        String::new()
    };
    out.done(
        &format!(
            "restored {source} from {snapshot} to {}: {files} file(s), {dirs} director(ies), {links} symlink(s), {}{holes_note}{skipped_note}",
            dest.display(),
            size(bytes)
        ),
        json!({
            "snapshot": snapshot, "source": source, "destination": dest.display().to_string(),
            "files": files, "directories": dirs, "symlinks": links, "skipped": skipped, "bytes": bytes,
            "hole_bytes": holes,
        }),
    );
    Ok(())
}

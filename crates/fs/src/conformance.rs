//! One suite of [`Filesystem`] behaviours every implementation must pass.
//!
//! Run [`run`] against a fresh, writable filesystem. Each case works in its
//! own directory under the root, so the suite can share one filesystem. A
//! failure names the case and what differed.

use crate::{
    CreateHow, Creds, ErrorKind, FileKind, Filesystem, InodeId, NAME_MAX, SetAttr, SetTime,
    SpecialKind, Timestamp,
};

type Outcome = std::result::Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

macro_rules! ok {
    ($e:expr) => {
        $e.map_err(|err| format!("{} failed: {:?}", stringify!($e), err))?
    };
}

fn expect_err<T: std::fmt::Debug>(r: crate::Result<T>, want: ErrorKind, what: &str) -> Outcome {
    match r {
        Err(e) if e.kind == want => Ok(()),
        Err(e) => Err(format!(
            "{what}: expected {want:?}, got {:?} ({})",
            e.kind, e.message
        )),
        Ok(v) => Err(format!("{what}: expected {want:?}, got Ok({v:?})")),
    }
}

/// Run every case; returns the failures joined, or `Ok` if all pass.
pub async fn run(fs: &dyn Filesystem) -> Outcome {
    let mut failures = Vec::new();
    macro_rules! case {
        ($name:ident) => {
            let dir = setup(fs, stringify!($name)).await?;
            if let Err(e) = $name(fs, dir).await {
                failures.push(format!("{}: {e}", stringify!($name)));
            }
        };
    }
    case!(create_write_read);
    case!(sparse_and_unaligned);
    case!(truncate_and_extend);
    case!(inline_to_chunked_and_back);
    case!(create_modes);
    case!(mkdir_rmdir);
    case!(rename_rules);
    case!(hard_links);
    case!(symlinks);
    case!(special_files);
    case!(readdir_paging);
    case!(permissions);
    case!(bad_names);
    case!(stale_handles);
    case!(setattr_times_and_guard);
    case!(fsstat_counts);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

fn root() -> Creds {
    Creds::root()
}

async fn setup(fs: &dyn Filesystem, name: &str) -> std::result::Result<InodeId, String> {
    let attrs = SetAttr {
        mode: Some(0o777),
        ..Default::default()
    };
    let a = fs
        .mkdir(&root(), fs.info().root, name.as_bytes(), &attrs)
        .await
        .map_err(|e| format!("setup of {name}: {e:?}"))?;
    Ok(a.ino)
}

async fn new_file(
    fs: &dyn Filesystem,
    dir: InodeId,
    name: &str,
) -> std::result::Result<InodeId, String> {
    Ok(ok!(fs
        .create(
            &root(),
            dir,
            name.as_bytes(),
            CreateHow::Guarded,
            &SetAttr::default()
        )
        .await)
    .ino)
}

async fn read_all(fs: &dyn Filesystem, ino: InodeId) -> std::result::Result<Vec<u8>, String> {
    let size = ok!(fs.getattr(ino).await).size;
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let (data, eof) = ok!(fs.read(&root(), ino, out.len() as u64, 1 << 20).await);
        out.extend_from_slice(&data);
        if eof || data.is_empty() {
            break;
        }
    }
    Ok(out)
}

/// Incompressible bytes (xorshift), different per seed.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (seed as u64).wrapping_mul(0x100_0000_01B3);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn first_diff(a: &[u8], b: &[u8]) -> String {
    if a.len() != b.len() {
        return format!("lengths differ: {} vs {}", a.len(), b.len());
    }
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!("first difference at byte {i}: {} vs {}", a[i], b[i]),
        None => "equal".into(),
    }
}

async fn create_write_read(fs: &dyn Filesystem, dir: InodeId) -> Outcome {
    let f = new_file(fs, dir, "data").await?;
    let data = pattern(300_000, 7);
    ok!(fs.write(&root(), f, 0, &data).await);
    let back = read_all(fs, f).await?;
    ensure!(
        back == data,
        "read-back differs: {}",
        first_diff(&back, &data)
    );
    let (tail, eof) = ok!(fs.read(&root(), f, 299_990, 100).await);
    ensure!(
        tail.len() == 10 && eof,
        "short read at the end: {} bytes, eof {eof}",
        tail.len()
    );
    let (none, eof) = ok!(fs.read(&root(), f, 400_000, 10).await);
    ensure!(none.is_empty() && eof, "read past the end returned data");
    let a = ok!(fs.lookup(&root(), dir, b"data").await);
    ensure!(
        a.ino == f && a.size == 300_000 && a.kind == FileKind::Regular,
        "lookup: {a:?}"
    );
    Ok(())
}

async fn sparse_and_unaligned(fs: &dyn Filesystem, dir: InodeId) -> Outcome {
    let f = new_file(fs, dir, "sparse").await?;
    let mut model = vec![0u8; 0];
    for (off, len, seed) in [
        (1_000_000u64, 5000usize, 1u8),
        (3, 70_000, 2),
        (65_530, 20, 3),
        (131_071, 2, 4),
    ] {
        let d = pattern(len, seed);
        ok!(fs.write(&root(), f, off, &d).await);
        let end = off as usize + len;
        if model.len() < end {
            model.resize(end, 0);
        }
        model[off as usize..end].copy_from_slice(&d);
    }
    let back = read_all(fs, f).await?;
    ensure!(
        back == model,
        "sparse file differs: {}",
        first_diff(&back, &model)
    );
    let (hole, _) = ok!(fs.read(&root(), f, 500_000, 4096).await);
    ensure!(hole.iter().all(|b| *b == 0), "hole did not read as zeros");
    // next_data: its runs go forward, stay within the file, and every byte
    // outside them is a hole (reads as zero).
    let mut covered = vec![false; model.len()];
    let mut at = 0u64;
    let mut calls = 0;
    while let Some(r) = ok!(fs.next_data(&root(), f, at).await) {
        calls += 1;
        ensure!(
            r.start >= at && r.end > r.start && r.end <= model.len() as u64,
            "next_data({at}) gave {r:?} in a file of {} bytes",
            model.len()
        );
        ensure!(calls < 10_000, "next_data does not reach the end of file");
        covered[r.start as usize..r.end as usize].fill(true);
        at = r.end;
    }
    let missed = model.iter().zip(&covered).position(|(b, c)| *b != 0 && !c);
    ensure!(
        missed.is_none(),
        "byte {missed:?} holds data but next_data called it a hole"
    );
    Ok(())
}

async fn truncate_and_extend(fs: &dyn Filesystem, dir: InodeId) -> Outcome {
    let f = new_file(fs, dir, "t").await?;
    let data = pattern(200_000, 9);
    ok!(fs.write(&root(), f, 0, &data).await);
    let size = |s| SetAttr {
        size: Some(s),
        ..Default::default()
    };
    ok!(fs.setattr(&root(), f, &size(70_001), None).await);
    ok!(fs.setattr(&root(), f, &size(150_000), None).await);
    let mut model = data[..70_001].to_vec();
    model.resize(150_000, 0);
    let back = read_all(fs, f).await?;
    ensure!(
        back == model,
        "truncate then extend: {}",
        first_diff(&back, &model)
    );
    ok!(fs.setattr(&root(), f, &size(0), None).await);
    ensure!(ok!(fs.getattr(f).await).size == 0, "truncate to zero");
    ensure!(read_all(fs, f).await?.is_empty(), "empty after truncate");
    Ok(())
}

async fn inline_to_chunked_and_back(fs: &dyn Filesystem, dir: InodeId) -> Outcome {
    let f = new_file(fs, dir, "small").await?;
    ok!(fs.write(&root(), f, 0, b"hello").await);
    ok!(fs.write(&root(), f, 4000, b"world").await);
    let mut model = b"hello".to_vec();
    model.resize(4000, 0);
    model.extend_from_slice(b"world");
    ensure!(read_all(fs, f).await? == model, "small file content");
    ok!(fs.write(&root(), f, 100_000, b"!").await);
    model.resize(100_000, 0);
    model.push(b'!');
    let back = read_all(fs, f).await?;
    ensure!(back == model, "grown file: {}", first_diff(&back, &model));
    ok!(fs
        .setattr(
            &root(),
            f,
            &SetAttr {
                size: Some(3),
                ..Default::default()
            },
            None
        )
        .await);
    ensure!(read_all(fs, f).await? == b"hel", "shrunk file");
    Ok(())
}

async fn create_modes(fs: &dyn Filesystem, dir: InodeId) -> Outcome {
    let f = new_file(fs, dir, "f").await?;
    expect_err(
        fs.create(&root(), dir, b"f", CreateHow::Guarded, &SetAttr::default())
            .await,
        ErrorKind::Exists,
        "guarded create over an existing file",
    )?;
    ok!(fs.write(&root(), f, 0, b"abc").await);
    let a = ok!(fs
        .create(
            &root(),
            dir,
            b"f",
            CreateHow::Unchecked,
            &SetAttr {
                size: Some(0),
                ..Default::default()
            }
        )
        .await);
    ensure!(
        a.ino == f && a.size == 0,
        "unchecked create truncates the existing file: {a:?}"
    );
    let v = *b"verifier";
    let e1 = ok!(fs
        .create(
            &root(),
            dir,
            b"x",
            CreateHow::Exclusive(v),
            &SetAttr::default()
        )
        .await);
    let e2 = ok!(fs
        .create(
            &root(),
            dir,
            b"x",
            CreateHow::Exclusive(v),
            &SetAttr::default()
        )
        .await);
    ensure!(
        e1.ino == e2.ino,
        "exclusive create retransmission returns the same file"
    );
    expect_err(
        fs.create(
            &root(),
            dir,
            b"x",
            CreateHow::Exclusive(*b"otherone"),
            &SetAttr::default(),
        )
        .await,
        ErrorKind::Exists,
        "exclusive create with another verifier",
    )?;
    let m = ok!(fs
        .create(
            &root(),
            dir,
            b"m",
            CreateHow::Guarded,
            &SetAttr {
                mode: Some(0o600),
                ..Default::default()
            }
        )
        .await);
    ensure!(m.mode == 0o600, "create mode: {:o}", m.mode);
    Ok(())
}

async fn mkdir_rmdir(fs: &dyn Filesystem, dir: InodeId) -> Outcome {
    let before = ok!(fs.getattr(dir).await).nlink;
    let d = ok!(fs.mkdir(&root(), dir, b"sub", &SetAttr::default()).await);
    ensure!(
        d.nlink == 2 && d.kind == FileKind::Directory,
        "new directory: {d:?}"
    );
    ensure!(
        ok!(fs.getattr(dir).await).nlink == before + 1,
        "parent nlink grows with a subdirectory"
    );
    let dotdot = ok!(fs.lookup(&root(), d.ino, b"..").await);
    ensure!(dotdot.ino == dir, "'..' of sub is its parent");
    let dot = ok!(fs.lookup(&root(), d.ino, b".").await);
    ensure!(dot.ino == d.ino, "'.' is the directory");
    expect_err(
        fs.mkdir(&root(), dir, b"sub", &SetAttr::default()).await,
        ErrorKind::Exists,
        "mkdir over existing",
    )?;
    new_file(fs, d.ino, "inside").await?;
    expect_err(
        fs.rmdir(&root(), dir, b"sub").await,
        ErrorKind::NotEmpty,
        "rmdir non-empty",
    )?;
    expect_err(
        fs.remove(&root(), dir, b"sub").await,
        ErrorKind::IsDir,
        "remove on a directory",
    )?;
    ok!(fs.remove(&root(), d.ino, b"inside").await);
    expect_err(
        fs.rmdir(&root(), d.ino, b".").await,
        ErrorKind::Invalid,
        "rmdir '.'",
    )?;
    let f = new_file(fs, dir, "file").await?;
    let _ = f;
    expect_err(
        fs.rmdir(&root(), dir, b"file").await,
        ErrorKind::NotDir,
        "rmdir on a file",
    )?;
    ok!(fs.rmdir(&root(), dir, b"sub").await);
    ensure!(
        ok!(fs.getattr(dir).await).nlink == before,
        "parent nlink shrinks back"
    );
    expect_err(
        fs.getattr(d.ino).await,
        ErrorKind::Stale,
        "removed directory's handle",
    )?;
    Ok(())
}

async fn rename_rules(fs: &dyn Filesystem, dir: InodeId) -> Outcome {
    let a = new_file(fs, dir, "a").await?;
    ok!(fs.write(&root(), a, 0, b"A").await);
    let b = new_file(fs, dir, "b").await?;
    ok!(fs.rename(&root(), dir, b"a", dir, b"a").await);
    ensure!(
        ok!(fs.lookup(&root(), dir, b"a").await).ino == a,
        "same-name rename is a no-op"
    );
    ok!(fs.rename(&root(), dir, b"a", dir, b"b").await);
    expect_err(
        fs.lookup(&root(), dir, b"a").await,
        ErrorKind::NotFound,
        "source gone after rename",
    )?;
    ensure!(
        ok!(fs.lookup(&root(), dir, b"b").await).ino == a,
        "target replaced by source"
    );
    expect_err(fs.getattr(b).await, ErrorKind::Stale, "replaced file freed")?;
    let d1 = ok!(fs.mkdir(&root(), dir, b"d1", &SetAttr::default()).await).ino;
    let d2 = ok!(fs.mkdir(&root(), d1, b"d2", &SetAttr::default()).await).ino;
    expect_err(
        fs.rename(&root(), dir, b"d1", d2, b"x").await,
        ErrorKind::Invalid,
        "directory into its own subtree",
    )?;
    let e = ok!(fs.mkdir(&root(), dir, b"empty", &SetAttr::default()).await).ino;
    let full = ok!(fs.mkdir(&root(), dir, b"full", &SetAttr::default()).await).ino;
    new_file(fs, full, "x").await?;
    expect_err(
        fs.rename(&root(), dir, b"d1", dir, b"full").await,
        ErrorKind::NotEmpty,
        "rename onto a non-empty directory",
    )?;
    expect_err(
        fs.rename(&root(), dir, b"b", dir, b"empty").await,
        ErrorKind::IsDir,
        "file onto a directory",
    )?;
    expect_err(
        fs.rename(&root(), dir, b"d1", dir, b"b").await,
        ErrorKind::NotDir,
        "directory onto a file",
    )?;
    let nlink = ok!(fs.getattr(dir).await).nlink;
    ok!(fs.rename(&root(), dir, b"d1", dir, b"empty").await);
    expect_err(
        fs.getattr(e).await,
        ErrorKind::Stale,
        "replaced empty directory freed",
    )?;
    ensure!(
        ok!(fs.getattr(dir).await).nlink == nlink - 1,
        "parent nlink after replacing a directory"
    );
    // Move a directory across parents: nlinks and '..' follow.
    ok!(fs.rename(&root(), dir, b"empty", full, b"moved").await);
    ensure!(
        ok!(fs.lookup(&root(), d1, b"..").await).ino == full,
        "'..' follows the move"
    );
    ensure!(ok!(fs.getattr(full).await).nlink == 3, "new parent nlink");
    ensure!(
        ok!(fs.getattr(dir).await).nlink == nlink - 2,
        "old parent nlink"
    );
    ensure!(
        ok!(fs.lookup(&root(), d1, b"d2").await).ino == d2,
        "subtree moved intact"
    );
    expect_err(
        fs.rename(&root(), dir, b"nope", dir, b"x").await,
        ErrorKind::NotFound,
        "rename of a missing name",
    )?;
    Ok(())
}

async fn hard_links(fs: &dyn Filesystem, dir: InodeId) -> Outcome {
    let f = new_file(fs, dir, "orig").await?;
    ok!(fs.write(&root(), f, 0, &pattern(100_000, 3)).await);
    let a = ok!(fs.link(&root(), f, dir, b"alias").await);
    ensure!(a.nlink == 2, "nlink after link: {}", a.nlink);
    expect_err(
        fs.link(&root(), f, dir, b"alias").await,
        ErrorKind::Exists,
        "link over an existing name",
    )?;
    expect_err(
        fs.link(&root(), dir, dir, b"dirlink").await,
        ErrorKind::Permission,
        "hard link to a directory",
    )?;
    ok!(fs.remove(&root(), dir, b"orig").await);
    ensure!(
        ok!(fs.getattr(f).await).nlink == 1,
        "nlink after removing one name"
    );
    ensure!(
        read_all(fs, f).await? == pattern(100_000, 3),
        "data survives through the other link"
    );
    ok!(fs.link(&root(), f, dir, b"again").await);
    ok!(fs.rename(&root(), dir, b"alias", dir, b"again").await);
    ensure!(
        ok!(fs.getattr(f).await).nlink == 2,
        "rename onto another link of the same inode is a no-op"
    );
    ok!(fs.remove(&root(), dir, b"alias").await);
    ok!(fs.remove(&root(), dir, b"again").await);
    expect_err(
        fs.getattr(f).await,
        ErrorKind::Stale,
        "inode freed with its last link",
    )?;
    Ok(())
}

async fn symlinks(fs: &dyn Filesystem, dir: InodeId) -> Outcome {
    let s = ok!(fs
        .symlink(&root(), dir, b"ln", b"../some/target", &SetAttr::default())
        .await);
    ensure!(
        s.kind == FileKind::Symlink && s.size == 14,
        "symlink attrs: {s:?}"
    );
    ensure!(
        ok!(fs.readlink(s.ino).await).as_ref() == b"../some/target",
        "readlink"
    );
    let f = new_file(fs, dir, "f").await?;
    expect_err(
        fs.readlink(f).await,
        ErrorKind::Invalid,
        "readlink of a file",
    )?;
    expect_err(
        fs.symlink(
            &root(),
            dir,
            b"long",
            &vec![b'a'; 5000],
            &SetAttr::default(),
        )
        .await,
        ErrorKind::NameTooLong,
        "over-long target",
    )?;
    Ok(())
}

async fn special_files(fs: &dyn Filesystem, dir: InodeId) -> Outcome {
    let p = ok!(fs
        .mknod(
            &root(),
            dir,
            b"pipe",
            SpecialKind::Fifo,
            &SetAttr::default()
        )
        .await);
    ensure!(p.kind == FileKind::Fifo, "fifo kind");
    let s = ok!(fs
        .mknod(
            &root(),
            dir,
            b"sock",
            SpecialKind::Socket,
            &SetAttr::default()
        )
        .await);
    ensure!(s.kind == FileKind::Socket, "socket kind");
    let c = ok!(fs
        .mknod(
            &root(),
            dir,
            b"chr",
            SpecialKind::Char(4, 5),
            &SetAttr::default()
        )
        .await);
    ensure!(
        c.kind == FileKind::CharDevice && c.rdev == (4, 5),
        "char device: {c:?}"
    );
    let b = ok!(fs
        .mknod(
            &root(),
            dir,
            b"blk",
            SpecialKind::Block(8, 1),
            &SetAttr::default()
        )
        .await);
    ensure!(
        b.kind == FileKind::BlockDevice && b.rdev == (8, 1),
        "block device: {b:?}"
    );
    expect_err(
        fs.mknod(
            &Creds::user(1000, 1000),
            dir,
            b"c2",
            SpecialKind::Char(1, 1),
            &SetAttr::default(),
        )
        .await,
        ErrorKind::Permission,
        "device node by a non-root user",
    )?;
    expect_err(
        fs.read(&root(), p.ino, 0, 10).await,
        ErrorKind::Invalid,
        "read of a fifo through the filesystem",
    )?;
    Ok(())
}

async fn readdir_paging(fs: &dyn Filesystem, dir: InodeId) -> Outcome {
    let n = 1000;
    for i in 0..n {
        ok!(fs
            .create(
                &root(),
                dir,
                format!("entry-{i}").as_bytes(),
                CreateHow::Guarded,
                &SetAttr::default()
            )
            .await);
    }
    let mut seen = std::collections::BTreeSet::new();
    let (mut cookie, mut verifier) = (0u64, 0u64);
    let mut pages = 0;
    loop {
        let page = ok!(fs.readdir(&root(), dir, cookie, verifier, 37).await);
        pages += 1;
        ensure!(pages < 1000, "readdir does not terminate");
        for e in &page.entries {
            ensure!(
                seen.insert(e.name.clone()),
                "entry {:?} listed twice",
                String::from_utf8_lossy(&e.name)
            );
        }
        if let Some(last) = page.entries.last() {
            cookie = last.cookie;
        }
        verifier = page.verifier;
        if page.eof {
            break;
        }
        // Changes between pages must not break resumption.
        if pages == 3 {
            ok!(fs
                .create(
                    &root(),
                    dir,
                    b"late-arrival",
                    CreateHow::Guarded,
                    &SetAttr::default()
                )
                .await);
        }
    }
    for i in 0..n {
        ensure!(
            seen.contains(format!("entry-{i}").as_bytes()),
            "entry-{i} missing from the listing"
        );
    }
    expect_err(
        fs.readdir(&root(), dir, 12345, 0xdead_beef, 10).await,
        ErrorKind::BadCookie,
        "foreign verifier",
    )?;
    let f = new_file(fs, dir, "plain").await?;
    expect_err(
        fs.readdir(&root(), f, 0, 0, 10).await,
        ErrorKind::NotDir,
        "readdir of a file",
    )?;
    Ok(())
}

async fn permissions(fs: &dyn Filesystem, dir: InodeId) -> Outcome {
    let alice = Creds::user(1000, 1000);
    let bob = Creds::user(1001, 1001);
    let private = ok!(fs
        .mkdir(
            &alice,
            dir,
            b"alice",
            &SetAttr {
                mode: Some(0o700),
                ..Default::default()
            }
        )
        .await);
    ensure!(
        private.uid == 1000 && private.gid == 1000,
        "owner of a new directory: {private:?}"
    );
    let f = ok!(fs
        .create(
            &alice,
            private.ino,
            b"secret",
            CreateHow::Guarded,
            &SetAttr {
                mode: Some(0o600),
                ..Default::default()
            }
        )
        .await);
    ok!(fs.write(&alice, f.ino, 0, b"mine").await);
    expect_err(
        fs.lookup(&bob, private.ino, b"secret").await,
        ErrorKind::Access,
        "search without x",
    )?;
    expect_err(
        fs.read(&bob, f.ino, 0, 4).await,
        ErrorKind::Access,
        "read without r",
    )?;
    expect_err(
        fs.write(&bob, f.ino, 0, b"x").await,
        ErrorKind::Access,
        "write without w",
    )?;
    expect_err(
        fs.create(
            &bob,
            private.ino,
            b"intruder",
            CreateHow::Guarded,
            &SetAttr::default(),
        )
        .await,
        ErrorKind::Access,
        "create without w",
    )?;
    expect_err(
        fs.setattr(
            &bob,
            f.ino,
            &SetAttr {
                mode: Some(0o777),
                ..Default::default()
            },
            None,
        )
        .await,
        ErrorKind::Permission,
        "chmod by non-owner",
    )?;
    expect_err(
        fs.setattr(
            &alice,
            f.ino,
            &SetAttr {
                uid: Some(1001),
                ..Default::default()
            },
            None,
        )
        .await,
        ErrorKind::Permission,
        "chown by non-root",
    )?;
    ok!(fs
        .setattr(
            &root(),
            f.ino,
            &SetAttr {
                uid: Some(1001),
                ..Default::default()
            },
            None
        )
        .await);
    ensure!(ok!(fs.getattr(f.ino).await).uid == 1001, "chown by root");
    ensure!(
        ok!(fs.read(&root(), f.ino, 0, 4).await).0.as_ref() == b"mine",
        "root reads anything"
    );
    // Read-only file: its owner may still write (no open() in the protocol).
    let ro = ok!(fs
        .create(
            &alice,
            dir,
            b"ro",
            CreateHow::Guarded,
            &SetAttr {
                mode: Some(0o444),
                ..Default::default()
            }
        )
        .await);
    ok!(fs.write(&alice, ro.ino, 0, b"ok").await);
    // Sticky directory: bob cannot remove alice's file.
    let tmp = ok!(fs
        .mkdir(
            &root(),
            dir,
            b"tmp",
            &SetAttr {
                mode: Some(0o1777),
                ..Default::default()
            }
        )
        .await);
    ok!(fs
        .create(
            &alice,
            tmp.ino,
            b"a",
            CreateHow::Guarded,
            &SetAttr::default()
        )
        .await);
    expect_err(
        fs.remove(&bob, tmp.ino, b"a").await,
        ErrorKind::Permission,
        "sticky directory removal by another user",
    )?;
    expect_err(
        fs.rename(&bob, tmp.ino, b"a", tmp.ino, b"b").await,
        ErrorKind::Permission,
        "sticky directory rename by another user",
    )?;
    ok!(fs.remove(&alice, tmp.ino, b"a").await);
    let granted = ok!(fs.access(&bob, private.ino, 7).await);
    ensure!(granted == 0, "access bits for other on 0700: {granted}");
    Ok(())
}

async fn bad_names(fs: &dyn Filesystem, dir: InodeId) -> Outcome {
    let long = vec![b'n'; NAME_MAX + 1];
    let max = vec![b'm'; NAME_MAX];
    let attrs = SetAttr::default();
    for (name, want) in [
        (&b""[..], ErrorKind::Invalid),
        (b"a/b", ErrorKind::Invalid),
        (b"a\0b", ErrorKind::Invalid),
        (&long[..], ErrorKind::NameTooLong),
    ] {
        let what = format!("name {:?}", String::from_utf8_lossy(name));
        expect_err(
            fs.create(&root(), dir, name, CreateHow::Guarded, &attrs)
                .await,
            want,
            &what,
        )?;
        expect_err(fs.mkdir(&root(), dir, name, &attrs).await, want, &what)?;
        expect_err(fs.lookup(&root(), dir, name).await, want, &what)?;
    }
    expect_err(
        fs.create(&root(), dir, b".", CreateHow::Guarded, &attrs)
            .await,
        ErrorKind::Exists,
        "create '.'",
    )?;
    expect_err(
        fs.mkdir(&root(), dir, b"..", &attrs).await,
        ErrorKind::Exists,
        "mkdir '..'",
    )?;
    expect_err(
        fs.remove(&root(), dir, b".").await,
        ErrorKind::Invalid,
        "remove '.'",
    )?;
    ok!(fs
        .create(&root(), dir, &max, CreateHow::Guarded, &attrs)
        .await);
    let f = new_file(fs, dir, "big").await?;
    expect_err(
        fs.write(&root(), f, crate::MAX_FILE_SIZE, b"x").await,
        ErrorKind::FileTooBig,
        "write past the maximum size",
    )?;
    expect_err(
        fs.write(&root(), f, u64::MAX - 1, b"xyz").await,
        ErrorKind::FileTooBig,
        "write whose end overflows",
    )?;
    expect_err(
        fs.setattr(
            &root(),
            f,
            &SetAttr {
                size: Some(u64::MAX),
                ..Default::default()
            },
            None,
        )
        .await,
        ErrorKind::FileTooBig,
        "truncate past the maximum size",
    )?;
    // Nothing changed: only the entries made above exist.
    let page = ok!(fs.readdir(&root(), dir, 0, 0, 100).await);
    ensure!(
        page.entries.len() == 2,
        "bad input left entries behind: {:?}",
        page.entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .collect::<Vec<_>>()
    );
    Ok(())
}

async fn stale_handles(fs: &dyn Filesystem, dir: InodeId) -> Outcome {
    let bogus = u64::MAX - 7;
    expect_err(
        fs.getattr(bogus).await,
        ErrorKind::Stale,
        "getattr of a never-used inode",
    )?;
    expect_err(
        fs.read(&root(), bogus, 0, 1).await,
        ErrorKind::Stale,
        "read of a never-used inode",
    )?;
    expect_err(
        fs.write(&root(), bogus, 0, b"x").await,
        ErrorKind::Stale,
        "write of a never-used inode",
    )?;
    expect_err(
        fs.lookup(&root(), bogus, b"x").await,
        ErrorKind::Stale,
        "lookup in a never-used directory",
    )?;
    expect_err(
        fs.create(
            &root(),
            bogus,
            b"x",
            CreateHow::Guarded,
            &SetAttr::default(),
        )
        .await,
        ErrorKind::Stale,
        "create in a never-used directory",
    )?;
    let f = new_file(fs, dir, "gone").await?;
    expect_err(
        fs.lookup(&root(), f, b"x").await,
        ErrorKind::NotDir,
        "lookup in a file",
    )?;
    ok!(fs.remove(&root(), dir, b"gone").await);
    expect_err(
        fs.write(&root(), f, 0, b"x").await,
        ErrorKind::Stale,
        "write through a removed file's handle",
    )?;
    Ok(())
}

async fn setattr_times_and_guard(fs: &dyn Filesystem, dir: InodeId) -> Outcome {
    let f = new_file(fs, dir, "times").await?;
    let t = Timestamp {
        sec: 1_000_000_000,
        nsec: 5,
    };
    let a = ok!(fs
        .setattr(
            &root(),
            f,
            &SetAttr {
                atime: SetTime::At(t),
                mtime: SetTime::At(t),
                ..Default::default()
            },
            None
        )
        .await);
    ensure!(a.atime == t && a.mtime == t, "explicit times: {a:?}");
    let b = ok!(fs
        .setattr(
            &root(),
            f,
            &SetAttr {
                mtime: SetTime::Now,
                ..Default::default()
            },
            None
        )
        .await);
    ensure!(b.mtime > t, "mtime now");
    expect_err(
        fs.setattr(
            &root(),
            f,
            &SetAttr {
                mode: Some(0o600),
                ..Default::default()
            },
            Some(t),
        )
        .await,
        ErrorKind::NotSync,
        "guard mismatch",
    )?;
    let c = ok!(fs
        .setattr(
            &root(),
            f,
            &SetAttr {
                mode: Some(0o600),
                ..Default::default()
            },
            Some(b.ctime)
        )
        .await);
    ensure!(c.mode == 0o600, "guarded setattr applies on a match");
    let other = Creds::user(4242, 4242);
    expect_err(
        fs.setattr(
            &other,
            f,
            &SetAttr {
                mtime: SetTime::At(t),
                ..Default::default()
            },
            None,
        )
        .await,
        ErrorKind::Permission,
        "explicit time by non-owner",
    )?;
    Ok(())
}

async fn fsstat_counts(fs: &dyn Filesystem, dir: InodeId) -> Outcome {
    let before = ok!(fs.fsstat().await);
    let f = new_file(fs, dir, "counted").await?;
    let after = ok!(fs.fsstat().await);
    ensure!(
        after.used_files == before.used_files + 1,
        "used inodes grow by one: {before:?} -> {after:?}"
    );
    ok!(fs.write(&root(), f, 0, &pattern(1 << 20, 99)).await);
    let grown = ok!(fs.fsstat().await);
    ensure!(
        grown.used_bytes >= before.used_bytes + (1 << 19),
        "used bytes grow with data: {before:?} -> {grown:?}"
    );
    ensure!(
        grown.total_bytes >= grown.used_bytes && grown.free_bytes <= grown.total_bytes,
        "totals consistent: {grown:?}"
    );
    ok!(fs.commit().await);
    Ok(())
}

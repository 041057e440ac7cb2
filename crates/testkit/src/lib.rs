//! Test support for end-to-end tests: start the real `cairn-nfs` (or
//! `cairn-rpc`) binary on free ports, read where it listens from its output,
//! run real clients against it (Debian's libnfs utilities, the crates.io
//! `nfs3_client`, the `cairn` CLI), and stop or kill it.
//!
//! Must never know: cairn's internals. It only runs binaries and clients.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use nfs3_client;
pub use nfs3_types;

use nfs3_client::Nfs3ConnectionBuilder;
use nfs3_client::tokio::{TokioConnector, TokioIo};
use nfs3_types::rpc::{auth_unix, opaque_auth};

/// How long a server may take to say where it listens.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A binary of this workspace, built beside the running test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built; run the tests with `cargo xtask test` (or build the workspace first)",
        p.display()
    );
    p
}

/// A running server binary.
pub struct Server {
    child: Option<Child>,
    /// NFS (and MOUNT) port, if it serves NFS.
    pub nfs_port: u16,
    /// Admin API address (`host:port`).
    pub rpc_addr: String,
    /// Everything it printed on stdout before it was ready.
    pub banner: Vec<String>,
    /// Its stderr, in a file (for failure messages).
    pub log: PathBuf,
    _logdir: tempfile::TempDir,
}

impl Server {
    /// Start `cairn-nfs` on `store` with free ports and `extra` arguments.
    pub fn nfs(store: &str, extra: &[&str]) -> Server {
        let mut args = vec![
            "--store",
            store,
            "--nfs-listen",
            "127.0.0.1:0",
            "--rpc-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        Self::start("cairn-nfs", &args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start a server binary; `Err` with its stderr if it exits first.
    pub fn start(binary: &str, args: &[&str]) -> Result<Server, String> {
        let logdir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let log = logdir.path().join("stderr.log");
        let err = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let mut child = Command::new(bin(binary))
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {binary}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = Vec::new();
        let (mut nfs_port, mut rpc_addr) = (0u16, String::new());
        let wants_nfs = binary == "cairn-nfs";
        loop {
            let line = match rx.recv_timeout(START_TIMEOUT) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
                    return Err(format!("{binary} did not become ready:\n{stderr}"));
                }
            };
            if let Some(a) = line.split("NFS listening on ").nth(1) {
                nfs_port = a
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim().parse().ok())
                    .unwrap_or(0);
            }
            if let Some(a) = line.split("admin API listening on ").nth(1) {
                rpc_addr = a.split_whitespace().next().unwrap_or("").to_string();
            }
            banner.push(line);
            if !rpc_addr.is_empty() && (!wants_nfs || nfs_port != 0) {
                break;
            }
        }
        Ok(Server {
            child: Some(child),
            nfs_port,
            rpc_addr,
            banner,
            log,
            _logdir: logdir,
        })
    }

    /// The admin endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.rpc_addr)
    }

    /// A libnfs URL for `path` (absolute, e.g. `/dir/file`) on the default
    /// export.
    pub fn url(&self, path: &str) -> String {
        format!(
            "nfs://127.0.0.1/{path}?nfsport={p}&mountport={p}",
            p = self.nfs_port
        )
    }

    /// The server's stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Stop it with SIGTERM and wait for it to exit: its status and stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running server");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let status = child.wait().expect("wait for the server");
        (status, self.stderr())
    }

    /// Kill it with SIGKILL (a crash) and wait.
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run a command and capture everything.
pub fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    let program = program.as_ref();
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program:?}: {e}"))
}

/// Run a command; panic with its output unless it succeeds.
pub fn ok(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    let program = program.as_ref();
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program:?} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Random-looking bytes from a seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The `i`th block of a distinct data set: `blocks[i % len]` with `i`
/// stamped into every 4 KiB, so no chunk repeats at any chunk size.
pub fn stamped(blocks: &[Vec<u8>], i: usize) -> Vec<u8> {
    let mut data = blocks[i % blocks.len()].clone();
    for c in (0..data.len()).step_by(4096) {
        let end = (c + 8).min(data.len());
        data[c..end].copy_from_slice(&(i as u64).to_le_bytes()[..end - c]);
    }
    data
}

/// An NFSv3 connection made with the crates.io `nfs3_client`.
pub type Nfs = nfs3_client::Nfs3Connection<TokioIo<tokio::net::TcpStream>>;

/// Mount `path` on the server's NFS port as `uid`/`gid`.
pub async fn mount(port: u16, path: &str, uid: u32, gid: u32) -> Nfs {
    let auth = auth_unix {
        uid,
        gid,
        machinename: nfs3_types::xdr_codec::Opaque::owned(b"testkit".to_vec()),
        ..Default::default()
    };
    Nfs3ConnectionBuilder::new(TokioConnector, "127.0.0.1", path)
        .connect_from_privileged_port(false)
        .mount_port(port)
        .nfs3_port(port)
        .credential(opaque_auth::auth_unix(&auth))
        .mount()
        .await
        .unwrap_or_else(|e| panic!("mount {path} on port {port}: {e:?}"))
}

/// Create (UNCHECKED) the file `name` in the export's root: its handle.
pub async fn create_file(c: &mut Nfs, name: &str) -> nfs3_types::nfs3::nfs_fh3 {
    use nfs3_types::nfs3::*;
    let root = c.root_nfs_fh3();
    let r = c
        .create(&CREATE3args {
            where_: dirop(root, name.as_bytes()),
            how: createhow3::UNCHECKED(sattr3::default()),
        })
        .await
        .expect("rpc");
    match r {
        Nfs3Result::Ok(CREATE3resok {
            obj: Nfs3Option::Some(fh),
            ..
        }) => fh,
        Nfs3Result::Ok(_) => panic!("create {name}: no handle"),
        Nfs3Result::Err((s, _)) => panic!("create {name}: {s:?}"),
    }
}

/// COMMIT the whole file; panics unless it succeeds.
pub async fn commit(c: &mut Nfs, fh: &nfs3_types::nfs3::nfs_fh3) {
    use nfs3_types::nfs3::*;
    let r = c
        .commit(&COMMIT3args {
            file: fh.clone(),
            offset: 0,
            count: 0,
        })
        .await
        .expect("rpc");
    assert!(matches!(r, Nfs3Result::Ok(_)), "commit failed");
}

/// An UNSTABLE WRITE of `data` at `offset`; the server's status if it fails.
pub async fn write_unstable(
    c: &mut Nfs,
    fh: &nfs3_types::nfs3::nfs_fh3,
    offset: u64,
    data: &[u8],
) -> Result<(), nfs3_types::nfs3::nfsstat3> {
    use nfs3_types::nfs3::*;
    let r = c
        .write(&WRITE3args {
            file: fh.clone(),
            offset,
            count: data.len() as u32,
            stable: stable_how::UNSTABLE,
            data: nfs3_types::xdr_codec::Opaque::borrowed(data),
        })
        .await
        .expect("rpc");
    match r {
        Nfs3Result::Ok(_) => Ok(()),
        Nfs3Result::Err((s, _)) => Err(s),
    }
}

/// The handle of `path`'s parent directory and its last component.
async fn parent_of<'a>(c: &mut Nfs, path: &'a str) -> (nfs3_types::nfs3::nfs_fh3, &'a str) {
    use nfs3_types::nfs3::{LOOKUP3args, Nfs3Result};
    let mut dir = c.root_nfs_fh3();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let (last, parents) = parts.split_last().expect("a path");
    for p in parents {
        let r = c
            .lookup(&LOOKUP3args {
                what: dirop(dir.clone(), p.as_bytes()),
            })
            .await
            .expect("rpc");
        dir = match r {
            Nfs3Result::Ok(ok) => ok.object,
            Nfs3Result::Err((s, _)) => panic!("lookup {p}: {s:?}"),
        };
    }
    (dir, last)
}

fn block_on<F: std::future::Future + Send>(f: F) -> F::Output
where
    F::Output: Send,
{
    // On its own thread, so it also works from inside a test's runtime.
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(f)
        })
        .join()
        .expect("helper thread")
    })
}

/// The arguments naming `name` in directory `dir`.
pub fn dirop(dir: nfs3_types::nfs3::nfs_fh3, name: &[u8]) -> nfs3_types::nfs3::diropargs3<'_> {
    nfs3_types::nfs3::diropargs3 {
        dir,
        name: nfs3_types::nfs3::filename3(nfs3_types::xdr_codec::Opaque::borrowed(name)),
    }
}

/// Remove the file at `path` (`/dir/name`) of the default export with
/// nfs3_client (Debian's libnfs utilities have no `rm`). Blocking.
pub fn nfs_remove(port: u16, path: &str) {
    use nfs3_types::nfs3::{Nfs3Result, REMOVE3args};
    block_on(async {
        let mut c = mount(port, "/", 0, 0).await;
        let (dir, last) = parent_of(&mut c, path).await;
        let r = c
            .remove(&REMOVE3args {
                object: dirop(dir, last.as_bytes()),
            })
            .await
            .expect("rpc");
        if let Nfs3Result::Err((s, _)) = r {
            panic!("remove {path}: {s:?}");
        }
    });
}

/// Make the directory `path` (mode 0755) with nfs3_client. Blocking.
pub fn nfs_mkdir(port: u16, path: &str) {
    use nfs3_types::nfs3::{MKDIR3args, Nfs3Option, Nfs3Result, sattr3};
    block_on(async {
        let mut c = mount(port, "/", 0, 0).await;
        let (dir, last) = parent_of(&mut c, path).await;
        let r = c
            .mkdir(&MKDIR3args {
                where_: dirop(dir, last.as_bytes()),
                attributes: sattr3 {
                    mode: Nfs3Option::Some(0o755),
                    ..Default::default()
                },
            })
            .await
            .expect("rpc");
        if let Nfs3Result::Err((s, _)) = r {
            panic!("mkdir {path}: {s:?}");
        }
    });
}

/// A local S3-compatible server (the `moto` server, from PyPI
/// `moto[server]`) on a free loopback port, with one bucket.
pub struct Moto {
    child: Child,
    /// Its endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket created at start.
    pub bucket: String,
}

impl Moto {
    /// Start the moto server (`python3 -m moto.server`) and create `bucket`
    /// with one unsigned PUT.
    pub fn start(bucket: &str) -> Moto {
        let mut child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start the moto server ({e}); install it with `pip install 'moto[server]'` (.ci/run does)")
            });
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.split("Running on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let endpoint = rx
            .recv_timeout(START_TIMEOUT)
            .expect("the moto server did not start (is `moto[server]` installed?)");
        let moto = Moto {
            child,
            endpoint,
            bucket: bucket.to_string(),
        };
        moto.http_put(&format!("/{bucket}"));
        moto
    }

    /// One unsigned HTTP PUT with an empty body.
    fn http_put(&self, path: &str) {
        use std::io::{Read, Write};
        let host = self.endpoint.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(host).expect("connect to moto");
        write!(
            s,
            "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "creating the bucket: {reply}"
        );
    }

    /// A cairn config for an `s3://` store under `prefix`, with `extra`
    /// lines appended to `[storage.options]`.
    pub fn config(&self, prefix: &str, extra: &str) -> String {
        format!(
            "[storage]\nurl = \"s3://{}/{prefix}\"\n[storage.options]\naws_endpoint = \"{}\"\naws_allow_http = \"true\"\naws_access_key_id = \"test\"\naws_secret_access_key = \"test\"\naws_region = \"us-east-1\"\n{extra}",
            self.bucket, self.endpoint
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

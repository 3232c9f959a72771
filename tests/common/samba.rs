//! What the AD hash-sync tests share: the independent readers of the lab DC's NT hashes
//! (`samba-tool` on its database, impacket's `secretsdump` over DRSUAPI), a guard that
//! deletes a test's OU, and a proxy that cuts a replication reply in the middle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;

use super::{admin, lab, Lab};

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// `samba-tool` on the lab DC's own database (local, as root), with the lab's smb.conf.
pub fn samba_tool(lab: &Lab, args: &[&str]) -> String {
    let out = Command::new("samba-tool")
        .args(args)
        .arg("-s")
        .arg(lab.get("AD_SMB_CONF"))
        .output()
        .expect("run samba-tool");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "samba-tool {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The NT hash `samba-tool user getpassword --attributes=unicodePwd` prints (base64).
pub fn samba_tool_nt(lab: &Lab, sam: &str) -> String {
    let out = samba_tool(
        lab,
        &["user", "getpassword", sam, "--attributes=unicodePwd"],
    );
    let b64 = out
        .lines()
        .find_map(|l| l.strip_prefix("unicodePwd:: "))
        .unwrap_or_else(|| panic!("no unicodePwd for {sam}"));
    hex(&base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .expect("base64"))
}

/// The NT hashes impacket's `secretsdump` (with the lab's schemaInfo fix) reads over
/// DRSUAPI as `svc-sync`, by sAMAccountName: one `-just-dc-user` run per user, all at
/// once (a whole-domain dump takes minutes once other tests have filled the lab). Run
/// from a scratch directory: it leaves a file in its cwd.
pub fn secretsdump_nts(
    lab: &Lab,
    scratch: &std::path::Path,
    sams: &[&str],
) -> HashMap<String, String> {
    let venv_bin = super::federation::tools().join("venv/bin");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/lab/secretsdump-samba.py");
    let target = format!(
        "{}/svc-sync:{}@{}",
        lab.get("AD_DOMAIN"),
        lab.get("AD_SVC_SYNC_PASSWORD"),
        lab.get("AD_HOST")
    );
    let path = format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let children: Vec<_> = sams
        .iter()
        .map(|sam| {
            let child = Command::new(venv_bin.join("python"))
                .arg(&script)
                .args(["-just-dc-user", &format!("{}/{sam}", lab.get("AD_DOMAIN"))])
                .arg(&target)
                .env("PATH", &path)
                .current_dir(scratch)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run secretsdump");
            (*sam, child)
        })
        .collect();
    // DOMAIN\sam:rid:lmhash:nthash:::
    let prefix = format!("{}\\", lab.get("AD_DNS_DOMAIN"));
    let mut found = HashMap::new();
    for (sam, child) in children {
        let out = child.wait_with_output().expect("secretsdump");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let nt = stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .find_map(|rest| {
                let f: Vec<&str> = rest.split(':').collect();
                (f.first()?.eq_ignore_ascii_case(sam))
                    .then(|| f.get(3).map(|h| h.to_lowercase()))?
            })
            .unwrap_or_else(|| {
                panic!(
                    "secretsdump printed no NT hash for {sam}:\n{stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        found.insert(sam.to_owned(), nt);
    }
    found
}

/// Deletes the test's OU (and the user in it) when the test ends, passed or not.
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let dn = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut adm = admin(lab()).await;
                super::delete_tree(&mut adm, &dn).await;
                let _ = adm.unbind().await;
            });
        })
        .join();
    }
}

/// A TCP proxy in front of the DC's DRSUAPI port that, while `cut` is set, closes both
/// sides 40 bytes into the first response after an `IDL_DRSGetNCChanges` request (opnum
/// 3; a request PDU's header is in clear even when its stub is sealed): a replication
/// reply cut in the middle of a PDU. Returns its port on the DC's address.
pub async fn cutting_proxy(
    upstream: std::net::SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> u16 {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((upstream.ip(), 0))
        .await
        .expect("bind beside the DC");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            let cut = cut.clone();
            tokio::spawn(async move {
                let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut dr, mut dw) = down.into_split();
                let (mut ur, mut uw) = up.into_split();
                let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let arm = armed.clone();
                let a = async move {
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n @ 1..) = dr.read(&mut buf).await {
                        let b = &buf[..n];
                        // ptype 0 = request; opnum at offset 22 (little-endian).
                        if n >= 24 && b[2] == 0 && u16::from_le_bytes([b[22], b[23]]) == 3 {
                            arm.store(true, Ordering::SeqCst);
                        }
                        if uw.write_all(b).await.is_err() {
                            break;
                        }
                    }
                    let _ = uw.shutdown().await;
                };
                let b = async move {
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n @ 1..) = ur.read(&mut buf).await {
                        if armed.load(Ordering::SeqCst) && cut.load(Ordering::SeqCst) {
                            let _ = dw.write_all(&buf[..n.min(40)]).await;
                            break;
                        }
                        if dw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = dw.shutdown().await;
                };
                // The cut closes the client's side at once, whatever the request side does.
                tokio::select! {
                    _ = a => {}
                    _ = b => {}
                }
            });
        }
    });
    port
}

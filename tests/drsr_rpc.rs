//! causeway-drsr's DCE/RPC layer against the lab's Samba DC: the endpoint mapper finds
//! DRSUAPI, a bind sealed with NTLMv2 as `svc-sync` authenticates, and a real
//! `IDL_DRSBind` goes through sealed and comes back unsealed; wrong passwords, dead ports
//! and unsealed binds fail with errors that say so.
//!
//! Runs against the lab described by `$CAUSEWAY_LAB_ENV` or started by `scripts/lab.sh`.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use causeway_credential::Password;
use causeway_drsr::rpc::{Association, Credentials, Limits, RpcError, Target, DRSUAPI};

use common::{lab, Lab};

/// The `IDL_DRSBind` request stub impacket sent to the lab DC as svc-sync
/// (`scripts/lab/drsr-capture.py`, its first call; `drsr/testdata/bind.req`): a unique pointer to impacket's client
/// DSA GUID, then a unique pointer to DRS_EXTENSIONS_INT (cb 0x34, dwFlags 0x05c08000).
const DRS_BIND_REQUEST: &str = "bc3e00001a204de2d64fd111a3da0000f875ae0d95900000340000003400\
    00000080c005000000000000000000000000000000000000000000000000000000000000000000000000000000\
    00000000000000ffffffff";

/// The `IDL_DRSGetNCChanges` request (V8, EXOP_REPL_OBJ for alice, with the partial
/// attribute set that carries unicodePwd) impacket sent in the same capture (call 3). Its
/// first 20 bytes are the DRS handle of impacket's session; the test puts its own there.
const GET_NC_CHANGES_ALICE: &str = "\
    00000000a02ecf7efa8f6e419e8cd75d5b63277b0800000008000000abababab5f9a1e3d5ba3f744a76825fa\
    fab959510000000000000000000000000000000031040000abababab00000000000000000000000000000000\
    00000000000000000000000030000000010000000000000006000000abababab00000000000000002bc20000\
    0000000002000000310000002d00000096000000000000000000000000000000000000000000000000000000\
    0000000000000000000000000000000000000000000000002c00000043004e003d0061006c00690063006500\
    2c0043004e003d00550073006500720073002c00440043003d006c00610062002c00440043003d0063006100\
    7500730065007700610079002c00440043003d0074006500730074000000eeee0b0000000100000000000000\
    0b00000090020000dd0000005a000000370000005e000000a00000007d000000920000006000000008000000\
    9f0000000200000000000000080000009dff00000000000015000000ed520000080000002a864886f7140104\
    15000000ff0000000000000000000000000000000000000000";

/// The first page of impacket's full replication of the domain NC (same capture, call 6:
/// V8, DRS_INIT_SYNC|DRS_WRIT_REP|DRS_NEVER_SYNCED, cMaxObjects 200). Samba's answer is
/// about 350 KB: some 60 response fragments, each sealed on its own.
const GET_NC_CHANGES_PAGE0: &str = "\
    00000000a02ecf7efa8f6e419e8cd75d5b63277b0800000008000000abababab5f9a1e3d5ba3f744a76825fa\
    fab9595100000000000000000000000000000000574b0000abababab00000000000000000000000000000000\
    00000000000000000000000030002000c80000000000000000000000abababab00000000000000006e0f0000\
    0000000002000000d3c200001b00000072000000000000000000000000000000000000000000000000000000\
    0000000000000000000000000000000000000000000000001a000000440043003d006c00610062002c004400\
    43003d00630061007500730065007700610079002c00440043003d0074006500730074000000eeee0b000000\
    01000000000000000b00000090020000dd0000005a000000370000005e000000a00000007d00000092000000\
    60000000080000009f0000000200000000000000080000009dff00000000000015000000ed52000008000000\
    2a864886f714010415000000ff0000000000000000000000000000000000000000";

fn target(lab: &Lab) -> Target {
    Target {
        host: lab
            .get("AD_HOST")
            .parse()
            .expect("AD_HOST is an IP address"),
        port: None,
        server_name: lab.get("AD_DC_FQDN").to_owned(),
    }
}

fn svc_sync(lab: &Lab, password: &str) -> Credentials {
    Credentials::Ntlm {
        domain: lab.get("AD_DOMAIN").to_owned(),
        user: lab.user("svc-sync", "SAM").to_owned(),
        password: Password::new(password.to_owned()).expect("a valid password"),
    }
}

fn limits() -> Limits {
    Limits {
        connect_timeout: Duration::from_secs(5),
        call_timeout: Duration::from_secs(30),
        ..Limits::default()
    }
}

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[tokio::test]
async fn sealed_drs_bind_as_svc_sync_returns_a_drs_handle_and_werror_zero() {
    let lab = lab();
    let creds = svc_sync(lab, lab.user("svc-sync", "PASSWORD"));
    let mut assoc = Association::connect(&target(lab), &DRSUAPI, &creds, &limits())
        .await
        .expect("sealed bind to DRSUAPI as svc-sync");
    // The endpoint mapper's answer decided the port: Samba's dynamic RPC range.
    let port = assoc.peer().port();
    assert!((49152..=65535).contains(&port), "DRSUAPI on port {port}");
    assert_eq!(assoc.session_key().expose_secret().len(), 16);

    let reply = assoc
        .call(0, &unhex(DRS_BIND_REQUEST))
        .await
        .expect("IDL_DRSBind");
    // ... [out] DRS_EXTENSIONS** ppextServer, [out, ref] DRS_HANDLE* phDrs, then the ULONG.
    assert!(reply.len() >= 4 + 20 + 4, "reply of {} bytes", reply.len());
    let werror = u32::from_le_bytes(reply[reply.len() - 4..].try_into().expect("4 bytes"));
    assert_eq!(werror, 0, "IDL_DRSBind returned 0x{werror:08x}");
    let handle = &reply[reply.len() - 24..reply.len() - 4];
    assert!(handle.iter().any(|&b| b != 0), "a non-nil DRS_HANDLE");
    // The server's extensions pointer is not null and its cb fits in the reply.
    let ext_ptr = u32::from_le_bytes(reply[..4].try_into().expect("4 bytes"));
    assert_ne!(ext_ptr, 0, "the DC sent its DRS_EXTENSIONS");

    // A second call on the same association: sequence numbers and RC4 state carry on.
    let again = assoc
        .call(0, &unhex(DRS_BIND_REQUEST))
        .await
        .expect("second IDL_DRSBind");
    assert_eq!(&again[again.len() - 4..], &[0, 0, 0, 0]);
}

#[tokio::test]
async fn a_request_larger_than_one_fragment_is_fragmented_and_answered() {
    // IDL_DRSBind's stub followed by 20 000 bytes the server's NDR reader never reaches:
    // the request spans four fragments (max_recv_frag 5840), each sealed on its own.
    let lab = lab();
    let creds = svc_sync(lab, lab.user("svc-sync", "PASSWORD"));
    let mut assoc = Association::connect(&target(lab), &DRSUAPI, &creds, &limits())
        .await
        .expect("sealed bind");
    let mut stub = unhex(DRS_BIND_REQUEST);
    stub.resize(stub.len() + 20_000, 0);
    // Samba reads the stub it needs and ignores the rest, so the call succeeds only if
    // every fragment unsealed and the reassembled stub starts with the real request.
    let reply = assoc.call(0, &stub).await.expect("fragmented IDL_DRSBind");
    assert_eq!(&reply[reply.len() - 4..], &[0, 0, 0, 0]);
}

#[tokio::test]
async fn a_wrong_password_is_an_authentication_error_that_names_the_account() {
    let lab = lab();
    let creds = svc_sync(lab, "Not-The-Password-1");
    let err = match Association::connect(&target(lab), &DRSUAPI, &creds, &limits()).await {
        Ok(mut assoc) => assoc
            .call(0, &unhex(DRS_BIND_REQUEST))
            .await
            .expect_err("a call with a wrong password must fail"),
        Err(e) => e,
    };
    assert!(matches!(err, RpcError::AuthRejected { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("svc-sync"), "{text}");
    assert!(!text.contains("Not-The-Password-1"), "{text}");
}

#[tokio::test]
async fn a_dead_port_is_a_connect_error_naming_the_address() {
    // A port that was just bound on the lab's address and released: nothing listens there.
    let lab = lab();
    let host: IpAddr = lab.get("AD_HOST").parse().expect("IP");
    let port = {
        let l = std::net::TcpListener::bind(SocketAddr::new(host, 0)).expect("bind port 0");
        l.local_addr().expect("addr").port()
    };
    let t = Target {
        port: Some(port),
        ..target(lab)
    };
    let creds = svc_sync(lab, lab.user("svc-sync", "PASSWORD"));
    let err = Association::connect(&t, &DRSUAPI, &creds, &limits())
        .await
        .expect_err("nothing listens there");
    assert!(
        matches!(err, RpcError::Connect { addr, .. } if addr.port() == port),
        "{err:?}"
    );
    assert!(err.to_string().contains(&format!("{host}:{port}")), "{err}");
}

#[test]
fn samba_refuses_drsuapi_calls_on_an_unsealed_bind() {
    // Independent of the client under test: a hand-built unauthenticated bind to DRSUAPI
    // on the port the endpoint mapper gives, then IDL_DRSBind in the clear. Samba accepts
    // the bind but must refuse the call: this is why every association is sealed.
    let lab = lab();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let creds = svc_sync(lab, lab.user("svc-sync", "PASSWORD"));
    let port = rt
        .block_on(Association::connect(
            &target(lab),
            &DRSUAPI,
            &creds,
            &limits(),
        ))
        .expect("sealed bind")
        .peer()
        .port();
    let host: IpAddr = lab.get("AD_HOST").parse().expect("IP");
    let mut s = std::net::TcpStream::connect((host, port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut bind = unhex(
        "05000b03100000004800000001000000d016d01600000000010000000000010035\
         4251e3064bd111ab0400c04fc2dcd204000000045d888aeb1cc9119fe808002b10486002000000",
    );
    assert_eq!(bind.len(), 72);
    s.write_all(&bind).expect("send bind");
    let ack = read_pdu(&mut s);
    assert_eq!(ack[2], 12, "bind_ack");
    let stub = unhex(DRS_BIND_REQUEST);
    bind.clear();
    let len = u16::try_from(24 + stub.len()).expect("small");
    bind.extend_from_slice(&[5, 0, 0, 3, 0x10, 0, 0, 0]);
    bind.extend_from_slice(&len.to_le_bytes());
    bind.extend_from_slice(&[0, 0, 2, 0, 0, 0]);
    bind.extend_from_slice(&u32::try_from(stub.len()).expect("small").to_le_bytes());
    bind.extend_from_slice(&[0, 0, 0, 0]);
    bind.extend_from_slice(&stub);
    s.write_all(&bind).expect("send request");
    let answer = read_pdu(&mut s);
    assert_eq!(answer[2], 3, "a fault, not a response: {answer:02x?}");
    let status = u32::from_le_bytes(answer[24..28].try_into().expect("status"));
    assert_eq!(status, 5, "access denied, got 0x{status:08x}");
}

fn read_pdu(s: &mut std::net::TcpStream) -> Vec<u8> {
    let mut head = [0u8; 16];
    s.read_exact(&mut head).expect("PDU header");
    let len = usize::from(u16::from_le_bytes([head[8], head[9]]));
    let mut pdu = head.to_vec();
    pdu.resize(len, 0);
    s.read_exact(&mut pdu[16..]).expect("PDU body");
    pdu
}

#[tokio::test]
async fn the_session_key_decrypts_a_secret_attribute_replicated_over_the_sealed_association() {
    // The exported NTLM session key is what DRSR encrypts secret attributes with
    // ([MS-DRSR] 4.1.10.6.11): MD5(key || salt) keys RC4, and the plaintext starts with
    // the CRC32 of the rest. A wrong key matches that CRC with probability 2^-32.
    let lab = lab();
    let (reply, key) = alice_replicated(&svc_sync(lab, lab.user("svc-sync", "PASSWORD"))).await;
    let good = crc_checked_secrets(&reply, &key);
    // alice's unicodePwd and her one-entry ntPwdHistory: 16 salt + 4 CRC + 16 hash each.
    assert!(good >= 1, "no 36-byte value decrypted with a valid CRC");
    let mut wrong = key;
    wrong[0] ^= 1;
    assert_eq!(
        crc_checked_secrets(&reply, &wrong),
        0,
        "a wrong key must not pass the CRC"
    );
}

/// Binds sealed as `creds`, replays impacket's `IDL_DRSBind` and its `EXOP_REPL_OBJ` for
/// alice (with this session's handle), and returns the GetNCChanges reply, both calls
/// having answered WERROR 0, and the association's session key.
async fn alice_replicated(creds: &Credentials) -> (Vec<u8>, Vec<u8>) {
    let mut assoc = Association::connect(&target(lab()), &DRSUAPI, creds, &limits())
        .await
        .expect("sealed bind to DRSUAPI as svc-sync");
    let bind = assoc
        .call(0, &unhex(DRS_BIND_REQUEST))
        .await
        .expect("IDL_DRSBind");
    assert_eq!(
        &bind[bind.len() - 4..],
        &[0, 0, 0, 0],
        "IDL_DRSBind's WERROR"
    );
    let mut req = unhex(GET_NC_CHANGES_ALICE);
    req[..20].copy_from_slice(&bind[bind.len() - 24..bind.len() - 4]);
    let reply = assoc.call(3, &req).await.expect("IDL_DRSGetNCChanges");
    assert_eq!(
        &reply[reply.len() - 4..],
        &[0, 0, 0, 0],
        "IDL_DRSGetNCChanges's WERROR"
    );
    (reply, assoc.session_key().expose_secret().to_vec())
}

/// How many conformant 36-byte byte arrays in `reply` decrypt under `key` to a plaintext
/// whose first 4 bytes are the CRC32 of the rest.
fn crc_checked_secrets(reply: &[u8], key: &[u8]) -> usize {
    (0..reply.len().saturating_sub(40))
        .step_by(4)
        .filter(|&i| reply[i..i + 4] == 36u32.to_le_bytes())
        .filter(|&i| {
            let v = &reply[i + 4..i + 40];
            let mut k = key.to_vec();
            k.extend_from_slice(&v[..16]);
            let rc4_key =
                openssl::hash::hash(openssl::hash::MessageDigest::md5(), &k).expect("md5");
            let plain = rc4(&rc4_key, &v[16..]);
            plain[..4] == crc32(&plain[4..]).to_le_bytes()
        })
        .count()
}

// RC4 and CRC32 written out here because OpenSSL 3 keeps RC4 in its legacy provider and
// the test should not add crates for ten lines each.
fn rc4(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut s: Vec<u8> = (0..=255).collect();
    let mut j = 0u8;
    for i in 0..256 {
        j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
        s.swap(i, usize::from(j));
    }
    let (mut i, mut j) = (0u8, 0u8);
    data.iter()
        .map(|b| {
            i = i.wrapping_add(1);
            j = j.wrapping_add(s[usize::from(i)]);
            s.swap(usize::from(i), usize::from(j));
            b ^ s[usize::from(s[usize::from(i)].wrapping_add(s[usize::from(j)]))]
        })
        .collect()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Binds, calls IDL_DRSBind and returns the association and its DRS handle.
async fn drs_bound(lab: &Lab, l: &Limits) -> (Association, Vec<u8>) {
    let creds = svc_sync(lab, lab.user("svc-sync", "PASSWORD"));
    let mut assoc = Association::connect(&target(lab), &DRSUAPI, &creds, l)
        .await
        .expect("sealed bind");
    let bind = assoc
        .call(0, &unhex(DRS_BIND_REQUEST))
        .await
        .expect("IDL_DRSBind");
    let handle = bind[bind.len() - 24..bind.len() - 4].to_vec();
    (assoc, handle)
}

#[tokio::test]
async fn a_full_replication_page_arrives_in_many_sealed_fragments_and_is_reassembled() {
    let lab = lab();
    let (mut assoc, handle) = drs_bound(lab, &limits()).await;
    let mut req = unhex(GET_NC_CHANGES_PAGE0);
    req[..20].copy_from_slice(&handle);
    let reply = assoc
        .call(3, &req)
        .await
        .expect("IDL_DRSGetNCChanges page 0");
    assert!(
        reply.len() > 50 * 5840,
        "a reply of {} bytes spans many fragments",
        reply.len()
    );
    assert_eq!(&reply[reply.len() - 4..], &[0, 0, 0, 0], "WERROR");
    // The association is still in step (sequence numbers, RC4 state) after 60 fragments.
    let again = assoc
        .call(0, &unhex(DRS_BIND_REQUEST))
        .await
        .expect("IDL_DRSBind after");
    assert_eq!(&again[again.len() - 4..], &[0, 0, 0, 0]);
}

#[tokio::test]
async fn a_real_reply_larger_than_max_response_is_refused() {
    let lab = lab();
    let l = Limits {
        max_response: 64 * 1024,
        ..limits()
    };
    let (mut assoc, handle) = drs_bound(lab, &l).await;
    let mut req = unhex(GET_NC_CHANGES_PAGE0);
    req[..20].copy_from_slice(&handle);
    let err = assoc.call(3, &req).await.expect_err("350 KB > 64 KiB");
    assert!(
        matches!(err, RpcError::ResponseTooLarge { limit: 65536 }),
        "{err:?}"
    );
}

/// Every log line, at every level, of everything (sspi included) on this thread.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_password_hash_or_session_key_in_any_log_line_at_trace_level() {
    let lab = lab();
    let password = lab.user("svc-sync", "PASSWORD");
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (mut assoc, handle) = drs_bound(lab, &limits()).await;
    let mut req = unhex(GET_NC_CHANGES_ALICE);
    req[..20].copy_from_slice(&handle);
    assoc.call(3, &req).await.expect("IDL_DRSGetNCChanges");
    let key = assoc.session_key().expose_secret().to_vec();
    let wrong = svc_sync(lab, "Not-The-Password-2");
    let _ = Association::connect(&target(lab), &DRSUAPI, &wrong, &limits()).await;

    let text = String::from_utf8_lossy(&logs.0.lock().expect("log buffer")).into_owned();
    assert!(
        text.len() > 1000,
        "the capture saw sspi's trace output ({} bytes)",
        text.len()
    );
    let nt =
        causeway_credential::NtHash::from_password(&Password::new(password.into()).expect("pw"));
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let utf16: String = password
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .map(|b| format!("{b:02X}"))
        .collect();
    for (what, needle) in [
        ("password", password.to_owned()),
        ("wrong password", "Not-The-Password-2".to_owned()),
        ("password as UTF-16 hex", utf16),
        ("NT hash", hex(nt.expose_secret())),
        ("NT hash upper", hex(nt.expose_secret()).to_uppercase()),
        ("session key hex", hex(&key)),
        ("session key upper", hex(&key).to_uppercase()),
        (
            "session key Debug",
            format!("{:?}", &key[..8]).trim_end_matches(']').to_owned(),
        ),
    ] {
        assert!(!text.contains(&needle), "the {what} appears in the logs");
    }
}

fn svc_sync_kerberos(lab: &Lab, password: &str) -> Credentials {
    Credentials::Kerberos {
        realm: lab.get("AD_REALM").to_owned(),
        user: lab.user("svc-sync", "SAM").to_owned(),
        password: Password::new(password.to_owned()).expect("a valid password"),
        kdc: lab.get("AD_KDC").parse().expect("AD_KDC is host:port"),
    }
}

#[tokio::test]
async fn kerberos_seals_a_drs_bind_and_its_session_key_decrypts_a_secret_attribute() {
    let lab = lab();
    let creds = svc_sync_kerberos(lab, lab.user("svc-sync", "PASSWORD"));
    let (reply, key) = alice_replicated(&creds).await;
    // The AES256 subkey: 32 bytes, not NTLM's 16 (MD5(key || salt) takes either).
    assert_eq!(key.len(), 32);
    assert!(
        crc_checked_secrets(&reply, &key) >= 1,
        "the Kerberos session key ({} bytes) decrypts no secret",
        key.len()
    );
}

#[tokio::test]
async fn kerberos_with_a_wrong_password_is_an_authentication_error() {
    let lab = lab();
    let creds = svc_sync_kerberos(lab, "Not-The-Password-3");
    let err = Association::connect(&target(lab), &DRSUAPI, &creds, &limits())
        .await
        .expect_err("the KDC refuses pre-authentication");
    assert!(matches!(err, RpcError::AuthRejected { .. }), "{err:?}");
    assert!(err.to_string().contains("svc-sync@"), "{err}");
}

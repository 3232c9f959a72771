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
/// (/work/vectors12/lab1/calls_small.json, call 0): a unique pointer to impacket's client
/// DSA GUID, then a unique pointer to DRS_EXTENSIONS_INT (cb 0x34, dwFlags 0x05c08000).
const DRS_BIND_REQUEST: &str = "bc3e00001a204de2d64fd111a3da0000f875ae0d95900000340000003400\
    00000080c005000000000000000000000000000000000000000000000000000000000000000000000000000000\
    00000000000000ffffffff";

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
    // the request spans several fragments (max_recv_frag 5840), each sealed on its own,
    // so the call is answered only if fragmentation and per-fragment sealing are right.
    let lab = lab();
    let creds = svc_sync(lab, lab.user("svc-sync", "PASSWORD"));
    let mut assoc = Association::connect(&target(lab), &DRSUAPI, &creds, &limits())
        .await
        .expect("sealed bind");
    let mut stub = unhex(DRS_BIND_REQUEST);
    stub.resize(stub.len() + 20_000, 0);
    match assoc.call(0, &stub).await {
        Ok(reply) => assert_eq!(&reply[reply.len() - 4..], &[0, 0, 0, 0]),
        // Samba may insist that the whole stub is consumed: then it says so with an NDR
        // fault, which also proves the fragments were reassembled and unsealed.
        Err(RpcError::Fault { status, .. }) => {
            assert!(
                matches!(status, 0x6f7 | 0x1c00_001b),
                "fault 0x{status:08x}"
            )
        }
        Err(e) => panic!("fragmented IDL_DRSBind: {e}"),
    }
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
        "05000b0310000000480000000100000016d016d000000000010000000000010035\
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

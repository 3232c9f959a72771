//! The connection against a hostile or broken server on a loopback listener: what each
//! misbehaviour becomes, and that bounds hold before anything is read or allocated.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::rpc::pdu::tests::{bind_ack, fault, response};
use crate::rpc::PduError;

const IFACE: Interface = Interface {
    uuid: [3; 16],
    version: (1, 0),
};

fn limits(max_response: usize) -> Limits {
    Limits {
        connect_timeout: Duration::from_secs(5),
        call_timeout: Duration::from_secs(30),
        max_response,
    }
}

/// Reads one PDU the client sent.
async fn read_pdu(s: &mut TcpStream) -> Vec<u8> {
    let mut head = [0u8; HEADER_LEN];
    s.read_exact(&mut head).await.expect("client PDU header");
    let len = usize::from(u16::from_le_bytes([head[8], head[9]]));
    let mut pdu = head.to_vec();
    pdu.resize(len, 0);
    s.read_exact(&mut pdu[HEADER_LEN..])
        .await
        .expect("client PDU body");
    pdu
}

/// A server that answers the bind with `ack` and then runs `then` on the stream.
async fn serve<F, Fut>(ack: Vec<u8>, then: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = l.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let bind = read_pdu(&mut s).await;
        assert_eq!(bind[2], PType::Bind as u8);
        s.write_all(&ack).await.expect("send bind answer");
        then(s).await;
    });
    (addr, task)
}

async fn bound(addr: SocketAddr, l: &Limits) -> Result<Connection, RpcError> {
    let stream = Connection::open(addr, l).await?;
    Connection::bind(stream, addr, &IFACE, None, l).await
}

#[tokio::test]
async fn a_response_in_three_fragments_is_reassembled_in_order() {
    let (addr, task) = serve(bind_ack(1, 0, None), |mut s| async move {
        let req = read_pdu(&mut s).await;
        assert_eq!(&req[22..24], &7u16.to_le_bytes(), "opnum");
        assert_eq!(&req[24..], b"ask");
        s.write_all(&response(2, PFC_FIRST_FRAG, b"one "))
            .await
            .expect("w");
        s.write_all(&response(2, 0, b"two ")).await.expect("w");
        s.write_all(&response(2, PFC_LAST_FRAG, b"three"))
            .await
            .expect("w");
    })
    .await;
    let mut c = bound(addr, &limits(1024)).await.expect("bind");
    assert_eq!(c.call(7, b"ask").await.expect("call"), b"one two three");
    task.await.expect("server");
}

#[tokio::test]
async fn a_request_larger_than_max_recv_frag_goes_out_in_fragments() {
    // The server accepts fragments of 100 bytes: the 500-byte stub needs 7 fragments of
    // 64 (100 - 24 rounded down to 16) and flags mark the first and the last.
    let mut ack = bind_ack(1, 0, None);
    ack[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&100u16.to_le_bytes());
    let (addr, task) = serve(ack, |mut s| async move {
        let mut got = Vec::new();
        let mut flags = Vec::new();
        loop {
            let f = read_pdu(&mut s).await;
            assert!(f.len() <= 100, "fragment of {} bytes", f.len());
            assert_eq!(
                &f[16..20],
                &500u32.to_le_bytes(),
                "alloc_hint is the whole stub"
            );
            got.extend_from_slice(&f[24..]);
            flags.push(f[3]);
            if f[3] & PFC_LAST_FRAG != 0 {
                break;
            }
        }
        assert_eq!(got, vec![0x5a; 500]);
        assert_eq!(flags, [1, 0, 0, 0, 0, 0, 0, 2]);
        s.write_all(&response(2, 3, b"ok")).await.expect("w");
    })
    .await;
    let mut c = bound(addr, &limits(1024)).await.expect("bind");
    assert_eq!(c.call(1, &[0x5a; 500]).await.expect("call"), b"ok");
    task.await.expect("server");
}

#[tokio::test]
async fn reassembly_stops_at_max_response() {
    let (addr, _task) = serve(bind_ack(1, 0, None), |mut s| async move {
        let _ = read_pdu(&mut s).await;
        for _ in 0..10 {
            if s.write_all(&response(2, 0, &[0; 1000])).await.is_err() {
                return;
            }
        }
    })
    .await;
    let mut c = bound(addr, &limits(2500)).await.expect("bind");
    let err = c.call(1, b"x").await.expect_err("over the limit");
    assert!(
        matches!(err, RpcError::ResponseTooLarge { limit: 2500 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_fault_is_named() {
    let (addr, _task) = serve(bind_ack(1, 0, None), |mut s| async move {
        let _ = read_pdu(&mut s).await;
        s.write_all(&fault(2, 0x1c01_0002)).await.expect("w");
    })
    .await;
    let mut c = bound(addr, &limits(1024)).await.expect("bind");
    let err = c.call(99, b"").await.expect_err("fault");
    assert!(
        err.to_string().contains("nca_s_op_rng_error (0x1c010002)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_bind_nak_and_a_rejected_context_are_named() {
    let nak = {
        let mut n = vec![5, 0, 13, 3, 0x10, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0];
        n.extend_from_slice(&[4, 0, 0, 0]);
        n
    };
    let (addr, _t) = serve(nak, |_| async {}).await;
    let err = bound(addr, &limits(1024)).await.expect_err("nak");
    assert!(
        err.to_string()
            .contains("protocol_version_not_supported (4)"),
        "{err}"
    );

    let mut ack = bind_ack(1, 2, None);
    ack[HEADER_LEN + 22..HEADER_LEN + 24].copy_from_slice(&1u16.to_le_bytes());
    let (addr, _t) = serve(ack, |_| async {}).await;
    let err = bound(addr, &limits(1024)).await.expect_err("rejected");
    assert!(
        err.to_string().contains("abstract_syntax_not_supported"),
        "{err}"
    );
}

#[tokio::test]
async fn a_connection_closed_in_the_middle_of_a_pdu_says_so() {
    let (addr, task) = serve(bind_ack(1, 0, None), |mut s| async move {
        let _ = read_pdu(&mut s).await;
        let r = response(2, 3, &[1; 100]);
        s.write_all(&r[..60]).await.expect("w");
    })
    .await;
    let mut c = bound(addr, &limits(1024)).await.expect("bind");
    let err = c.call(1, b"x").await.expect_err("cut");
    task.await.expect("server");
    assert!(
        matches!(err, RpcError::Closed { mid_pdu: true, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("in the middle of a PDU"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_oversized_frag_length_is_refused_before_its_body_is_awaited() {
    // Only a header arrives. If the client waited for the 65535 announced bytes it would
    // run into the (paused, auto-advancing) timeout instead of refusing the length.
    let (addr, _task) = serve(bind_ack(1, 0, None), |mut s| async move {
        let _ = read_pdu(&mut s).await;
        let mut r = response(2, 3, b"");
        r[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
        s.write_all(&r[..HEADER_LEN]).await.expect("w");
        let _ = s.read(&mut [0u8; 1]).await; // hold the connection open
    })
    .await;
    let mut c = bound(addr, &limits(1 << 20)).await.expect("bind");
    let err = c.call(1, b"x").await.expect_err("too long");
    assert!(
        matches!(
            err,
            RpcError::Protocol(PduError::FragLength { len: 65535, .. })
        ),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_server_times_out_with_what_was_awaited() {
    let (addr, _task) = serve(bind_ack(1, 0, None), |mut s| async move {
        let _ = read_pdu(&mut s).await;
        let _ = s.read(&mut [0u8; 1]).await; // never answer
    })
    .await;
    let l = limits(1024);
    let mut c = bound(addr, &l).await.expect("bind");
    let err = c.call(1, b"x").await.expect_err("silence");
    assert!(
        matches!(err, RpcError::Timeout { during: "waiting for the response", after } if after == l.call_timeout),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_answer_to_another_call_is_refused() {
    let (addr, _task) = serve(bind_ack(1, 0, None), |mut s| async move {
        let _ = read_pdu(&mut s).await;
        s.write_all(&response(77, 3, b"x")).await.expect("w");
    })
    .await;
    let mut c = bound(addr, &limits(1024)).await.expect("bind");
    let err = c.call(1, b"x").await.expect_err("wrong call id");
    assert!(
        matches!(
            err,
            RpcError::CallIdMismatch {
                expected: 2,
                got: 77
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn empty_fragments_that_never_end_are_refused() {
    let (addr, _task) = serve(bind_ack(1, 0, None), |mut s| async move {
        let _ = read_pdu(&mut s).await;
        for _ in 0..1000 {
            if s.write_all(&response(2, 0, b"")).await.is_err() {
                return;
            }
        }
    })
    .await;
    let mut c = bound(addr, &limits(1024)).await.expect("bind");
    let err = c.call(1, b"x").await.expect_err("empty fragments");
    assert!(
        matches!(err, RpcError::Protocol(PduError::EmptyFragment)),
        "{err:?}"
    );
}

//! Just enough of the endpoint mapper ([C706] appendix I, L and O; [MS-RPCE] 2.2.1.2) to
//! ask port 135, unauthenticated, which TCP port an interface listens on: `ept_map`
//! (opnum 3) with a tower of five floors, and a bounded reading of the towers it returns.

use std::net::SocketAddr;

use super::conn::Connection;
use super::{Interface, Limits, RpcError};

/// The endpoint mapper interface, e1af8308-5d1f-11c9-91a4-08002b14a0fa v3.0, wire order.
pub(crate) const EPM: Interface = Interface {
    uuid: [
        0x08, 0x83, 0xaf, 0xe1, 0x1f, 0x5d, 0xc9, 0x11, 0x91, 0xa4, 0x08, 0x00, 0x2b, 0x14, 0xa0,
        0xfa,
    ],
    version: (3, 0),
};

/// The endpoint mapper's well-known TCP port.
pub(crate) const EPM_PORT: u16 = 135;

const OPNUM_EPT_MAP: u16 = 3;
/// How many towers to ask for: the DC lists DRSUAPI on one TCP port, so a few are plenty.
const MAX_TOWERS: u32 = 4;

/// Protocol identifiers of tower floors ([C706] appendix I).
const PROT_UUID: u8 = 0x0d;
const PROT_NCACN: u8 = 0x0b;
const PROT_TCP: u8 = 0x07;
const PROT_IP: u8 = 0x09;

/// Asks the endpoint mapper at `host:135` for the TCP port of `iface`.
pub(crate) async fn map_tcp_port(
    host: std::net::IpAddr,
    iface: &Interface,
    limits: &Limits,
) -> Result<u16, RpcError> {
    let peer = SocketAddr::new(host, EPM_PORT);
    let stream = Connection::open(peer, limits).await?;
    let mut conn = Connection::bind(stream, peer, &EPM, None, limits).await?;
    let answer = conn.call(OPNUM_EPT_MAP, &ept_map_request(iface)).await?;
    parse_ept_map_response(&answer)
}

/// The tower for `iface` over ncacn_ip_tcp, port and address left 0 ([C706] appendix L).
fn tower(iface: &Interface) -> Vec<u8> {
    let mut t = Vec::with_capacity(75);
    t.extend_from_slice(&5u16.to_le_bytes());
    let mut floor = |lhs: &[u8], rhs: &[u8]| {
        t.extend_from_slice(&u16::try_from(lhs.len()).unwrap_or(0).to_le_bytes());
        t.extend_from_slice(lhs);
        t.extend_from_slice(&u16::try_from(rhs.len()).unwrap_or(0).to_le_bytes());
        t.extend_from_slice(rhs);
    };
    let mut lhs = vec![PROT_UUID];
    lhs.extend_from_slice(&iface.uuid);
    lhs.extend_from_slice(&iface.version.0.to_le_bytes());
    floor(&lhs, &iface.version.1.to_le_bytes());
    let mut lhs = vec![PROT_UUID];
    lhs.extend_from_slice(&super::pdu::NDR20.0);
    lhs.extend_from_slice(&2u16.to_le_bytes());
    floor(&lhs, &0u16.to_le_bytes());
    floor(&[PROT_NCACN], &0u16.to_le_bytes());
    floor(&[PROT_TCP], &0u16.to_be_bytes());
    floor(&[PROT_IP], &[0, 0, 0, 0]);
    t
}

/// `ept_map(h, [ptr] object, [ptr] map_tower, [in,out] entry_handle, max_towers)` in NDR.
pub(crate) fn ept_map_request(iface: &Interface) -> Vec<u8> {
    let tower = tower(iface);
    let len = u32::try_from(tower.len()).unwrap_or(0);
    let mut s = Vec::with_capacity(128);
    s.extend_from_slice(&1u32.to_le_bytes()); // object: referent id
    s.extend_from_slice(&[0; 16]); // the nil object UUID
    s.extend_from_slice(&2u32.to_le_bytes()); // map_tower: referent id
    s.extend_from_slice(&len.to_le_bytes()); // conformance (max_count) of tower_octet_string
    s.extend_from_slice(&len.to_le_bytes()); // tower_length
    s.extend_from_slice(&tower);
    s.resize(s.len().div_ceil(4) * 4, 0);
    s.extend_from_slice(&[0; 20]); // entry_handle: a nil context handle
    s.extend_from_slice(&MAX_TOWERS.to_le_bytes());
    s
}

/// Reads the TCP port out of an `ept_map` answer: `entry_handle`, `num_towers`, the
/// conformant varying array of tower pointers and the towers, then `status`.
pub(crate) fn parse_ept_map_response(b: &[u8]) -> Result<u16, RpcError> {
    let bad = |why: &'static str| RpcError::EndpointMapper(why.to_string());
    let mut r = Cursor { b, at: 0 };
    r.take(20)
        .ok_or_else(|| bad("answer shorter than its context handle"))?;
    let num = r
        .u32()
        .ok_or_else(|| bad("answer truncated before num_towers"))?;
    let max_count = r
        .u32()
        .ok_or_else(|| bad("answer truncated in the tower array"))?;
    let _offset = r
        .u32()
        .ok_or_else(|| bad("answer truncated in the tower array"))?;
    let actual = r
        .u32()
        .ok_or_else(|| bad("answer truncated in the tower array"))?;
    if actual > max_count || actual != num || actual > MAX_TOWERS {
        return Err(bad("tower array counts disagree or exceed what was asked"));
    }
    // A varying array carries only its actual_count elements (4-byte pointers), and
    // actual_count is at most MAX_TOWERS, so the loop is bounded.
    let mut referents = 0;
    for _ in 0..actual {
        let p = r
            .u32()
            .ok_or_else(|| bad("answer truncated in the tower pointers"))?;
        if p != 0 {
            referents += 1;
        }
    }
    let mut port = None;
    for _ in 0..referents {
        let _max = r.u32().ok_or_else(|| bad("tower truncated"))?;
        let len = r.u32().ok_or_else(|| bad("tower truncated"))? as usize;
        let tower = r
            .take(len)
            .ok_or_else(|| bad("tower longer than the answer"))?;
        r.align4();
        if port.is_none() {
            port = tcp_port(tower);
        }
    }
    // status comes last; a non-zero status means "not registered" (EPT_S_NOT_REGISTERED).
    let status = r
        .u32()
        .ok_or_else(|| bad("answer truncated before status"))?;
    if status != 0 {
        return Err(RpcError::NotRegistered { status });
    }
    port.filter(|&p| p != 0)
        .ok_or(RpcError::NotRegistered { status: 0 })
}

/// The port of a tower's TCP floor (big-endian, [C706] appendix I), if it has one.
fn tcp_port(tower: &[u8]) -> Option<u16> {
    let mut r = Cursor { b: tower, at: 0 };
    let floors = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
    for _ in 0..floors {
        let lhs_len = usize::from(u16::from_le_bytes(r.take(2)?.try_into().ok()?));
        let lhs = r.take(lhs_len)?;
        let rhs_len = usize::from(u16::from_le_bytes(r.take(2)?.try_into().ok()?));
        let rhs = r.take(rhs_len)?;
        if lhs == [PROT_TCP] && rhs.len() == 2 {
            return Some(u16::from_be_bytes([rhs[0], rhs[1]]));
        }
    }
    None
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len())?;
        let s = &self.b[self.at..end];
        self.at = end;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn align4(&mut self) {
        self.at = (self.at.div_ceil(4) * 4).min(self.b.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(towers: &[Vec<u8>], status: u32) -> Vec<u8> {
        let mut s = vec![0; 20];
        let n = u32::try_from(towers.len()).unwrap_or(0);
        s.extend_from_slice(&n.to_le_bytes());
        s.extend_from_slice(&MAX_TOWERS.to_le_bytes());
        s.extend_from_slice(&0u32.to_le_bytes());
        s.extend_from_slice(&n.to_le_bytes());
        for i in 0..n {
            s.extend_from_slice(&(i + 3).to_le_bytes());
        }
        for t in towers {
            let l = u32::try_from(t.len()).unwrap_or(0);
            s.extend_from_slice(&l.to_le_bytes());
            s.extend_from_slice(&l.to_le_bytes());
            s.extend_from_slice(t);
            s.resize(s.len().div_ceil(4) * 4, 0);
        }
        s.extend_from_slice(&status.to_le_bytes());
        s
    }

    fn tower_with_port(port: u16) -> Vec<u8> {
        let mut t = tower(&crate::rpc::DRSUAPI);
        // The TCP floor's rhs is 7 bytes before the end (IP floor: 2 + 1 + 2 + 4).
        let at = t.len() - 11;
        t[at..at + 2].copy_from_slice(&port.to_be_bytes());
        t
    }

    #[test]
    fn the_request_tower_has_five_floors_and_a_zero_port() {
        let t = tower(&crate::rpc::DRSUAPI);
        assert_eq!(&t[..2], &5u16.to_le_bytes());
        assert_eq!(tcp_port(&t), Some(0));
        assert_eq!(t.len(), 75);
    }

    #[test]
    fn the_port_is_read_big_endian_from_the_tcp_floor() {
        let a = answer(&[tower_with_port(49153)], 0);
        assert_eq!(parse_ept_map_response(&a).ok(), Some(49153));
    }

    #[test]
    fn not_registered_is_named() {
        let a = answer(&[], 0x16c9_a0d6);
        assert!(matches!(
            parse_ept_map_response(&a),
            Err(RpcError::NotRegistered {
                status: 0x16c9_a0d6
            })
        ));
    }

    #[test]
    fn truncated_or_lying_answers_are_errors_not_panics() {
        let a = answer(&[tower_with_port(49153)], 0);
        for cut in 0..a.len() {
            assert!(parse_ept_map_response(&a[..cut]).is_err(), "cut at {cut}");
        }
        let mut lying = a.clone();
        lying[20..24].copy_from_slice(&u32::MAX.to_le_bytes()); // num_towers
        assert!(parse_ept_map_response(&lying).is_err());
        let mut long_tower = a;
        long_tower[44..48].copy_from_slice(&u32::MAX.to_le_bytes()); // tower_length
        assert!(parse_ept_map_response(&long_tower).is_err());
    }
}

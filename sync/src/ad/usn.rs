//! The `uSNChanged` sweep that complements DirSync: Samba's DirSync does not report an
//! object that was moved to another container without a new RDN (Windows does), so after
//! each delta the connector also asks the DC which objects changed since its USN mark
//! (`(uSNChanged>=mark)`, paged) and takes their current DN. USNs are per DC: the mark is
//! kept with the DC's name, and a mark of another DC (failover) starts the sweep from 1,
//! which costs one read of every object's GUID and DN but misses nothing.

use std::time::Duration;

use ldap3::{Ldap, SearchEntry};

use crate::ad::entry::Guid;
use crate::ad::import::{from_page, ImportError};
use crate::ad::paged::Pager;

/// Objects per page of the sweep.
const PAGE: i32 = 500;

/// Reads, page by page, the objectGUID and DN of every object under `base` whose
/// `uSNChanged` is at least `from`, handing each page to `on_page`.
pub async fn sweep<E>(
    ldap: &mut Ldap,
    base: &str,
    from: u64,
    timeout: Duration,
    mut on_page: impl FnMut(Vec<(Guid, String)>) -> Result<(), E>,
) -> Result<u64, ImportError<E>> {
    let filter = format!("(uSNChanged>={from})");
    let mut pager = Pager::new(PAGE);
    let mut seen = 0u64;
    while let Some(entries) = pager
        .next(ldap, base, &filter, &["objectGUID"], &[], timeout)
        .await
        .map_err(from_page("the uSNChanged sweep's paging"))?
    {
        let mut page = Vec::with_capacity(entries.len());
        for e in entries {
            let e = SearchEntry::construct(e);
            // Referrals and objects without a GUID (none in AD) are skipped.
            if let Some(g) = e
                .bin_attrs
                .get("objectGUID")
                .and_then(|v| v.first())
                .and_then(|b| Guid::from_bytes(b).ok())
            {
                page.push((g, e.dn));
            }
        }
        seen += page.len() as u64;
        on_page(page).map_err(ImportError::Handler)?;
    }
    Ok(seen)
}

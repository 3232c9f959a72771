//! OpenLDAP's change notification: an RFC 4533 content-sync search in refreshAndPersist
//! mode, on its own connection, asking for no attributes (`1.1`). slapd answers the
//! refresh phase and then sends each entry as it changes. Like AD's notification it only
//! wakes the loop: what changed is read by the next content-sync pass (objects) and hash
//! pass (passwords), so a lost or extra wake costs one pass at most, and polling stays the
//! floor.

use std::sync::Arc;
use std::time::Duration;

use ldap3::controls::RawControl;
use ldap3::Scope;
use tokio::sync::Notify;

use super::{ber, SYNC_REQUEST_OID};
use crate::config::Connector;
use crate::connect::connect;

/// How long to wait before dialling again after the persistent search ended.
const RETRY: Duration = Duration::from_secs(5);

/// Watches `c`'s base DN until the task is dropped, waking `wake` on every change.
pub async fn watch(c: Arc<Connector>, wake: Arc<Notify>) {
    loop {
        match watch_once(&c, &wake).await {
            Ok(()) => {
                tracing::info!(connector = %c.name, "content-sync persist search ended; watching again")
            }
            Err(e) => {
                tracing::warn!(connector = %c.name, error = %e, "content-sync change notification failed; polling continues, retrying in 5 s")
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn watch_once(c: &Connector, wake: &Notify) -> Result<(), String> {
    let mut session = connect(c).await.map_err(|e| e.to_string())?;
    let ctrl = RawControl {
        ctype: SYNC_REQUEST_OID.to_owned(),
        crit: true,
        val: Some(ber::sync_persist_request()),
    };
    let mut stream = session
        .ldap
        .with_controls(vec![ctrl])
        .streaming_search(&c.base_dn, Scope::Subtree, "(objectClass=*)", vec!["1.1"])
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(connector = %c.name, server = %session.server.url, "watching for content-sync changes");
    // The refresh phase names every entry; one wake covers it (Notify keeps one permit).
    while let Some(_entry) = stream.next().await.map_err(|e| e.to_string())? {
        wake.notify_one();
    }
    let res = stream.finish().await;
    if res.rc != 0 {
        return Err(format!(
            "the server ended it: result {} {}",
            res.rc, res.text
        ));
    }
    Ok(())
}

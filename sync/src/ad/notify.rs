//! AD's change notification (`LDAP_SERVER_NOTIFICATION_OID`, 1.2.840.113556.1.4.528): a
//! search that never ends, on its own connection, to which the DC sends each object of
//! the subtree as it changes. It only wakes the connector: what changed is then read by
//! the DirSync delta, so a lost or duplicated notification costs one extra delta at most,
//! and polling remains the floor. Samba honours it for a subtree search by the sync
//! account (no administrator rights needed).

use std::sync::Arc;
use std::time::Duration;

use ldap3::controls::RawControl;
use ldap3::Scope;
use tokio::sync::Notify;

use crate::check::NOTIFICATION_OID;
use crate::config::Connector;
use crate::connect::connect;

/// How long to wait before dialling again after the notification search ended.
const RETRY: Duration = Duration::from_secs(5);

/// Watches `c`'s base DN until the task is dropped, waking `wake` on every change. Ends
/// and restarts the search when the DC drops it (a restart, a timeout), logging why.
pub async fn watch(c: Arc<Connector>, wake: Arc<Notify>) {
    loop {
        match watch_once(&c, &wake).await {
            Ok(()) => {
                tracing::info!(connector = %c.name, "change notification ended; watching again")
            }
            Err(e) => {
                tracing::warn!(connector = %c.name, error = %e, "change notification failed; polling continues, retrying in 5 s")
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

async fn watch_once(c: &Connector, wake: &Notify) -> Result<(), String> {
    let mut session = connect(c).await.map_err(|e| e.to_string())?;
    let ctrl = RawControl {
        ctype: NOTIFICATION_OID.to_owned(),
        crit: true,
        val: None,
    };
    let mut stream = session
        .ldap
        .with_controls(vec![ctrl])
        .streaming_search(&c.base_dn, Scope::Subtree, "(objectClass=*)", vec!["1.1"])
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(connector = %c.name, server = %session.server.url, "watching for change notifications");
    // A wake also after the search is established: a change made while it was being set
    // up is then not missed.
    wake.notify_one();
    while let Some(_entry) = stream.next().await.map_err(|e| e.to_string())? {
        tracing::debug!(connector = %c.name, "change notification");
        wake.notify_one();
    }
    let res = stream.finish().await;
    if res.rc != 0 {
        return Err(format!("the DC ended it: result {} {}", res.rc, res.text));
    }
    Ok(())
}

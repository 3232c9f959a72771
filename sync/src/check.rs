//! `causeway sync check`: what an administrator runs before the first sync. Beyond the file
//! itself, it reaches each connector's directory as the sync account and asks the questions
//! a first run would fail on — can it bind, is `base_dn` the domain, may this account use
//! DirSync (AD) or content sync (OpenLDAP), and with hash sync on, can it read a password
//! hash ([`phs`]) — and says how to fix each answer.

mod phs;

use std::fmt;

use ldap3::controls::RawControl;
use ldap3::Scope;

use crate::ad::dirsync;
use crate::config::{is_under, Connector, ConnectorKind, OpenLdapDelta};
use crate::connect::{connect, RootDse};

/// AD's change-notification control (`LDAP_SERVER_NOTIFICATION_OID`).
pub const NOTIFICATION_OID: &str = "1.2.840.113556.1.4.528";
/// RFC 4533 content synchronisation (`syncrepl`).
pub const CONTENT_SYNC_OID: &str = "1.3.6.1.4.1.4203.1.9.1.1";
/// LDAP's "insufficient access rights".
const INSUFFICIENT_ACCESS: u32 = 50;

/// One line of a check, with its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Whether this stops a sync from working.
    pub ok: bool,
    /// What was found, and for a problem how to fix it.
    pub text: String,
}

/// What was found for one connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorReport {
    /// The connector's name.
    pub name: String,
    /// The findings, in the order they were made.
    pub findings: Vec<Finding>,
}

impl ConnectorReport {
    /// Whether nothing stops a sync.
    pub fn ok(&self) -> bool {
        self.findings.iter().all(|f| f.ok)
    }
}

impl fmt::Display for ConnectorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "connector {}: {}",
            self.name,
            if self.ok() { "ok" } else { "PROBLEM" }
        )?;
        for x in &self.findings {
            writeln!(f, "  {} {}", if x.ok { "ok " } else { "ERR" }, x.text)?;
        }
        Ok(())
    }
}

/// Checks one connector against its directory.
pub async fn check_connector(c: &Connector) -> ConnectorReport {
    let mut findings = Vec::new();
    let mut note = |ok: bool, text: String| findings.push(Finding { ok, text });
    let mut s = match connect(c).await {
        Ok(s) => s,
        Err(e) => {
            note(false, e.to_string());
            return ConnectorReport {
                name: c.name.clone(),
                findings,
            };
        }
    };
    note(
        true,
        format!(
            "{}{} accepted the bind as {}",
            s.server.url,
            s.root
                .dns_host_name
                .as_deref()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default(),
            c.bind_dn
        ),
    );
    match c.kind {
        ConnectorKind::ActiveDirectory => {
            check_ad(c, &s.root, &mut s.ldap, &mut note).await;
        }
        ConnectorKind::OpenLdap => {
            let offered = s.root.supports(CONTENT_SYNC_OID);
            let (ok, text) = openldap_delta(c.delta, offered);
            note(ok, text);
            let fallback = c.delta == OpenLdapDelta::ModifyTimestamp
                || (c.delta == OpenLdapDelta::Auto && !offered);
            if fallback && !s.root.supports(crate::ad::paged::PAGED_RESULTS_OID) {
                note(
                    false,
                    format!(
                        "the modifyTimestamp fallback reads page by page, but the server does not advertise paged results ({}, RFC 2696)",
                        crate::ad::paged::PAGED_RESULTS_OID
                    ),
                );
            }
        }
    }
    if c.password_hash_sync {
        match c.kind {
            ConnectorKind::ActiveDirectory => phs::check_ad(c, &mut s.ldap, &mut note).await,
            ConnectorKind::OpenLdap => phs::check_openldap(c, &mut s.ldap, &mut note).await,
        }
    }
    let _ = s.ldap.unbind().await;
    ConnectorReport {
        name: c.name.clone(),
        findings,
    }
}

/// What an OpenLDAP connector's imports will use, given whether the server advertises
/// content sync: only `delta = "content_sync"` without it stops a sync.
fn openldap_delta(delta: OpenLdapDelta, offered: bool) -> (bool, String) {
    const FALLBACK: &str = "changes are found by modifyTimestamp (paged searches), \
        deletions by comparing the entryUUIDs present with the held ones on every delta";
    match (delta, offered) {
        (OpenLdapDelta::ModifyTimestamp, _) => (
            true,
            format!("delta = \"modify_timestamp\": {FALLBACK}"),
        ),
        (_, true) => (true, "content sync (RFC 4533) advertised".into()),
        (OpenLdapDelta::Auto, false) => (
            true,
            format!(
                "no content sync (RFC 4533, {CONTENT_SYNC_OID}) advertised: the modifyTimestamp fallback will be used: {FALLBACK}"
            ),
        ),
        (OpenLdapDelta::ContentSync, false) => (
            false,
            format!(
                "delta = \"content_sync\" but the server does not advertise content sync ({CONTENT_SYNC_OID}, RFC 4533): enable the syncprov overlay on its database, or set delta = \"auto\" to use the modifyTimestamp fallback"
            ),
        ),
    }
}

async fn check_ad(
    c: &Connector,
    root: &RootDse,
    ldap: &mut ldap3::Ldap,
    note: &mut impl FnMut(bool, String),
) {
    match &root.default_naming_context {
        Some(nc) if is_under(nc, &c.base_dn) && is_under(&c.base_dn, nc) => {
            note(true, format!("base_dn is the domain {nc}"))
        }
        Some(nc) => note(
            false,
            format!(
                "base_dn {:?} is not this domain's naming context {nc:?}: DirSync reads a whole domain, so set base_dn = {nc:?} and narrow with include_ous",
                c.base_dn
            ),
        ),
        None => note(
            false,
            "the server's root DSE has no defaultNamingContext: is it an Active Directory DC?"
                .into(),
        ),
    }
    if !root.supports(dirsync::OID) {
        note(
            false,
            format!("the server does not advertise DirSync ({})", dirsync::OID),
        );
        return;
    }
    let req = dirsync::Request {
        flags: dirsync::INCREMENTAL_VALUES,
        // One small answer is enough to learn whether the account may use DirSync.
        max_bytes: 4096,
        cookie: dirsync::Cookie::default(),
    };
    let probe = tokio::time::timeout(
        c.timeout,
        ldap.with_controls(vec![RawControl::from(&req)]).search(
            &c.base_dn,
            Scope::Subtree,
            "(objectClass=organizationalUnit)",
            vec!["objectGUID"],
        ),
    )
    .await;
    match probe {
        Err(_) => note(
            false,
            format!("no answer to a DirSync search within {:?}", c.timeout),
        ),
        Ok(Err(e)) => note(false, format!("DirSync search: {e}")),
        Ok(Ok(r)) if r.1.rc == INSUFFICIENT_ACCESS => note(
            false,
            format!(
                "{} may not use DirSync (LDAP 50: {}): grant it \"Replicating Directory Changes\" on the domain root, and List/Read on CN=Deleted Objects so deletions are seen",
                c.bind_dn, r.1.text
            ),
        ),
        Ok(Ok(r)) if r.1.rc != 0 => note(
            false,
            format!("DirSync search refused (LDAP {}: {})", r.1.rc, r.1.text),
        ),
        Ok(Ok(r)) => match dirsync::Response::from_controls(r.1.ctrls.iter().map(|c| &c.1)) {
            Ok(d) => note(
                true,
                format!(
                    "DirSync allowed (first cookie {} bytes)",
                    d.cookie.as_bytes().len()
                ),
            ),
            Err(e) => note(false, e.to_string()),
        },
    }
    if c.change_notification {
        if root.supports(NOTIFICATION_OID) {
            note(true, "change notification advertised".into());
        } else {
            note(
                false,
                "change_notification = true but the server does not advertise it (1.2.840.113556.1.4.528); set it to false to poll only".into(),
            );
        }
    }
    if let Some(usn) = root.highest_committed_usn {
        note(true, format!("highestCommittedUSN {usn}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openldap_without_content_sync_uses_the_fallback_unless_content_sync_is_forced() {
        let (ok, t) = openldap_delta(OpenLdapDelta::Auto, false);
        assert!(
            ok && t.contains("modifyTimestamp fallback will be used"),
            "{t}"
        );
        let (ok, t) = openldap_delta(OpenLdapDelta::ContentSync, false);
        assert!(
            !ok && t.contains(CONTENT_SYNC_OID) && t.contains("syncprov"),
            "{t}"
        );
        let (ok, t) = openldap_delta(OpenLdapDelta::ModifyTimestamp, true);
        assert!(ok && t.contains("modify_timestamp"), "{t}");
        for d in [OpenLdapDelta::Auto, OpenLdapDelta::ContentSync] {
            let (ok, t) = openldap_delta(d, true);
            assert!(
                ok && t.contains("content sync (RFC 4533) advertised"),
                "{t}"
            );
        }
    }
}

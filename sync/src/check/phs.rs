//! What `sync check` asks for a connector with `password_hash_sync = true`: that the bind
//! account can actually read one password hash the way a hash pass will, one step per
//! line so the failing step names its fix. The hash read is dropped (zeroized) unprinted.

use causeway_drsr::replicate::{
    ReplicateError, Session, ERROR_ACCESS_DENIED, ERROR_DS_DRA_ACCESS_DENIED,
};
use causeway_drsr::rpc::{self, Association, RpcError, Target};
use causeway_drsr::secret::{self, SessionKey};
use ldap3::Scope;

use crate::ad::entry::Sid;
use crate::config::Connector;
use crate::hashsync::ad::{plan, Plan};

/// `Replicating Directory Changes` (`DS-Replication-Get-Changes`).
pub(crate) const GET_CHANGES: &str = "1131f6aa-9c07-11d1-f79f-00c04fc2dcd2";
/// `Replicating Directory Changes All` (`DS-Replication-Get-Changes-All`).
pub(crate) const GET_CHANGES_ALL: &str = "1131f6ad-9c07-11d1-f79f-00c04fc2dcd2";

/// An error with its sources, `a: b: c` (the DRSR errors keep the cause as a source).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The transport error under a DRSUAPI call's failure, if it was one.
fn rpc_cause(e: &ReplicateError) -> Option<&RpcError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<RpcError>() {
            return Some(r);
        }
        cur = c.source();
    }
    None
}

/// How to grant the two rights to `sid` (the account's SID, or a placeholder).
pub(crate) fn rights_fix(who: &str, sid: &str, domain_dn: &str) -> String {
    // dsacls takes `user@dns.domain` as well as `NETBIOS\user`; NTLM here may name the
    // domain by its DNS name, which dsacls would not take before the backslash.
    let principal = match who.split_once('\\') {
        Some((d, u)) if d.contains('.') => format!("{u}@{d}"),
        _ => who.to_owned(),
    };
    format!(
        "{who} needs the extended rights \"Replicating Directory Changes\" ({GET_CHANGES}) and \
         \"Replicating Directory Changes All\" ({GET_CHANGES_ALL}) on the domain root {domain_dn}. \
         Samba: `samba-tool dsacl set --action=allow --objectdn={domain_dn} \
         --sddl='(OA;;CR;{GET_CHANGES};;{sid})(OA;;CR;{GET_CHANGES_ALL};;{sid})'`; \
         Windows: Active Directory Users and Computers, the domain's \"Delegate Control…\", \
         a custom task on \"This folder, existing objects…\" with both rights, or \
         `dsacls \"{domain_dn}\" /G \"{principal}:CA;Replicating Directory Changes\" \
         \"{principal}:CA;Replicating Directory Changes All\"`"
    )
}

/// The bind account's SID read over LDAP (for the fix line), when `bind_dn` is a DN.
async fn bind_sid(c: &Connector, ldap: &mut ldap3::Ldap) -> Option<String> {
    if !c.bind_dn.contains('=') {
        return None;
    }
    let r = tokio::time::timeout(
        c.timeout,
        ldap.search(
            &c.bind_dn,
            Scope::Base,
            "(objectClass=*)",
            vec!["objectSid"],
        ),
    )
    .await
    .ok()?
    .ok()?
    .success()
    .ok()?;
    let e = ldap3::SearchEntry::construct(r.0.into_iter().next()?);
    let raw = e.bin_attrs.get("objectSid")?.first()?;
    Sid::from_bytes(raw).ok().map(|s| s.as_str().to_owned())
}

/// AD: the endpoint mapper, the DRSUAPI port, the sealed NTLM bind, `IDL_DRSBind`, and
/// `EXOP_REPL_OBJ` of the bind account's own object with a decryptable `unicodePwd` —
/// which only an account holding both replication rights gets.
pub(crate) async fn check_ad(
    c: &Connector,
    ldap: &mut ldap3::Ldap,
    note: &mut impl FnMut(bool, String),
) {
    let p: Plan = match plan(c).await {
        Ok(p) => p,
        Err(e) => return note(false, format!("hash sync: {}", chain(&e))),
    };
    let ip = p.target.host;
    let port = match rpc::map_port(ip, &rpc::DRSUAPI, &p.limits).await {
        Ok(port) => {
            note(
                true,
                format!("endpoint mapper at {ip}:135 maps DRSUAPI to port {port}"),
            );
            port
        }
        Err(e) => {
            return note(
                false,
                format!(
                    "endpoint mapper at {ip}:135: {}: hash sync needs TCP 135 and the DC's RPC ports (49152-65535 on Windows) open from this host",
                    chain(&e)
                ),
            )
        }
    };
    let target = Target {
        port: Some(port),
        ..p.target.clone()
    };
    let who = p.who();
    let assoc = match Association::connect(&target, &rpc::DRSUAPI, &p.creds, &p.limits).await {
        Ok(a) => a,
        Err(e @ (RpcError::Connect { .. } | RpcError::ConnectTimeout { .. })) => {
            return note(
                false,
                format!(
                    "DRSUAPI port {ip}:{port}: {}: open it from this host",
                    chain(&e)
                ),
            )
        }
        Err(e) => {
            note(true, format!("DRSUAPI answers on {ip}:{port}"));
            return note(false, format!("sealed NTLM bind as {who}: {}", chain(&e)));
        }
    };
    note(true, format!("DRSUAPI answers on {ip}:{port}"));
    let key = SessionKey::new(assoc.session_key().expose_secret().to_vec());
    let options = causeway_drsr::replicate::Options {
        dc_host_name: p.dc_name.clone(),
        ..Default::default()
    };
    // NTLM's AUTHENTICATE has no answer of its own: the first sealed call (DRSBind) is
    // where a wrong password or a locked account shows.
    let mut drs = match Session::open(assoc, &p.domain_dns, options).await {
        Ok(s) => s,
        Err(e) => {
            if let Some(RpcError::AuthRejected { .. }) = rpc_cause(&e) {
                return note(
                    false,
                    format!(
                        "the DC refused the sealed NTLM bind as {who}: wrong password in the connector's bind password, or the account is disabled, locked or expired: {}",
                        chain(&e)
                    ),
                );
            }
            note(
                true,
                format!("sealed NTLM bind (packet privacy) as {who} accepted"),
            );
            return note(false, format!("IDL_DRSBind: {}", chain(&e)));
        }
    };
    note(
        true,
        format!("sealed NTLM bind (packet privacy) as {who} accepted"),
    );
    note(
        true,
        format!(
            "IDL_DRSBind accepted; domain naming context {}",
            drs.naming_context().dn
        ),
    );
    let guid = match drs.find_user(&c.bind_dn).await {
        Ok(g) => g,
        Err(e) => {
            let _ = drs.close().await;
            return note(
                false,
                format!(
                    "IDL_DRSCrackNames of the bind account {}: {}",
                    c.bind_dn,
                    chain(&e)
                ),
            );
        }
    };
    let one = drs.refresh_one(guid).await;
    let _ = drs.close().await;
    let denied = |sid: Option<String>, what: String| {
        format!(
            "{what}: {}",
            rights_fix(
                &who,
                sid.as_deref().unwrap_or("<SID of the account>"),
                &c.base_dn
            )
        )
    };
    match one {
        Ok(Some(u)) => match &u.unicode_pwd {
            Some(v) => match secret::decrypt_nt_hash(&key, u.rid, v) {
                // Dropped here: zeroized, never shown.
                Ok(_nt) => note(
                    true,
                    format!(
                        "EXOP_REPL_OBJ of {} returned a decryptable unicodePwd: \"Replicating Directory Changes\" and \"Replicating Directory Changes All\" are granted",
                        u.dn
                    ),
                ),
                Err(e) => note(
                    false,
                    format!("EXOP_REPL_OBJ of {}: unicodePwd cannot be decrypted: {e}", u.dn),
                ),
            },
            None => {
                let sid = Sid::from_bytes(&u.sid).ok().map(|s| s.as_str().to_owned());
                note(
                    false,
                    denied(
                        sid,
                        format!("EXOP_REPL_OBJ of {} returned no unicodePwd (the DC leaves secrets out without the rights, or the account has no password)", u.dn),
                    ),
                )
            }
        },
        Ok(None) => note(
            false,
            format!("EXOP_REPL_OBJ of {}: the DC returned no user object", c.bind_dn),
        ),
        Err(ReplicateError::Refused { code, .. })
            if code == ERROR_DS_DRA_ACCESS_DENIED || code == ERROR_ACCESS_DENIED =>
        {
            let sid = bind_sid(c, ldap).await;
            note(
                false,
                denied(sid, format!("EXOP_REPL_OBJ of {} refused (Win32 {code:#x}, access denied)", c.bind_dn)),
            );
        }
        Err(e) => note(false, format!("EXOP_REPL_OBJ of {}: {}", c.bind_dn, chain(&e))),
    }
}

/// How many `sambaSamAccount` entries the OpenLDAP check looks at for one readable hash.
const SAMPLE: i32 = 50;

/// OpenLDAP: the bind account reads `sambaNTPassword` of a user in scope. slapd leaves a
/// denied attribute out of the entry, so "no hash in any sampled user" is the refusal.
pub(crate) async fn check_openldap(
    c: &Connector,
    ldap: &mut ldap3::Ldap,
    note: &mut impl FnMut(bool, String),
) {
    let acl = format!(
        "add to slapd's ACL, before the rule that hides it: `access to attrs=sambaNTPassword by dn.exact=\"{}\" read`",
        c.bind_dn
    );
    let r = tokio::time::timeout(
        c.timeout,
        ldap.with_search_options(ldap3::SearchOptions::new().sizelimit(SAMPLE))
            .search(
                &c.base_dn,
                Scope::Subtree,
                "(objectClass=sambaSamAccount)",
                vec!["sambaNTPassword"],
            ),
    )
    .await;
    let entries = match r {
        Err(_) => {
            return note(
                false,
                format!(
                    "no answer to a search for sambaSamAccount users within {:?}",
                    c.timeout
                ),
            )
        }
        Ok(Err(e)) => return note(false, format!("searching sambaSamAccount users: {e}")),
        // 4: size limit exceeded, with the sample.
        Ok(Ok(r)) if r.1.rc != 0 && r.1.rc != 4 => {
            return note(
                false,
                format!(
                    "searching sambaSamAccount users refused (LDAP {}: {})",
                    r.1.rc, r.1.text
                ),
            )
        }
        Ok(Ok(r)) => r.0,
    };
    if entries.is_empty() {
        return note(
            false,
            format!(
                "no user with objectClass sambaSamAccount under {} is visible to {}: hash sync reads sambaNTPassword from such users",
                c.base_dn, c.bind_dn
            ),
        );
    }
    let n = entries.len();
    let readable = entries
        .into_iter()
        .map(ldap3::SearchEntry::construct)
        .find(|e| {
            e.attrs.contains_key("sambaNTPassword") || e.bin_attrs.contains_key("sambaNTPassword")
        });
    match readable {
        Some(e) => note(
            true,
            format!("sambaNTPassword of {} is readable by {}", e.dn, c.bind_dn),
        ),
        None => note(
            false,
            format!(
                "{} may not read sambaNTPassword (absent from all {n} sambaSamAccount users looked at): {acl}",
                c.bind_dn
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fix_names_both_rights_for_samba_and_windows_with_a_principal_dsacls_takes() {
        let t = rights_fix(
            "lab.causeway.test\\alice",
            "S-1-5-21-1-2-3-1102",
            "DC=lab,DC=causeway,DC=test",
        );
        assert!(t.contains(&format!(
            "--sddl='(OA;;CR;{GET_CHANGES};;S-1-5-21-1-2-3-1102)(OA;;CR;{GET_CHANGES_ALL};;S-1-5-21-1-2-3-1102)'"
        )), "{t}");
        assert!(
            t.contains("\"alice@lab.causeway.test:CA;Replicating Directory Changes All\""),
            "{t}"
        );
        let t = rights_fix("LAB\\alice", "<SID of the account>", "DC=lab");
        assert!(
            t.contains("\"LAB\\alice:CA;Replicating Directory Changes\""),
            "{t}"
        );
    }
}

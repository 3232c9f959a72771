//! The replication driver: bind, find the domain naming context and the DC's DSA, then
//! replicate the domain NC with a partial attribute set that carries the password
//! attributes — fully, incrementally from a saved [`Watermark`], or one object on demand.
//!
//! Only user objects with a SID come out as [`ReplicatedUser`]s; everything else is
//! counted in [`Page::skipped`] and dropped: objects without a SID (containers, OUs),
//! objects whose `sAMAccountType` is not `SAM_USER_OBJECT` (groups, computers, trusts),
//! and — in incremental passes, where the DC sends only changed attributes — objects that
//! carry neither `sAMAccountType` nor any password or account attribute nor `isDeleted`.
//! The SID, GUID and DN come from each object's `DSNAME`, which the DC always fills, so an
//! incremental change still names its user.
//!
//! Memory is bounded by the page: each [`Pass::next_page`] is one `IDL_DRSGetNCChanges`
//! reply of at most [`Options::max_objects`] objects, decoded under [`crate::ndr::Limits`].

use crate::msg::{
    decode_bind_reply, decode_crack_reply, decode_dcinfo_reply, decode_getnc_reply,
    decode_unbind_reply, encode_bind_request, encode_crack_request, encode_dcinfo_request,
    encode_getnc_request, encode_unbind_request, guid_from_string, opnum, Call, CallError, Cursor,
    DrsHandle, DsName, EncryptedValue, ExtendedOp, Extensions, GetNcReply, GetNcRequest, KnownAttr,
    MsgError, NameFormat, PrefixTable, UsnVector, DRS_INIT_SYNC, DRS_NEVER_SYNCED, DRS_WRIT_REP,
    KNOWN_ATTRS, NTDSAPI_CLIENT_GUID,
};

#[cfg(test)]
mod tests;
mod user;

use user::users_of;

/// One replicated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicatedUser {
    /// `objectGUID` (wire order): the anchor.
    pub guid: [u8; 16],
    /// `objectSid`, binary.
    pub sid: Vec<u8>,
    /// The SID's last sub-authority (keys the DES layer of the secret attributes).
    pub rid: u32,
    /// The DN at the time of replication.
    pub dn: String,
    /// `sAMAccountName`.
    pub sam: Option<String>,
    /// `userPrincipalName`.
    pub upn: Option<String>,
    /// `pwdLastSet` (FILETIME; 0 = must change at next logon).
    pub pwd_last_set: Option<i64>,
    /// `userAccountControl`.
    pub user_account_control: Option<u32>,
    /// `accountExpires` (FILETIME; 0 or `i64::MAX` = never).
    pub account_expires: Option<i64>,
    /// `unicodePwd`, still encrypted (absent: no password, or unchanged in this pass).
    pub unicode_pwd: Option<EncryptedValue>,
    /// `ntPwdHistory`, still encrypted.
    pub nt_pwd_history: Option<EncryptedValue>,
    /// `isDeleted`: the object is a tombstone.
    pub deleted: bool,
}

/// Where the next incremental pass starts: the DC's invocation id, the highwater USN
/// vector and the up-to-dateness vector of the last completed pass. Serialisable so the
/// sync engine can persist it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Watermark {
    /// `uuidInvocIdSrc` of the pass that produced it.
    pub invocation_id: [u8; 16],
    /// `usnvecTo` of the last reply.
    pub highwater: UsnVector,
    /// `pUpToDateVecSrc` of the last reply.
    pub utd: Vec<Cursor>,
}

/// Knobs of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `cMaxObjects` per reply (Samba caps it at 1,000 by default).
    pub max_objects: u32,
    /// `cMaxBytes` per reply.
    pub max_bytes: u32,
    /// The DC's DNS host name, to pick its DSA when the domain has several DCs; `None`
    /// takes the first one the DC lists.
    pub dc_host_name: Option<String>,
}

impl Default for Options {
    /// 1,000 objects and 8 MiB a reply.
    fn default() -> Self {
        Self {
            max_objects: 1000,
            max_bytes: 8 << 20,
            dc_host_name: None,
        }
    }
}

/// What went wrong, and whose it is to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicateError {
    /// The transport failed (network, authentication, sealing).
    #[error("the {call} call did not complete: {source}")]
    Transport {
        /// Which DRSUAPI call.
        call: &'static str,
        /// The transport's error.
        #[source]
        source: CallError,
    },
    /// The DC's reply could not be decoded.
    #[error(transparent)]
    Reply(#[from] MsgError),
    /// The DC refused the call with a Win32 error.
    #[error("the DC refused {call} with Win32 error {code:#x}{}", refusal_hint(*.code))]
    Refused {
        /// Which DRSUAPI call.
        call: &'static str,
        /// The Win32 error (the return value, or `dwDRSError`).
        code: u32,
    },
    /// `IDL_DRSDomainControllerInfo` listed no DC (or not the one asked for).
    #[error("the DC lists no domain controller{} for this domain", .0.as_deref().map(|h| format!(" named {h}")).unwrap_or_default())]
    NoDomainController(Option<String>),
    /// `IDL_DRSCrackNames` could not resolve a name.
    #[error("the DC could not resolve {what} {name:?} (DS_NAME_ERROR {status})")]
    NameNotResolved {
        /// What the name is (the domain NC, a user).
        what: &'static str,
        /// The name as given.
        name: String,
        /// `DS_NAME_RESULT_ITEMW.status` (2: not found, 3: not unique).
        status: u32,
    },
    /// An extended operation failed.
    #[error("the DC answered extended operation {op:?} with EXOP_ERR {code}")]
    ExtendedOp {
        /// The operation.
        op: ExtendedOp,
        /// `ulExtendedRet`.
        code: u32,
    },
    /// The DC keeps asking for another page without moving the watermark: an empty page,
    /// or [`MAX_STALLED_PAGES`] pages in a row (what a DC does when it restarts the pass on
    /// every call, e.g. for a source invocation id it does not honour).
    #[error("the DC returned fMoreData without moving the watermark it was given ({pages} pages in a row); stopping instead of looping")]
    NoProgress {
        /// Consecutive pages that left the watermark where it was.
        pages: u32,
    },
    /// An attribute value of the wrong size or encoding.
    #[error("the DC sent a malformed {attr:?} value ({len} bytes) for object {dn:?}")]
    BadValue {
        /// The attribute.
        attr: KnownAttr,
        /// Its length.
        len: usize,
        /// The object's DN.
        dn: String,
    },
    /// The domain name given is not a DNS name.
    #[error("{0:?} is not a DNS domain name")]
    BadDomain(String),
}

/// `ERROR_DS_DRA_ACCESS_DENIED`.
pub const ERROR_DS_DRA_ACCESS_DENIED: u32 = 0x2105;
/// `ERROR_DS_DRA_BAD_NC`.
pub const ERROR_DS_DRA_BAD_NC: u32 = 0x20f8;
/// `ERROR_ACCESS_DENIED`.
pub const ERROR_ACCESS_DENIED: u32 = 5;

fn refusal_hint(code: u32) -> &'static str {
    match code {
        ERROR_DS_DRA_ACCESS_DENIED | ERROR_ACCESS_DENIED => {
            " (access denied: the sync account needs the extended rights \"Replicating Directory \
             Changes\" and \"Replicating Directory Changes All\" on the domain root; grant them \
             with `dsacls \"<domain DN>\" /G \"<DOMAIN>\\<account>:CA;Replicating Directory Changes\"` \
             and the same with `Replicating Directory Changes All`, or on Samba `samba-tool dsacl \
             set --objectdn=<domain DN> --sddl=\"(OA;;CR;1131f6aa-9c07-11d1-f79f-00c04fc2dcd2;;<SID>)\
             (OA;;CR;1131f6ad-9c07-11d1-f79f-00c04fc2dcd2;;<SID>)\"`)"
        }
        ERROR_DS_DRA_BAD_NC => " (the DC holds no such naming context: check the domain name)",
        _ => "",
    }
}

/// `SAM_USER_OBJECT` ([MS-SAMR] 2.2.1.9): `sAMAccountType` of a normal user account.
const SAM_USER_OBJECT: u32 = 0x3000_0000;

/// A bound DRSUAPI session on one DC, positioned on the domain NC.
#[derive(Debug)]
pub struct Session<C> {
    call: C,
    handle: DrsHandle,
    dsa_guid: [u8; 16],
    nc: DsName,
    server: Extensions,
    pas: Vec<u32>,
    prefix: PrefixTable,
    options: Options,
}

async fn send<C: Call>(
    call: &mut C,
    name: &'static str,
    op: u16,
    stub: &[u8],
) -> Result<Vec<u8>, ReplicateError> {
    call.call(op, stub)
        .await
        .map_err(|source| ReplicateError::Transport { call: name, source })
}

fn ok(call: &'static str, code: u32) -> Result<(), ReplicateError> {
    if code == 0 {
        Ok(())
    } else {
        Err(ReplicateError::Refused { call, code })
    }
}

/// `lab.causeway.test` → `DC=lab,DC=causeway,DC=test`.
fn nc_dn_of(domain_dns: &str) -> Option<String> {
    let labels: Vec<&str> = domain_dns.trim_end_matches('.').split('.').collect();
    if labels
        .iter()
        .any(|l| l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return None;
    }
    Some(
        labels
            .iter()
            .map(|l| format!("DC={l}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

impl<C: Call> Session<C> {
    /// Binds (again with the DC's replication epoch if it differs), finds the DC's NTDS
    /// DSA GUID and resolves the domain NC of `domain_dns` to its GUID.
    pub async fn open(
        mut call: C,
        domain_dns: &str,
        options: Options,
    ) -> Result<Self, ReplicateError> {
        let nc_dn =
            nc_dn_of(domain_dns).ok_or_else(|| ReplicateError::BadDomain(domain_dns.to_owned()))?;
        let (mut handle, mut server) = bind(&mut call, 0).await?;
        if server.repl_epoch != 0 {
            // [MS-DRSR] 4.1.3.3: a client whose epoch differs must bind again with the DC's.
            let _ = unbind(&mut call, &handle).await;
            (handle, server) = bind(&mut call, server.repl_epoch).await?;
        }

        let reply = send(
            &mut call,
            "IDL_DRSDomainControllerInfo",
            opnum::DC_INFO,
            &encode_dcinfo_request(&handle, domain_dns),
        )
        .await?;
        let (dcs, status) = decode_dcinfo_reply(&reply)?;
        ok("IDL_DRSDomainControllerInfo", status)?;
        let dc = match &options.dc_host_name {
            Some(h) => dcs.iter().find(|d| {
                d.dns_host_name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(h))
            }),
            None => dcs.first(),
        }
        .ok_or_else(|| ReplicateError::NoDomainController(options.dc_host_name.clone()))?;
        let dsa_guid = dc.ntds_dsa_guid;

        let guid = crack(
            &mut call,
            &handle,
            NameFormat::Fqdn1779,
            &nc_dn,
            "the domain naming context",
        )
        .await?;
        let oids: Vec<&str> = KNOWN_ATTRS.iter().map(|(_, o)| *o).collect();
        // The OIDs are constants, so the table is always built.
        let (prefix, pas) = PrefixTable::for_request(&oids).unwrap_or_default();
        Ok(Self {
            call,
            handle,
            dsa_guid,
            nc: DsName {
                guid,
                sid: Vec::new(),
                dn: nc_dn,
            },
            server,
            pas,
            prefix,
            options,
        })
    }

    /// The domain NC (GUID and DN).
    pub fn naming_context(&self) -> &DsName {
        &self.nc
    }

    /// The DC's NTDS DSA object GUID.
    pub fn dsa_guid(&self) -> [u8; 16] {
        self.dsa_guid
    }

    /// The extensions the DC answered the bind with.
    pub fn server_extensions(&self) -> &Extensions {
        &self.server
    }

    /// A full replication of the domain NC.
    ///
    /// The first request names no source invocation id (all zero): Samba honours a
    /// highwatermark only relative to its own invocation id and zeroes it for any other
    /// value, so naming the DSA GUID there (as impacket does) restarts every page from
    /// USN 0 and the pass never ends. Later pages send the id the DC answered with.
    pub fn full(&mut self) -> Pass<'_, C> {
        Pass::new(
            self,
            [0; 16],
            UsnVector::default(),
            None,
            DRS_INIT_SYNC | DRS_WRIT_REP | DRS_NEVER_SYNCED,
        )
    }

    /// An incremental replication from `from` (the watermark of a completed pass).
    pub fn incremental(&mut self, from: &Watermark) -> Pass<'_, C> {
        Pass::new(
            self,
            from.invocation_id,
            from.highwater,
            Some(from.utd.clone()),
            DRS_WRIT_REP,
        )
    }

    /// Resolves a user name (`user@upn.suffix`, `DOMAIN\sam` or a DN) to its GUID.
    pub async fn find_user(&mut self, name: &str) -> Result<[u8; 16], ReplicateError> {
        let format = if name.contains('\\') {
            NameFormat::Nt4Account
        } else if name.contains('=') {
            NameFormat::Fqdn1779
        } else {
            NameFormat::UserPrincipal
        };
        crack(&mut self.call, &self.handle, format, name, "the user").await
    }

    /// Replicates one user on demand, secrets included, with `EXOP_REPL_OBJ` and the
    /// partial attribute set. Not `EXOP_REPL_SECRETS`: that is the read-only-DC path —
    /// the DC decides whether *the destination RODC* may hold the secrets ([MS-DRSR]
    /// 4.1.10.5.14) — and Samba refuses it to a sync account with
    /// `ERROR_DS_DRA_ACCESS_DENIED` even when it holds both replication rights, while
    /// `EXOP_REPL_OBJ` returns the same encrypted attributes to such an account.
    /// `Ok(None)`: the object is not a user with a SID.
    pub async fn refresh_one(
        &mut self,
        guid: [u8; 16],
    ) -> Result<Option<ReplicatedUser>, ReplicateError> {
        self.extended(guid, ExtendedOp::ReplObj).await
    }

    /// Replicates one object with the given extended operation (`EXOP_REPL_SECRETS`
    /// works for a caller the DC treats as an RODC).
    pub async fn extended(
        &mut self,
        guid: [u8; 16],
        op: ExtendedOp,
    ) -> Result<Option<ReplicatedUser>, ReplicateError> {
        let req = GetNcRequest {
            dsa_dest: self.dsa_guid,
            invocation_src: self.dsa_guid,
            nc: DsName {
                guid,
                sid: Vec::new(),
                dn: String::new(),
            },
            from: UsnVector::default(),
            utd: None,
            flags: DRS_INIT_SYNC | DRS_WRIT_REP,
            max_objects: 1,
            max_bytes: 0,
            extended_op: op,
            partial_attrs: self.pas.clone(),
            prefix: self.prefix.clone(),
        };
        let reply = self.get_nc_changes(&req).await?;
        // EXOP_ERR_SUCCESS is 1.
        if reply.extended_ret != 1 {
            return Err(ReplicateError::ExtendedOp {
                op,
                code: reply.extended_ret,
            });
        }
        let (mut users, _) = users_of(reply)?;
        Ok(users.pop())
    }

    async fn get_nc_changes(&mut self, req: &GetNcRequest) -> Result<GetNcReply, ReplicateError> {
        const CALL: &str = "IDL_DRSGetNCChanges";
        let stub = send(
            &mut self.call,
            CALL,
            opnum::GET_NC_CHANGES,
            &encode_getnc_request(&self.handle, req),
        )
        .await?;
        let reply = decode_getnc_reply(&stub)?;
        ok(CALL, reply.status)?;
        ok(CALL, reply.drs_error)?;
        Ok(reply)
    }

    /// Unbinds and gives the transport back.
    pub async fn close(mut self) -> Result<C, ReplicateError> {
        unbind(&mut self.call, &self.handle).await?;
        Ok(self.call)
    }
}

async fn bind<C: Call>(
    call: &mut C,
    epoch: u32,
) -> Result<(DrsHandle, Extensions), ReplicateError> {
    const CALL: &str = "IDL_DRSBind";
    let stub = send(
        call,
        CALL,
        opnum::BIND,
        &encode_bind_request(&NTDSAPI_CLIENT_GUID, &Extensions::client(epoch)),
    )
    .await?;
    let reply = decode_bind_reply(&stub)?;
    ok(CALL, reply.status)?;
    Ok((reply.handle, reply.server.unwrap_or_default()))
}

async fn unbind<C: Call>(call: &mut C, handle: &DrsHandle) -> Result<(), ReplicateError> {
    const CALL: &str = "IDL_DRSUnbind";
    let stub = send(call, CALL, opnum::UNBIND, &encode_unbind_request(handle)).await?;
    ok(CALL, decode_unbind_reply(&stub)?)
}

async fn crack<C: Call>(
    call: &mut C,
    handle: &DrsHandle,
    offered: NameFormat,
    name: &str,
    what: &'static str,
) -> Result<[u8; 16], ReplicateError> {
    const CALL: &str = "IDL_DRSCrackNames";
    let stub = send(
        call,
        CALL,
        opnum::CRACK_NAMES,
        &encode_crack_request(handle, offered, NameFormat::UniqueId, &[name]),
    )
    .await?;
    let (items, status) = decode_crack_reply(&stub)?;
    ok(CALL, status)?;
    let not_resolved = |status| ReplicateError::NameNotResolved {
        what,
        name: name.to_owned(),
        status,
    };
    let item = items.first().ok_or_else(|| not_resolved(u32::MAX))?;
    if item.status != 0 {
        return Err(not_resolved(item.status));
    }
    item.name
        .as_deref()
        .and_then(guid_from_string)
        .ok_or_else(|| not_resolved(item.status))
}

/// One reply's worth of users.
#[derive(Debug)]
pub struct Page {
    /// The users in this reply.
    pub users: Vec<ReplicatedUser>,
    /// Objects in this reply that were not users with a SID.
    pub skipped: usize,
    /// Whether this was the pass's last reply ([`Pass::watermark`] is then set).
    pub last: bool,
}

/// Pages in a row that may leave the watermark unmoved (with objects or linked values in
/// them) before a pass is stopped as looping.
pub const MAX_STALLED_PAGES: u32 = 16;

/// One replication pass (full or incremental) in progress.
#[derive(Debug)]
pub struct Pass<'s, C> {
    session: &'s mut Session<C>,
    invocation: [u8; 16],
    from: UsnVector,
    utd: Option<Vec<Cursor>>,
    flags: u32,
    watermark: Option<Watermark>,
    stalled: u32,
}

impl<'s, C: Call> Pass<'s, C> {
    fn new(
        session: &'s mut Session<C>,
        invocation: [u8; 16],
        from: UsnVector,
        utd: Option<Vec<Cursor>>,
        flags: u32,
    ) -> Self {
        Self {
            session,
            invocation,
            from,
            utd,
            flags,
            watermark: None,
            stalled: 0,
        }
    }

    /// The next page, or `None` once the pass is complete.
    pub async fn next_page(&mut self) -> Result<Option<Page>, ReplicateError> {
        if self.watermark.is_some() {
            return Ok(None);
        }
        let s = &mut *self.session;
        let req = GetNcRequest {
            dsa_dest: s.dsa_guid,
            invocation_src: self.invocation,
            nc: s.nc.clone(),
            from: self.from,
            utd: self.utd.clone(),
            flags: self.flags,
            max_objects: s.options.max_objects,
            max_bytes: s.options.max_bytes,
            extended_op: ExtendedOp::None,
            partial_attrs: s.pas.clone(),
            prefix: s.prefix.clone(),
        };
        let reply = s.get_nc_changes(&req).await?;
        let more = reply.more_data;
        let (to, invocation, utd) = (reply.to, reply.invocation_src, reply.utd.clone());
        if more && to == self.from {
            self.stalled += 1;
            let empty = reply.objects.is_empty() && reply.num_values == 0;
            if empty || self.stalled > MAX_STALLED_PAGES {
                return Err(ReplicateError::NoProgress {
                    pages: self.stalled,
                });
            }
        } else {
            self.stalled = 0;
        }
        let (users, skipped) = users_of(reply)?;
        if more {
            self.from = to;
            self.invocation = invocation;
        } else {
            self.watermark = Some(Watermark {
                invocation_id: invocation,
                highwater: to,
                utd: utd.unwrap_or_default(),
            });
        }
        Ok(Some(Page {
            users,
            skipped,
            last: !more,
        }))
    }

    /// The watermark for the next incremental pass, once this one is complete.
    pub fn watermark(&self) -> Option<&Watermark> {
        self.watermark.as_ref()
    }
}

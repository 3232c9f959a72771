//! The lab's slapd as its administrator, for the OpenLDAP tests: the LDAPS URL by the name
//! its certificate carries, an admin connection, and a guard that removes a test's OU.

use std::path::Path;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings};

use super::{delete_tree, lab, tls_config, Lab};

/// The LDAPS URL by the name the certificate carries.
pub fn ldaps(lab: &Lab) -> String {
    lab.get("SLAPD_LDAPS_URL")
        .replace("127.0.0.1", lab.get("SLAPD_TLS_SERVER_NAME"))
}

/// A connection bound as slapd's administrator.
pub async fn as_admin(lab: &Lab) -> Ldap {
    let (conn, mut ldap) = LdapConnAsync::with_settings(
        LdapConnSettings::new().set_config(tls_config(Some(Path::new(lab.get("SLAPD_CA_CERT"))))),
        &ldaps(lab),
    )
    .await
    .expect("connect as admin");
    ldap3::drive!(conn);
    ldap.simple_bind(lab.get("SLAPD_ADMIN_DN"), lab.get("SLAPD_ADMIN_PASSWORD"))
        .await
        .expect("admin bind")
        .success()
        .expect("admin bind accepted");
    ldap
}

/// Deletes the test's OU with what it holds when dropped, a failed run's too (on a thread
/// of its own: a test's runtime cannot be blocked on from its drop).
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let dn = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut adm = as_admin(lab()).await;
                delete_tree(&mut adm, &dn).await;
                let _ = adm.unbind().await;
            });
        })
        .join();
    }
}

//! `causeway apps m365`: the exact commands that federate a Microsoft 365 / Entra ID domain
//! with this endpoint, filled in with the values the running endpoint publishes in its
//! federation metadata (issuer, sign-in and sign-out URLs, current and next token-signing
//! certificates), so that nothing is copied by hand from an XML file.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use causeway_saml::xml::{self as reader, Node};

/// Entra ID's WS-Federation realm and reply URL (what `login.microsoftonline.com` sends as
/// `wtrealm` and where it takes the token).
pub(crate) const ENTRA_REALM: &str = "urn:federation:MicrosoftOnline";
pub(crate) const ENTRA_REPLY: &str = "https://login.microsoftonline.com/login.srf";

const MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
const FED: &str = "http://docs.oasis-open.org/wsfed/federation/200706";
const WSA: &str = "http://www.w3.org/2005/08/addressing";

/// Which protocol Entra ID speaks to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Protocol {
    /// WS-Federation (what AD FS uses with Entra ID; the default).
    WsFed,
    /// SAML 2.0 (SAML-P).
    Saml,
}

/// Print the commands that federate a Microsoft 365 / Entra ID domain with this endpoint.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:
  causeway apps m365 --endpoint https://idp.example.com --domain corp.example.com

The values come from the running endpoint's /FederationMetadata/2007-06/FederationMetadata.xml.
Run it again after a token-signing key rollover is published: the output then carries
-NextSigningCertificate, which Entra ID trusts ahead of the switch.")]
pub(crate) struct M365Args {
    /// The endpoint's public URL (as browsers reach it).
    #[arg(long)]
    endpoint: String,
    /// The Entra ID domain to federate (a verified custom domain, not *.onmicrosoft.com).
    #[arg(long)]
    domain: String,
    /// The protocol Entra ID uses.
    #[arg(long, value_enum, default_value_t = Protocol::WsFed)]
    protocol: Protocol,
    /// A CA (PEM) to trust for the endpoint's certificate, e.g. <data dir>/ca/ca.pem while it
    /// serves Causeway's own.
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

/// What the metadata says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) issuer: String,
    pub(crate) passive: String,
    pub(crate) saml_sso: Option<String>,
    pub(crate) saml_slo: Option<String>,
    /// Distinct signing certificates (base64 DER), in published order: current first.
    pub(crate) certs: Vec<String>,
}

/// Reads the federation metadata (bounded parse; it came over the network).
pub(crate) fn published(xml: &str) -> Result<Published, String> {
    let root = reader::parse(xml).map_err(|e| format!("not XML metadata: {e}"))?;
    if !root.is(MD, "EntityDescriptor") {
        return Err("not SAML metadata: the root is not md:EntityDescriptor".into());
    }
    let issuer = root
        .attr("entityID")
        .ok_or("the metadata has no entityID")?
        .to_owned();
    let mut certs = Vec::new();
    let mut passive = None;
    let (mut saml_sso, mut saml_slo) = (None, None);
    for role in root.elements() {
        for kd in role.children_named(MD, "KeyDescriptor") {
            if kd.attr("use").is_some_and(|u| u != "signing") {
                continue;
            }
            let c = kd
                .child(DS, "KeyInfo")
                .and_then(|k| k.child(DS, "X509Data"))
                .and_then(|d| d.child(DS, "X509Certificate"))
                .map(|c| c.text().split_whitespace().collect::<String>());
            if let Some(c) = c {
                if !certs.contains(&c) {
                    certs.push(c);
                }
            }
        }
        if let Some(a) = role
            .child(FED, "PassiveRequestorEndpoint")
            .and_then(|p| p.child(WSA, "EndpointReference"))
            .and_then(|r| r.child(WSA, "Address"))
        {
            passive = Some(a.text().trim().to_owned());
        }
        if role.is(MD, "IDPSSODescriptor") {
            let redirect = |n: &&Node| {
                n.attr("Binding") == Some("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect")
            };
            saml_sso = role
                .children_named(MD, "SingleSignOnService")
                .find(redirect)
                .and_then(|n| n.attr("Location"))
                .map(str::to_owned);
            saml_slo = role
                .children_named(MD, "SingleLogoutService")
                .find(redirect)
                .and_then(|n| n.attr("Location"))
                .map(str::to_owned);
        }
    }
    let passive = passive.ok_or("the metadata has no WS-Federation PassiveRequestorEndpoint")?;
    if certs.is_empty() {
        return Err("the metadata has no signing certificate".into());
    }
    Ok(Published {
        issuer,
        passive,
        saml_sso,
        saml_slo,
        certs,
    })
}

/// The commands, for `protocol`.
pub(crate) fn commands(p: &Published, domain: &str, protocol: Protocol) -> Result<String, String> {
    let (sign_in, sign_out, proto, register) = match protocol {
        Protocol::WsFed => (
            p.passive.clone(),
            format!("{}?wa=wsignout1.0", p.passive),
            "wsFed",
            format!(
                "causeway apps add --wsfed-realm {ENTRA_REALM} --reply-url {ENTRA_REPLY} --name \"Microsoft 365\""
            ),
        ),
        Protocol::Saml => (
            p.saml_sso
                .clone()
                .ok_or("the metadata has no SAML SingleSignOnService (HTTP-Redirect)")?,
            p.saml_slo
                .clone()
                .ok_or("the metadata has no SAML SingleLogoutService (HTTP-Redirect)")?,
            "saml",
            "causeway apps add --saml-metadata https://nexus.microsoftonline-p.com/federationmetadata/saml20/federationmetadata.xml --name \"Microsoft 365\"\n# and give it the immutable id as its persistent NameID (see `causeway apps add --help`)".to_owned(),
        ),
    };
    let next = match p.certs.get(1) {
        Some(c) => format!("  -NextSigningCertificate \"{c}\" `\n"),
        None => String::new(),
    };
    Ok(format!(
        "# Microsoft 365 / Entra ID: federate {domain} with Causeway ({proto}).\n\
         # Values from {issuer}'s published metadata.\n\
         #\n\
         # 1. On the endpoint, once: Entra ID as a relying party.\n\
         {register}\n\
         #\n\
         # 2. In PowerShell (Microsoft Graph module), as a Domain Name Administrator. This turns\n\
         #    {domain} from managed to federated: its users then sign in here.\n\
         Connect-MgGraph -Scopes \"Domain.ReadWrite.All\",\"Directory.AccessAsUser.All\"\n\
         New-MgDomainFederationConfiguration -DomainId \"{domain}\" `\n  \
         -DisplayName \"Causeway\" `\n  \
         -IssuerUri \"{issuer}\" `\n  \
         -PassiveSignInUri \"{sign_in}\" `\n  \
         -SignOutUri \"{sign_out}\" `\n  \
         -SigningCertificate \"{cert}\" `\n\
         {next}  \
         -PreferredAuthenticationProtocol \"{proto}\" `\n  \
         -FederatedIdpMfaBehavior \"acceptIfMfaDoneByFederatedIdp\"\n\
         Get-MgDomainFederationConfiguration -DomainId \"{domain}\" | Format-List\n\
         #\n\
         # 3. Each user's OnPremisesImmutableId in Entra ID must be Causeway's immutable id (the\n\
         #    ImmutableID claim; `causeway users list` shows it). Users synchronised by Entra\n\
         #    Connect from the same AD already match when both use ms-DS-ConsistencyGuid.\n\
         # To undo: Remove-MgDomainFederationConfiguration, then\n\
         #    Update-MgDomain -DomainId \"{domain}\" -AuthenticationType Managed\n",
        issuer = p.issuer,
        cert = p.certs[0],
    ))
}

pub(crate) async fn run(a: M365Args) -> Result<()> {
    let base = a.endpoint.trim_end_matches('/');
    if !base.starts_with("https://") {
        bail!("--endpoint {base}: give the endpoint's https:// URL (Entra ID accepts no other)");
    }
    if a.domain.is_empty()
        || a.domain.len() > 253
        || !a
            .domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        bail!(
            "--domain {:?}: give a DNS domain name such as corp.example.com",
            a.domain
        );
    }
    let url = format!("{base}/FederationMetadata/2007-06/FederationMetadata.xml");
    let xml = crate::http_client::get(&url, a.ca_file.as_deref(), 1024 * 1024)
        .await
        .with_context(|| format!("cannot read the endpoint's metadata at {url}"))?;
    let p = published(&xml).map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let text = commands(&p, &a.domain, a.protocol).map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example.com/saml/metadata"><md:RoleDescriptor xmlns:fed="http://docs.oasis-open.org/wsfed/federation/200706"><md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>AAAA</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>BB
BB</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><fed:PassiveRequestorEndpoint><wsa:EndpointReference xmlns:wsa="http://www.w3.org/2005/08/addressing"><wsa:Address>https://idp.example.com/wsfed</wsa:Address></wsa:EndpointReference></fed:PassiveRequestorEndpoint></md:RoleDescriptor></md:EntityDescriptor>"#;

    #[test]
    fn reads_issuer_passive_endpoint_and_both_certificates() {
        let p = published(META).expect("parses");
        assert_eq!(p.issuer, "https://idp.example.com/saml/metadata");
        assert_eq!(p.passive, "https://idp.example.com/wsfed");
        assert_eq!(p.certs, vec!["AAAA".to_owned(), "BBBB".to_owned()]);
        let text = commands(&p, "corp.example.com", Protocol::WsFed).expect("wsfed");
        assert!(text.contains("-NextSigningCertificate \"BBBB\""), "{text}");
        assert!(text.contains("-SignOutUri \"https://idp.example.com/wsfed?wa=wsignout1.0\""));
        let e = commands(&p, "corp.example.com", Protocol::Saml).expect_err("no SAML SSO");
        assert!(e.contains("SingleSignOnService"), "{e}");
    }

    #[test]
    fn refuses_what_is_not_federation_metadata() {
        assert!(published("<html/>").is_err());
        let no_passive = META.replace("PassiveRequestorEndpoint", "Other");
        assert!(published(&no_passive)
            .expect_err("no passive endpoint")
            .contains("PassiveRequestorEndpoint"));
        assert!(published("<md:EntityDescriptor").is_err());
    }
}

//! `causeway apps …`: register the applications (relying parties) the endpoint signs
//! users in to. A running endpoint picks changes up within 10 seconds.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use causeway_federation::apps::{Apps, WsFedRealm};

use crate::endpoint::DataDir;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AppsCommand {
    /// Register a SAML service provider from its metadata, a WS-Federation relying party, or
    /// an OpenID Connect client.
    ///
    /// Examples:
    ///   causeway apps add --saml-metadata sp-metadata.xml
    ///   causeway apps add --saml-metadata https://app.example.com/saml/metadata
    ///   causeway apps add --wsfed-realm urn:federation:MicrosoftOnline --reply-url https://login.microsoftonline.com/login.srf
    ///   causeway apps add --oidc wiki --redirect-uri https://wiki.example.com/oidc/callback
    #[command(verbatim_doc_comment)]
    Add {
        #[command(flatten)]
        data: DataDir,
        /// The SP's SAML metadata: a file or an https:// URL.
        #[arg(long, conflicts_with = "wsfed_realm")]
        saml_metadata: Option<String>,
        /// Extra CA (PEM) to trust when fetching metadata by URL.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// A WS-Federation realm (wtrealm).
        #[arg(long, requires = "reply_url")]
        wsfed_realm: Option<String>,
        /// Reply URLs the realm may use (repeat; the first is the default).
        #[arg(long = "reply-url")]
        reply_url: Vec<String>,
        /// A name shown on the sign-in page.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        oidc: crate::apps_oidc::OidcArgs,
    },
    /// List registered applications.
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Remove an application by entity id or realm.
    Remove {
        #[command(flatten)]
        data: DataDir,
        /// Entity id or realm.
        id: String,
    },
}

pub(crate) async fn apps(cmd: AppsCommand) -> Result<()> {
    match cmd {
        AppsCommand::Add {
            data,
            saml_metadata,
            ca_file,
            wsfed_realm,
            reply_url,
            name,
            oidc,
        } => {
            data.ensure()?;
            if oidc.oidc.is_some() {
                crate::apps_oidc::add(&data, oidc, name)
            } else if let Some(src) = saml_metadata {
                let xml = if src.starts_with("https://") {
                    crate::http_client::get(&src, ca_file.as_deref(), 1024 * 1024).await?
                } else if src.starts_with("http://") {
                    bail!("{src}: fetch metadata over https:// (or save it to a file and check it first)");
                } else {
                    std::fs::read_to_string(&src).with_context(|| format!("cannot read {src}"))?
                };
                let sp = Apps::add_saml(&data.apps_dir(), &xml)?;
                println!("registered SAML application {}", sp.entity_id);
                for a in &sp.acs {
                    println!(
                        "  assertion consumer service: {} ({})",
                        a.location,
                        a.binding.rsplit(':').next().unwrap_or("")
                    );
                }
                if sp.authn_requests_signed {
                    println!(
                        "  its sign-in requests must be signed ({} certificate(s))",
                        sp.signing_certs.len()
                    );
                }
                Ok(())
            } else if let Some(realm) = wsfed_realm {
                let r = WsFedRealm {
                    realm,
                    reply_urls: reply_url,
                    name,
                };
                Apps::add_wsfed(&data.apps_dir(), &r)?;
                println!(
                    "registered WS-Federation relying party {} (replies to {})",
                    r.realm,
                    r.reply_urls.join(", ")
                );
                Ok(())
            } else {
                bail!("give --saml-metadata FILE|URL, or --wsfed-realm REALM with --reply-url URL");
            }
        }
        AppsCommand::List { data } => {
            let apps = Apps::load(&data.apps_dir())?;
            if apps.saml.is_empty() && apps.wsfed.is_empty() && apps.oidc.is_empty() {
                println!("no applications registered (causeway apps add --help)");
            }
            for sp in apps.saml.values() {
                println!(
                    "saml   {}  -> {}",
                    sp.entity_id,
                    sp.acs.first().map_or("", |a| a.location.as_str())
                );
            }
            for r in apps.wsfed.values() {
                println!("wsfed  {}  -> {}", r.realm, r.reply_urls.join(", "));
            }
            for c in apps.oidc.values() {
                println!("oidc   {}  -> {}", c.client_id, c.redirect_uris.join(", "));
            }
            Ok(())
        }
        AppsCommand::Remove { data, id } => {
            if Apps::remove(&data.apps_dir(), &id)? {
                println!("removed {id}");
                Ok(())
            } else {
                bail!("no application {id}")
            }
        }
    }
}

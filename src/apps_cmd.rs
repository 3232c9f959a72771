//! `causeway apps …`: register the applications (relying parties) the endpoint signs
//! users in to. A running endpoint picks changes up within 10 seconds.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use causeway_federation::apps::{Apps, SamlSettings, WsFedRealm};
use serde::Deserialize;

use crate::data_dir::DataArgs;

/// A SAML application's settings (stored beside its metadata; see the README).
#[derive(Debug, clap::Args)]
pub(crate) struct SamlOptions {
    /// The NameID format it always gets (default: what its requests or metadata ask for).
    #[arg(long, value_parser = ["persistent", "transient", "email", "unspecified"], requires = "saml_metadata")]
    name_id_format: Option<String>,
    /// What a persistent NameID is: different for every application (pairwise), or the
    /// user's immutable id (what Microsoft 365 needs).
    #[arg(long, value_parser = ["pairwise", "immutable-id"], default_value = "pairwise")]
    persistent_id: String,
    /// Which attributes it gets, comma-separated (default: all of them).
    #[arg(long, value_delimiter = ',', value_parser = ["upn", "mail", "displayName", "groups", "immutableID"], requires = "saml_metadata")]
    attributes: Vec<String>,
    /// How attribute names are written: claim URIs, urn:oid names, plain names, or `entra`
    /// (the UPN as IDPEmail, other claims by URI: Microsoft 365's SAML-P federation).
    #[arg(long, value_parser = ["uri", "oid", "plain", "entra"], default_value = "uri")]
    attribute_names: String,
    /// Which parts of the Response are signed.
    #[arg(long, value_parser = ["both", "response", "assertion"], default_value = "both")]
    sign: String,
    /// Encrypt assertions to the encryption key in its metadata (AES-256-GCM, RSA-OAEP).
    #[arg(long, requires = "saml_metadata")]
    encrypt_assertions: bool,
}

impl SamlOptions {
    /// The settings, with `name`. clap has checked every value against the same names
    /// the settings file uses, so the conversion goes through that format.
    fn settings(&self, name: Option<String>) -> Result<SamlSettings> {
        let mut t = toml::Table::new();
        if let Some(n) = name {
            t.insert("name".into(), n.into());
        }
        if let Some(f) = &self.name_id_format {
            t.insert("name_id_format".into(), f.clone().into());
        }
        t.insert("persistent_id".into(), self.persistent_id.clone().into());
        t.insert(
            "attribute_names".into(),
            self.attribute_names.clone().into(),
        );
        if !self.attributes.is_empty() {
            t.insert(
                "attributes".into(),
                toml::Value::Array(self.attributes.iter().map(|a| a.clone().into()).collect()),
            );
        }
        t.insert("sign".into(), self.sign.clone().into());
        t.insert("encrypt_assertions".into(), self.encrypt_assertions.into());
        SamlSettings::deserialize(t).context("invalid SAML application settings")
    }
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AppsCommand {
    /// Register a SAML service provider from its metadata, a WS-Federation relying party, or
    /// an OpenID Connect client.
    ///
    /// Examples:
    ///   causeway apps add --saml-metadata sp-metadata.xml --name "Wiki"
    ///   causeway apps add --saml-metadata https://app.example.com/saml/metadata
    ///   causeway apps add --saml-metadata shib.xml --attribute-names oid --encrypt-assertions
    ///   causeway apps add --saml-metadata m365.xml --persistent-id immutable-id --replace
    ///   causeway apps add --wsfed-realm urn:federation:MicrosoftOnline --reply-url https://login.microsoftonline.com/login.srf
    ///   causeway apps add --oidc wiki --redirect-uri https://wiki.example.com/oidc/callback
    #[command(verbatim_doc_comment)]
    Add {
        #[command(flatten)]
        data: DataArgs,
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
        /// Replace an application registered already with the same entity id or realm.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        saml: Box<SamlOptions>,
        #[command(flatten)]
        oidc: Box<crate::apps_oidc::OidcArgs>,
    },
    /// List registered applications.
    List {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Print the commands that federate a Microsoft 365 / Entra ID domain with this
    /// endpoint (Graph PowerShell, filled in from the endpoint's metadata).
    M365(crate::apps_m365::M365Args),
    /// Remove an application by entity id or realm.
    Remove {
        #[command(flatten)]
        data: DataArgs,
        /// Entity id or realm.
        id: String,
    },
}

impl AppsCommand {
    /// What the audit log calls this command and the application it changes; `None` for
    /// the commands that only read or print.
    fn audited(&self) -> Option<(&'static str, String, DataArgs)> {
        match self {
            AppsCommand::Add {
                data,
                saml_metadata,
                wsfed_realm,
                ..
            } => Some((
                "app.add",
                saml_metadata
                    .clone()
                    .or_else(|| wsfed_realm.clone())
                    .unwrap_or_default(),
                data.clone(),
            )),
            AppsCommand::Remove { data, id } => Some(("app.remove", id.clone(), data.clone())),
            _ => None,
        }
    }
}

/// Runs `cmd`; a change is recorded in the audit log with how it ended.
pub(crate) async fn apps(cmd: AppsCommand) -> Result<()> {
    let audited = cmd.audited();
    let result = apps_command(cmd).await;
    if let Some((action, target, data)) = audited {
        data.audit_admin(action, &target, &result);
    }
    result
}

async fn apps_command(cmd: AppsCommand) -> Result<()> {
    match cmd {
        AppsCommand::M365(a) => crate::apps_m365::run(a).await,
        AppsCommand::Add {
            data,
            saml_metadata,
            ca_file,
            wsfed_realm,
            reply_url,
            name,
            replace,
            saml,
            oidc,
        } => {
            let data = data.locate()?.data;
            if oidc.oidc.is_some() {
                crate::apps_oidc::add(&data, *oidc, name, replace)
            } else if let Some(src) = saml_metadata {
                let xml = if src.starts_with("https://") {
                    crate::http_client::get(&src, ca_file.as_deref(), 1024 * 1024).await?
                } else if src.starts_with("http://") {
                    bail!("{src}: fetch metadata over https:// (or save it to a file and check it first)");
                } else {
                    std::fs::read_to_string(&src).with_context(|| format!("cannot read {src}"))?
                };
                let settings = saml.settings(name)?;
                let sp = Apps::add_saml(
                    &data.apps_dir(),
                    &xml,
                    &settings,
                    replace,
                    std::time::SystemTime::now(),
                )?;
                println!(
                    "{} SAML application {}{}",
                    if replace {
                        "registered (replacing any earlier)"
                    } else {
                        "registered"
                    },
                    sp.entity_id,
                    settings
                        .name
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                );
                if settings.encrypt_assertions {
                    println!("  assertions are encrypted to its key (AES-256-GCM, RSA-OAEP)");
                }
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
                Apps::add_wsfed(&data.apps_dir(), &r, replace)?;
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
            let apps = Apps::load(&data.locate()?.data.apps_dir())?;
            if apps.saml.is_empty() && apps.wsfed.is_empty() && apps.oidc.is_empty() {
                println!("no applications registered (causeway apps add --help)");
            }
            for sp in apps.saml.values() {
                let name = apps
                    .saml_settings
                    .get(&sp.entity_id)
                    .and_then(|s| s.name.as_deref())
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                println!(
                    "saml   {}{name}  -> {}",
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
            if Apps::remove(&data.locate()?.data.apps_dir(), &id)? {
                println!("removed {id}");
                Ok(())
            } else {
                bail!("no application {id}")
            }
        }
    }
}

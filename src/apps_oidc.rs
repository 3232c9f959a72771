//! `causeway apps add --oidc NAME --redirect-uri URI …`: registers an OpenID Connect
//! client. A confidential client's secret is printed once and stored only as a hash;
//! redirect URIs match exactly, and `http://` is accepted for loopback only.

use anyhow::Result;
use causeway_federation::oidc_clients;
use causeway_oidc::{Client, SubjectType};

use crate::data_dir::DataDir;

/// The OpenID Connect options of `causeway apps add`.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct OidcArgs {
    /// Register an OpenID Connect client with this client id (A-Z a-z 0-9 - . _ ~).
    #[arg(long, value_name = "CLIENT_ID", conflicts_with_all = ["saml_metadata", "wsfed_realm"])]
    pub(crate) oidc: Option<String>,
    /// A redirect URI the client may receive codes at (repeat; exact match).
    #[arg(long = "redirect-uri", requires = "oidc")]
    pub(crate) redirect_uri: Vec<String>,
    /// Where the client may send a browser after signing out (repeat; exact match).
    #[arg(long = "post-logout-redirect-uri", requires = "oidc")]
    pub(crate) post_logout_redirect_uri: Vec<String>,
    /// A public client (a browser or mobile app): no secret, PKCE required.
    #[arg(long, requires = "oidc")]
    pub(crate) public: bool,
    /// Send the user's immutable id as `sub` instead of a value of this client's own.
    #[arg(long, requires = "oidc")]
    pub(crate) public_subject: bool,
    /// The client's public keys (a JWKS file): it authenticates with `private_key_jwt`
    /// assertions (RS256 or ES256) instead of a secret.
    #[arg(long, requires = "oidc", conflicts_with = "public")]
    pub(crate) jwks: Option<std::path::PathBuf>,
    /// Where browsers tell the client that the session ended (front-channel logout).
    #[arg(long = "frontchannel-logout-uri", requires = "oidc")]
    pub(crate) frontchannel_logout_uri: Option<String>,
}

/// Registers the client; prints its id and, for a confidential client, its secret.
pub(crate) fn add(
    data: &DataDir,
    args: OidcArgs,
    name: Option<String>,
    replace: bool,
) -> Result<()> {
    let Some(client_id) = args.oidc else {
        anyhow::bail!("give --oidc CLIENT_ID");
    };
    let jwks = match &args.jwks {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let secret = (!args.public && jwks.is_none()).then(causeway_oidc::client::new_secret);
    let client = Client {
        client_id,
        name,
        redirect_uris: args.redirect_uri,
        post_logout_redirect_uris: args.post_logout_redirect_uri,
        public: args.public,
        secret_sha256: secret.as_ref().map(|(_, h)| h.clone()),
        subject_type: if args.public_subject {
            SubjectType::Public
        } else {
            SubjectType::Pairwise
        },
        jwks,
        frontchannel_logout_uri: args.frontchannel_logout_uri,
    };
    oidc_clients::add(&data.apps_dir(), &client, replace)?;
    {
        println!(
            "registered OpenID Connect client {} ({})",
            client.client_id,
            if client.public {
                "public, PKCE required"
            } else if client.jwks.is_some() {
                "confidential, private_key_jwt"
            } else {
                "confidential"
            }
        );
        println!("  client_id: {}", client.client_id);
        if let Some((s, _)) = &secret {
            println!("  client_secret: {}", s.as_str());
            println!("  (shown once: only its hash is stored)");
        }
        for u in &client.redirect_uris {
            println!("  redirect URI: {u}");
        }
    }
    Ok(())
}

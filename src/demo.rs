//! `causeway demo`: a complete local demonstration on embedded defaults — an endpoint in a
//! temporary (or named) directory, two demo SAML applications and a demo OpenID Connect
//! client it serves itself, a cloud-only demo user, and, when the AD lab is running, `causeway sync` bringing the lab's
//! users and groups in and an enrolled agent, so that AD accounts sign in with
//! pass-through authentication.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use causeway_credential::{Password, PhsVerifier};
use causeway_federation::signin::Method;
use causeway_store::{NewUser, SqliteStore, Users as _, Verifiers as _};
use tracing::{info, warn};

use crate::endpoint::{run_endpoint, EndpointSettings};

/// The demo user's domain (cloud-only).
pub(crate) const DEMO_DOMAIN: &str = "demo.causeway.test";

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Keep the demo's state here (reused on the next run) [default: a new temporary directory].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// The AD lab's environment file; when it exists, AD users can sign in too.
    #[arg(
        long,
        env = "CAUSEWAY_LAB_ENV",
        default_value = "/tmp/causeway-lab/lab.env"
    )]
    lab_env: PathBuf,
    /// Do not use the AD lab even if it is running.
    #[arg(long)]
    no_lab: bool,
}

fn random_password() -> String {
    let mut b = [0u8; 12];
    getrandom_fill(&mut b);
    let words = [
        "Amber", "Birch", "Cobalt", "Delta", "Ember", "Fjord", "Granite", "Harbor",
    ];
    format!(
        "{}-{}-{:02}{}",
        words[usize::from(b[0]) % words.len()],
        words[usize::from(b[1]) % words.len()],
        b[2] % 100,
        hex_lower(&b[3..7])
    )
}

/// Fills `b` from OpenSSL's CSPRNG (already linked, seeded by the OS).
fn getrandom_fill(b: &mut [u8]) {
    openssl::rand::rand_bytes(b).expect("random bytes");
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads a `KEY=VALUE` file.
pub(crate) fn read_env_file(p: &Path) -> Option<HashMap<String, String>> {
    let text = std::fs::read_to_string(p).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
            .collect(),
    )
}

pub(crate) async fn demo(args: DemoArgs) -> Result<()> {
    let dir = match args.dir {
        Some(d) => d,
        None => {
            let mut t = [0u8; 6];
            getrandom_fill(&mut t);
            std::env::temp_dir().join(format!("causeway-demo-{}", hex_lower(&t)))
        }
    };
    let lab = if args.no_lab {
        None
    } else {
        read_env_file(&args.lab_env)
    };
    let lab = match lab {
        Some(env) if lab_is_up(&env).await => Some(env),
        Some(_) => {
            info!(
                "the AD lab's environment file exists but its DC does not answer; demo without AD"
            );
            None
        }
        None => None,
    };
    let mut file = crate::serve_config::ServeConfig::default();
    if let Some(env) = &lab {
        if let Some(d) = env.get("AD_DNS_DOMAIN") {
            file.domains
                .push((d.to_lowercase(), Method::PtaWithPhsFallback));
        }
    }
    let public_url = format!("https://{}", args.listen);
    let settings = EndpointSettings {
        data_dir: dir.join("endpoint"),
        listen: args.listen,
        public_url: public_url.clone(),
        server_names: vec![
            "localhost".into(),
            "127.0.0.1".into(),
            args.listen.ip().to_string(),
        ],
        endpoint_id: "demo".into(),
        require_approval: false,
        demo_apps: true,
        per_source_per_minute: None,
        file,
    };
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    // The demo user, with a fresh password at every run.
    let store = SqliteStore::open(&settings.data_dir.join("directory.sqlite"))?;
    let upn = format!("demo@{DEMO_DOMAIN}");
    let password = random_password();
    let verifier = PhsVerifier::derive(&Password::new(password.clone())?);
    let now = SystemTime::now();
    if store.user_by_upn(&upn).await?.is_some() {
        store.set_verifier(&upn, &verifier, "demo", now).await?;
    } else {
        store
            .add_cloud_user(
                &NewUser {
                    upn: upn.clone(),
                    display_name: Some("Demo User".into()),
                    mail: Some(upn.clone()),
                },
                &verifier,
                "demo",
                now,
            )
            .await?;
    }
    drop(store);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let data_dir = settings.data_dir.clone();
    let endpoint = tokio::spawn(run_endpoint(settings, Some(tx)));
    let bound = match rx.await {
        Ok(a) => a,
        Err(_) => {
            return match endpoint.await {
                Ok(Err(e)) => Err(e),
                _ => Err(anyhow::anyhow!("the endpoint did not start")),
            }
        }
    };
    let mut agent_line = String::from("AD lab not running: start it with `sudo scripts/lab.sh start` for pass-through sign-in of AD users.");
    if let Some(env) = &lab {
        let synced = match start_sync(env, &data_dir, &dir, bound).await {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "could not start the demo's sync");
                0
            }
        };
        match start_agent(env, &data_dir, &dir, bound).await {
            Ok(()) => {
                agent_line = format!(
                    "AD lab: `causeway sync` synchronised {synced} AD objects (users, groups, contacts, OUs) and keeps them current; an agent is enrolled and connected. Try {} with its lab password (scripts/lab.sh env).",
                    env.get("AD_ALICE_UPN").map_or("alice@…", String::as_str)
                );
            }
            Err(e) => warn!(error = %format!("{e:#}"), "could not start the demo agent"),
        }
    }
    println!(
        "\nCauseway demo is running (Ctrl-C stops it).\n\n  Demo application:   {public_url}/demo/app1/\n  Second application: {public_url}/demo/app2/  (signs in without asking again)\n  OpenID Connect:     {public_url}/demo-oidc/  (a demo OIDC client, same session)\n  Start page:         {public_url}/\n  SAML metadata:      {public_url}/saml/metadata\n  WS-Fed metadata:    {public_url}/FederationMetadata/2007-06/FederationMetadata.xml\n  OIDC discovery:     {public_url}/.well-known/openid-configuration\n\n  User:     {upn}\n  Password: {password}\n\n  {agent_line}\n\n  The certificate is from the demo's own CA: your browser will warn once.\n  State: {}\n",
        dir.display()
    );
    // SIGTERM (systemd, containers, `kill`) stops the demo as Ctrl-C does.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot handle SIGTERM")?;
    tokio::select! {
        r = endpoint => r.context("endpoint task")?,
        _ = term.recv() => {
            println!("stopped; the demo's state stays in {}", dir.display());
            Ok(())
        }
        r = tokio::signal::ctrl_c() => {
            r.context("waiting for Ctrl-C")?;
            println!("stopped; the demo's state stays in {}", dir.display());
            Ok(())
        }
    }
}

async fn lab_is_up(env: &HashMap<String, String>) -> bool {
    let Some(url) = env.get("AD_LDAPS_URL") else {
        return false;
    };
    let hostport = url.trim_start_matches("ldaps://");
    matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(hostport)
        )
        .await,
        Ok(Ok(_))
    )
}

/// Registers a sync host with the demo endpoint and keeps `causeway sync` running against
/// the lab's AD (the whole domain but the benchmark's OU), as an administrator would with
/// `causeway sync register` and `causeway sync run`. Returns how many objects the first
/// round added (0 on later starts, when they are already there).
async fn start_sync(
    env: &HashMap<String, String>,
    endpoint_data: &Path,
    dir: &Path,
    bound: SocketAddr,
) -> Result<u64> {
    use causeway_sync::cycle::{run_loop, LoopOptions, Outcome};
    use causeway_sync::export::identity::Identity;
    let get = |k: &str| {
        env.get(k)
            .cloned()
            .with_context(|| format!("{k} missing from the lab environment"))
    };
    let sync_dir = dir.join("sync");
    causeway_config::files::create_private_dir(&sync_dir)?;
    causeway_config::files::write_atomic(
        &sync_dir.join("svc-sync.pw"),
        format!("{}\n", get("AD_SVC_SYNC_PASSWORD")?).as_bytes(),
        0o600,
    )?;
    let base = get("AD_BASE_DN")?;
    let config = sync_dir.join("sync.toml");
    std::fs::write(
        &config,
        format!(
            "[sync]\nstate_dir = \"state\"\nendpoints = [\"https://{bound}\"]\npoll_interval = \"1m\"\n\n[[connector]]\nname = \"lab\"\nkind = \"ad\"\nservers = [{:?}]\nca_file = {:?}\nbind_dn = {:?}\nbind_password_file = \"svc-sync.pw\"\nbase_dn = {base:?}\nexclude_ous = [\"OU=Bench,{base}\", \"OU=BenchQuarter,{base}\"]\n",
            get("AD_LDAPS_URL")?,
            get("AD_CA_CERT")?,
            get("AD_SVC_SYNC_DN")?,
        ),
    )?;
    let cfg =
        causeway_sync::config::SyncConfig::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    if !Identity::exists(&cfg.state_dir) {
        let ca = causeway_certs::Ca::load_or_create(&endpoint_data.join("ca"), SystemTime::now())?;
        let reg = causeway_store::SqliteAgents::open(&ca.registry_path())?;
        let token = causeway_store::Agents::create_token(
            &reg,
            causeway_store::TokenPurpose::Sync,
            &ca.fingerprint_sha256(),
            Duration::from_secs(600),
            SystemTime::now(),
        )
        .await?;
        let id =
            causeway_sync::export::channel::register(&cfg.endpoints, &token, "demo-sync").await?;
        causeway_config::files::create_private_dir(&cfg.state_dir)?;
        id.save(&cfg.state_dir)?;
    }
    let identity = Identity::load(&cfg.state_dir)?;
    let space =
        causeway_sync::space::ConnectorSpace::open(&cfg.state_dir.join("connector-space.sqlite"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    // The first round here, so that the users are there when the demo says so; then the
    // job keeps running (change notification, polling) for as long as the demo does.
    let mut added = 0;
    run_loop(
        &cfg,
        &space,
        Some(&identity),
        LoopOptions { once: true },
        Arc::new(tokio::sync::Notify::new()),
        |_, r| match r {
            Ok(Outcome::Exported { counts, .. }) => added = counts.added,
            Ok(_) => {}
            Err(e) => warn!(error = %e, "demo sync round failed"),
        },
        |_, _, _, _| {},
    )
    .await;
    tokio::spawn(async move {
        run_loop(
            &cfg,
            &space,
            Some(&identity),
            LoopOptions { once: false },
            Arc::new(tokio::sync::Notify::new()),
            |c, r| {
                if let Err(e) = r {
                    warn!(connector = %c.name, error = %e, "demo sync round failed");
                }
            },
            |_, _, _, _| {},
        )
        .await;
    });
    Ok(added)
}

async fn start_agent(
    env: &HashMap<String, String>,
    endpoint_data: &Path,
    dir: &Path,
    bound: SocketAddr,
) -> Result<()> {
    let ca = causeway_certs::Ca::load_or_create(&endpoint_data.join("ca"), SystemTime::now())?;
    let reg = causeway_store::SqliteAgents::open(&ca.registry_path())?;
    let token = causeway_store::Agents::create_token(
        &reg,
        causeway_store::TokenPurpose::Agent,
        &ca.fingerprint_sha256(),
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .await?;
    let state_dir = dir.join("agent");
    let endpoint = format!("https://{bound}");
    if causeway_agent::state::AgentState::load(&state_dir).is_err() {
        crate::agent_cmd::run(crate::agent_cmd::AgentCommand::Register {
            endpoint: endpoint.clone(),
            token: token.expose_secret().to_owned(),
            state_dir: state_dir.clone(),
            proxy: None,
            host_name: Some("demo-agent".into()),
        })
        .await?;
    }
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = {:?}\nendpoints = [{endpoint:?}]\n\n[directory]\ndomain_controllers = [{:?}]\nca_file = {:?}\n",
            state_dir.display().to_string(),
            env.get("AD_LDAPS_URL").cloned().unwrap_or_default(),
            env.get("AD_CA_CERT").cloned().unwrap_or_default()
        ),
    )?;
    tokio::spawn(async move {
        if let Err(e) = crate::agent_cmd::run(crate::agent_cmd::AgentCommand::Run { config }).await
        {
            warn!(error = %format!("{e:#}"), "demo agent stopped");
        }
    });
    // Wait until it has a channel, so the first sign-in goes through it.
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if reg.list_agents()?.iter().any(|a| {
            a.host_name == "demo-agent" && a.last_seen > SystemTime::now() - Duration::from_secs(10)
        }) {
            break;
        }
    }
    Ok(())
}

//! The README's "Pass-through authentication in five steps", run as written by
//! `scripts/readme-pta.sh` against the lab's Samba DC: a real `causeway serve` with a
//! `method = "pta"` domain, an agent registered with a one-time token, checked and run, and
//! an AD user's sign-in answered through it. The password shows in none of the output.

mod common;

use std::path::Path;
use std::process::Command;

use common::endpoint::bin;

#[test]
fn the_readmes_pta_steps_work_as_written_against_the_lab() {
    let lab = common::lab();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut c = Command::new("bash");
    c.arg(root.join("scripts/readme-pta.sh"))
        .env("CAUSEWAY_BIN", bin())
        .env_remove("CAUSEWAY_CONFIG")
        .env_remove("CAUSEWAY_DATA_DIR");
    for k in [
        "AD_LDAPS_URL",
        "AD_CA_CERT",
        "AD_DNS_DOMAIN",
        "AD_ALICE_UPN",
        "AD_ALICE_PASSWORD",
    ] {
        c.env(k, lab.get(k));
    }
    let out = c.output().expect("run scripts/readme-pta.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("outcome: success\npath: pass-through"),
        "{text}"
    );
    assert!(text.contains("causeway_agents_connected 1"), "{text}");
    assert!(
        !text.contains(lab.get("AD_ALICE_PASSWORD")),
        "the password was printed"
    );
}

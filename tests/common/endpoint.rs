//! A real `causeway serve` process on a loopback port it binds itself (port 0; the address
//! is read from its start-up line, so no other process can take it in between), with its own data directory
//! and captured logs, and a curl-driven browser (cookie jar, no redirects followed) to walk
//! through sign-ins the way a browser does.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Lab;

/// A running endpoint.
pub struct Endpoint {
    pub url: String,
    /// `http://<metrics listener>` (port 0 in the tests, so read from the start-up log).
    pub metrics_url: String,
    pub dir: PathBuf,
    pub log: PathBuf,
    child: Child,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_causeway")
}

pub fn temp_dir(name: &str) -> PathBuf {
    let mut b = [0u8; 6];
    getrandom_bytes(&mut b);
    let d = std::env::temp_dir().join(format!(
        "causeway-test-{name}-{}-{}",
        std::process::id(),
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn getrandom_bytes(b: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(b))
        .expect("urandom");
}

impl Endpoint {
    /// Starts `causeway serve` with `config` (TOML) and extra arguments.
    pub fn start(name: &str, config: &str, extra: &[&str]) -> Self {
        let dir = temp_dir(name);
        Self::start_in(dir, config, extra)
    }

    pub fn start_in(dir: PathBuf, config: &str, extra: &[&str]) -> Self {
        Self::start_under(dir, config, extra, &[])
    }

    /// Like [`Endpoint::start_in`], run under `wrapper` (e.g. `prlimit --nofile=…`).
    pub fn start_under(dir: PathBuf, config: &str, extra: &[&str], wrapper: &[&str]) -> Self {
        let cfg = dir.join("causeway.toml");
        std::fs::write(&cfg, config).expect("config");
        let log = dir.join("serve.log");
        let data = dir.join("data");
        let mut cmd = match wrapper.split_first() {
            Some((w, args)) => {
                let mut c = Command::new(w);
                c.args(args).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        let child = cmd
            .args(["--log", "trace", "serve", "--config"])
            .arg(&cfg)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("CAUSEWAY_PUBLIC_URL")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start causeway serve");
        let mut ep = Self {
            url: String::new(),
            metrics_url: String::new(),
            dir,
            log,
            child,
        };
        // The start-up line comes once both listeners are bound; it names their addresses.
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready = loop {
            let logs = ep.logs();
            if let Some(line) = logs.lines().find(|l| l.contains("endpoint ready")) {
                break line.to_owned();
            }
            if let Ok(Some(status)) = ep.child.try_wait() {
                panic!("endpoint exited ({status}): {logs}");
            }
            assert!(Instant::now() < deadline, "endpoint did not start: {logs}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let field = |name: &str| {
            ready
                .split(&format!(" {name}="))
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or_else(|| panic!("no {name} in the start-up line: {ready}"))
                .to_owned()
        };
        ep.url = format!("https://{}", field("listen"));
        ep.metrics_url = format!("http://{}", field("metrics_listen"));
        let (status, _, _) =
            Browser::new(&ep.dir.join("probe")).get(&format!("{}/healthz", ep.url));
        assert_eq!(status, 200, "endpoint not healthy: {}", ep.logs());
        ep
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs a `causeway` subcommand against this endpoint's data directory.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        run_cli(&self.data(), args, stdin)
    }

    /// The endpoint's process id (to read its CPU time and peak memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (e.g. "TERM", "HUP") to the endpoint process.
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    /// Waits for the process to exit on its own; panics after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let log = self.log.clone();
        wait_exit(&mut self.child, within, &|| {
            std::fs::read_to_string(&log).unwrap_or_default()
        })
    }
}

/// `kill -<signal> <pid>`.
pub fn send_signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{signal} {pid} failed");
}

fn wait_exit(
    child: &mut Child,
    within: Duration,
    logs: &dyn Fn() -> String,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "still running {within:?} later: {}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `causeway <args> --data-dir <data>`; panics on failure.
pub fn run_cli(data: &Path, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut c = Command::new(bin())
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run causeway");
    if let Some(s) = stdin {
        c.stdin
            .take()
            .expect("stdin")
            .write_all(s.as_bytes())
            .expect("write stdin");
    }
    drop(c.stdin.take());
    let out = c.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "causeway {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A cookie-keeping client driven through curl.
pub struct Browser {
    jar: PathBuf,
    headers: Vec<String>,
}

impl Browser {
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("dir");
        let mut b = [0u8; 4];
        getrandom_bytes(&mut b);
        Self {
            jar: dir.join(format!(
                "jar-{:02x}{:02x}{:02x}{:02x}",
                b[0], b[1], b[2], b[3]
            )),
            headers: Vec::new(),
        }
    }

    /// Sends `header` (`name: value`) with every request, as a proxy in front would.
    pub fn with_header(mut self, header: &str) -> Self {
        self.headers.push(header.to_owned());
        self
    }

    /// One request; returns (status, raw headers, body).
    pub fn request(
        &self,
        method: &str,
        url: &str,
        form: Option<&[(&str, &str)]>,
        raw_body: Option<&[u8]>,
    ) -> (u16, String, String) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sk",
            "--http1.1",
            "-X",
            method,
            "-D",
            "-",
            "--max-time",
            "60",
            "-c",
        ])
        .arg(&self.jar)
        .arg("-b")
        .arg(&self.jar);
        for h in &self.headers {
            cmd.arg("-H").arg(h);
        }
        let mut body_file = None;
        let body = form
            .map(|f| form_encode(f).into_bytes())
            .or_else(|| raw_body.map(<[u8]>::to_vec));
        if let Some(b) = body {
            let p = self.jar.with_extension("body");
            std::fs::write(&p, b).expect("body");
            cmd.args([
                "-H",
                "content-type: application/x-www-form-urlencoded",
                "--data-binary",
            ])
            .arg(format!("@{}", p.display()));
            body_file = Some(p);
        }
        // Very long URLs go through a curl config file (one argument is limited to 128 KiB).
        let url_file = self.jar.with_extension("url");
        if url.len() > 64 * 1024 {
            std::fs::write(&url_file, format!("url = \"{url}\"\n")).expect("url file");
            cmd.arg("-K").arg(&url_file);
        } else {
            cmd.arg(url);
        }
        let out = cmd
            .output()
            .expect("curl (installed by scripts/install-deps.sh)");
        if let Some(p) = body_file {
            let _ = std::fs::remove_file(p);
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, head.to_owned(), body.to_owned())
    }

    pub fn get(&self, url: &str) -> (u16, String, String) {
        self.request("GET", url, None, None)
    }

    pub fn post(&self, url: &str, form: &[(&str, &str)]) -> (u16, String, String) {
        self.request("POST", url, Some(form), None)
    }

    /// Follows redirects (GET) from `url`, at most 10; returns the last answer and its URL.
    pub fn follow(&self, base: &str, url: &str) -> (u16, String, String, String) {
        let mut u = url.to_owned();
        for _ in 0..10 {
            let (s, h, b) = self.get(&u);
            if s == 303 || s == 302 {
                let loc = header(&h, "location").expect("location");
                u = if loc.starts_with('/') {
                    format!("{base}{loc}")
                } else {
                    loc
                };
                continue;
            }
            return (s, h, b, u);
        }
        panic!("too many redirects from {url}");
    }

    /// Submits the sign-in form in `page` with these credentials.
    pub fn sign_in(
        &self,
        base: &str,
        page: &str,
        user: &str,
        password: &str,
    ) -> (u16, String, String) {
        let flow = hidden(page, "flow").expect("flow field");
        let csrf = hidden(page, "csrf").expect("csrf field");
        self.post(
            &format!("{base}/login"),
            &[
                ("flow", &flow),
                ("csrf", &csrf),
                ("username", user),
                ("password", password),
            ],
        )
    }
}

pub fn form_encode(f: &[(&str, &str)]) -> String {
    f.iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}
/// What the sign-in page answers `upn` with `pw` in a fresh browser (no SSO session),
/// starting from the demo application's IdP-initiated link: "signed in" or the page's
/// alert.
pub fn sign_in_fresh(ep: &Endpoint, upn: &str, pw: &str) -> String {
    let b = Browser::new(&ep.dir.join("browsers"));
    let sp = format!("{}/demo/app1", ep.url);
    let start = format!("{}/saml/idp-init?sp={}", ep.url, pct(&sp));
    let (s, _, page, _) = b.follow(&ep.url, &start);
    assert_eq!(s, 200, "{page}");
    let (_, _, page) = b.sign_in(&ep.url, &page, upn, pw);
    if page.contains("id=\"autopost\"") {
        "signed in".into()
    } else {
        alert(&page).unwrap_or(page)
    }
}

pub fn pct(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// The value of a hidden input in a page.
pub fn hidden(page: &str, name: &str) -> Option<String> {
    let key = format!("name=\"{name}\" value=\"");
    let i = page.find(&key)? + key.len();
    let j = page[i..].find('"')? + i;
    Some(unescape(&page[i..j]))
}

/// The auto-post form's action.
pub fn form_action(page: &str) -> Option<String> {
    let i = page.find("id=\"autopost\"")?;
    let k = "action=\"";
    let a = page[i..].find(k)? + i + k.len();
    let b = page[a..].find('"')? + a;
    Some(unescape(&page[a..b]))
}

pub fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The role="alert" text of a page.
pub fn alert(page: &str) -> Option<String> {
    let i = page.find("role=\"alert\"")?;
    let a = page[i..].find('>')? + i + 1;
    let b = page[a..].find('<')? + a;
    Some(unescape(&page[a..b]))
}

pub fn b64decode(s: &str) -> Vec<u8> {
    let out = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .expect("base64");
    out.stdout
}

/// Raw DEFLATE then base64, as the HTTP-Redirect binding carries a message.
pub fn deflate_b64(xml: &str) -> String {
    use std::io::Write;
    let mut c = Command::new("python3")
        .args(["-c", "import sys,zlib,base64;d=sys.stdin.buffer.read();c=zlib.compressobj(9,zlib.DEFLATED,-15);print(base64.b64encode(c.compress(d)+c.flush()).decode())"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(xml.as_bytes())
        .expect("write");
    String::from_utf8(c.wait_with_output().expect("wait").stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

/// A `causeway agent run` process enrolled with this endpoint, checking passwords against
/// the lab's AD DC.
pub struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    pub fn enrol_and_run(ep: &Endpoint, lab: &Lab) -> Self {
        Self::enrol_and_run_as(ep, lab, "agent", &ep.url)
    }

    /// Like [`Agent::enrol_and_run`], with state and logs named after `name` (so that
    /// several agents can run) and dialling `url` (the endpoint's agent listener, if it
    /// has one of its own).
    pub fn enrol_and_run_as(ep: &Endpoint, lab: &Lab, name: &str, url: &str) -> Self {
        let token = ep.cli(&["certs", "token", "--ttl", "10m"], None);
        let state = ep.dir.join(format!("{name}-state"));
        let out = Command::new(bin())
            .args(["agent", "register", "--endpoint", url, "--token"])
            .arg(token.trim())
            .arg("--state-dir")
            .arg(&state)
            .args(["--host-name", "pta-e2e"])
            .output()
            .expect("run causeway agent register");
        assert!(
            out.status.success(),
            "agent register: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cfg = ep.dir.join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[agent]\nstate_dir = {:?}\nendpoints = [{:?}]\n\n[directory]\ndomain_controllers = [{:?}]\nca_file = {:?}\n",
                state.display().to_string(),
                url,
                lab.get("AD_LDAPS_URL"),
                lab.get("AD_CA_CERT"),
            ),
        )
        .expect("agent config");
        let log = ep.dir.join(format!("{name}.log"));
        let child = Command::new(bin())
            .args(["--log", "trace", "agent", "run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("agent log"))
            .spawn()
            .expect("start causeway agent run");
        Self { child, log }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (e.g. "TERM") to the agent process.
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    /// Waits for the agent to exit on its own; panics after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let log = self.log.clone();
        wait_exit(&mut self.child, within, &|| {
            std::fs::read_to_string(&log).unwrap_or_default()
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `/healthz` reports `n` connected agents.
pub fn until_agents(ep: &Endpoint, n: usize, extra_logs: &dyn Fn() -> String) {
    let want = format!("\"agents_connected\":{n}");
    let b = Browser::new(&ep.dir.join("health"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, _, body) = b.get(&format!("{}/healthz", ep.url));
        if body.contains(&want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never {want} (last: {body})\nendpoint:\n{}\nagent:\n{}",
            ep.logs(),
            extra_logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

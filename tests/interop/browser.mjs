// tests/interop/browser.mjs — a real browser (Debian's headless Chromium, driven by
// playwright-core from scripts/install-test-tools.sh) signing in to two demo
// applications through Causeway's IdP, as a person would.
//
//   node browser.mjs --app1 URL1 --app2 URL2 --user U --password-file P --shots DIR
//                    [--wrong-password-file W] [--timeout MS]
//
// 1. URL1 redirects to the IdP's login page: screenshot 01-login.png, check <html lang>,
//    <label>s of the username and password inputs, and the Tab order
//    username -> password -> submit button.
// 2. With --wrong-password-file: submit the wrong password first, screenshot
//    02-wrong-password.png, read the [role=alert] text.
// 3. Sign in; the browser lands back on app 1, whose table#attributes lists the
//    attributes it received: screenshot 03-app1.png, table as JSON.
// 4. URL2 must land in app 2 without a login form (SSO session): 04-app2.png.
// 5. A second context with JavaScript disabled signs in to app 1 too: the IdP's
//    auto-post page must offer a submit button (noscript): 05-nojs-autopost.png,
//    06-nojs-app1.png.
// Prints one JSON object on stdout; exits 1 with a message on stderr when the flow
// itself breaks (a check that merely fails is reported in the JSON). The password is
// never printed.
import { createRequire } from "node:module";
import { readFileSync, mkdirSync } from "node:fs";
import path from "node:path";

const TOOLS = process.env.CAUSEWAY_TOOLS_DIR || "/opt/causeway-test-tools";
const require = createRequire(path.join(TOOLS, "node", "package.json"));
let chromium;
try {
  ({ chromium } = require("playwright-core"));
} catch (e) {
  console.error(`browser.mjs: cannot load playwright-core from ${TOOLS}/node (run scripts/install-test-tools.sh): ${e.message}`);
  process.exit(1);
}

function parseArgs(argv) {
  const known = new Set(["app1", "app2", "user", "password-file", "shots", "wrong-password-file", "timeout", "chromium"]);
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z0-9-]+)$/.exec(argv[i]);
    if (!m || !known.has(m[1]) || i + 1 >= argv.length) throw new Error(`unexpected argument ${argv[i]}`);
    out[m[1]] = argv[++i];
  }
  for (const k of ["app1", "app2", "user", "password-file", "shots"]) {
    if (!out[k]) throw new Error(`--${k} is required`);
  }
  return out;
}

const readSecret = (f) => readFileSync(f, "utf8").replace(/\r?\n$/, "");

// Everything the flow needs to know about the current document, in one evaluate.
// Works with JavaScript disabled too (Playwright evaluates through the DevTools protocol).
function snapshotInPage() {
  const visible = (e) => !!(e && (e.offsetWidth || e.offsetHeight || e.getClientRects().length));
  const alerts = [...document.querySelectorAll("[role=alert]")]
    .map((e) => (e.innerText || e.textContent || "").trim()).filter(Boolean);
  const samlForm = [...document.forms].find((f) => f.querySelector("input[name=SAMLResponse]"));
  return {
    origin: performance.timeOrigin,
    url: location.href,
    ready: document.readyState,
    attributes: !!document.querySelector("table#attributes"),
    password: visible(document.querySelector("input[type=password]")),
    alerts,
    samlForm: !!samlForm,
    samlSubmit: !!(samlForm && samlForm.querySelector("button[type=submit], input[type=submit], button:not([type])")),
  };
}

async function snapshot(page) {
  try {
    return await page.evaluate(snapshotInPage);
  } catch {
    return null; // the document is being replaced
  }
}

// Polls until pred(snapshot) holds on a document other than `notOrigin`'s.
async function waitFor(page, pred, { timeout, notOrigin, what }) {
  const end = Date.now() + timeout;
  let last = null;
  while (Date.now() < end) {
    const s = await snapshot(page);
    if (s) {
      last = s;
      if (s.origin !== notOrigin && s.ready !== "loading" && pred(s)) return s;
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what}; last page: ${last ? last.url : "none"}`);
}

const describeFocus = () => {
  const e = document.activeElement;
  if (!e || e === document.body) return "body";
  let d = e.tagName.toLowerCase();
  if (e.getAttribute("type")) d += `[type=${e.getAttribute("type")}]`;
  if (e.getAttribute("name")) d += `[name=${e.getAttribute("name")}]`;
  else if (e.id) d += `#${e.id}`;
  const text = (e.innerText || e.value || "").trim().slice(0, 40);
  if (e.tagName === "A" || e.tagName === "BUTTON") d += `:${text}`;
  return d;
};

async function labelsOf(page) {
  return page.evaluate(() => {
    const out = {};
    for (const name of ["username", "password"]) {
      const input = document.querySelector(`input[name=${name}]`);
      const labels = input ? [...input.labels].map((l) => (l.innerText || l.textContent).trim()).filter(Boolean) : [];
      out[name] = { present: !!input, labels, id: input ? input.id || null : null };
    }
    return out;
  });
}

async function tableAsJson(page) {
  return page.evaluate(() => {
    const table = document.querySelector("table#attributes");
    if (!table) return null;
    const rows = [...(table.tBodies.length ? table.tBodies[0].rows : table.rows)];
    const out = {};
    rows.forEach((tr, i) => {
      const cells = [...tr.cells];
      if (cells.length < 2) return;
      if (i === 0 && !table.tHead && cells.every((c) => c.tagName === "TH")) return; // header row
      const key = cells[0].innerText.trim();
      const valueCell = cells[1];
      const items = [...valueCell.querySelectorAll("li")].map((li) => li.innerText.trim());
      const value = items.length ? items : cells.slice(1).map((c) => c.innerText.trim()).join(" ").trim();
      if (key in out) {
        out[key] = [].concat(out[key], value);
      } else {
        out[key] = value;
      }
    });
    return out;
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const timeout = Number(args.timeout || 30000);
  const password = readSecret(args["password-file"]);
  const wrong = args["wrong-password-file"] ? readSecret(args["wrong-password-file"]) : null;
  mkdirSync(args.shots, { recursive: true });
  const shot = (page, name) => page.screenshot({ path: path.join(args.shots, name), fullPage: true });

  const browser = await chromium.launch({
    executablePath: args.chromium || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const result = {};
  let page;
  try {
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true, locale: "en-US", viewport: { width: 1024, height: 768 } });
    page = await ctx.newPage();
    const consoleErrors = [];
    page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));

    // 1. The login page.
    await page.goto(args.app1, { waitUntil: "load", timeout });
    let s = await waitFor(page, (x) => x.password || x.attributes, { timeout, what: "the login page" });
    if (!s.password) throw new Error(`app 1 showed its page without asking to sign in (${s.url})`);
    result.login_url = s.url;
    await shot(page, "01-login.png");
    result.lang = await page.evaluate(() => document.documentElement.getAttribute("lang"));
    result.labels = await labelsOf(page);
    result.labels_ok = result.labels.username.labels.length > 0 && result.labels.password.labels.length > 0;

    // Tab order, from wherever the page puts the focus (autofocus or the top).
    result.initial_focus = await page.evaluate(describeFocus);
    const order = [result.initial_focus];
    for (let i = 0; i < 12 && !order[order.length - 1].includes("[name=username]"); i++) {
      await page.keyboard.press("Tab");
      order.push(await page.evaluate(describeFocus));
    }
    for (let i = 0; i < 2; i++) {
      await page.keyboard.press("Tab");
      order.push(await page.evaluate(describeFocus));
    }
    result.focus_order = order;
    const u = order.findIndex((d) => d.includes("[name=username]"));
    result.focus_order_ok = u >= 0 && (order[u + 1] || "").includes("[name=password]")
      && /^(button|input\[type=submit\])/.test(order[u + 2] || "")
      && !/^button\[type=(button|reset)\]/.test(order[u + 2] || "");

    // Submits the login form; waits for app 1, an alert, the login form again, or (when
    // stopAtAutopost, i.e. without JS) the IdP's auto-post page.
    const submitLogin = async (pw, what, stopAtAutopost = false) => {
      const before = (await snapshot(page)).origin;
      await page.fill("input[name=username]", args.user);
      await page.fill("input[name=password]", pw);
      await page.click("form:has(input[name=password]) button[type=submit], form:has(input[name=password]) input[type=submit], form:has(input[name=password]) button:not([type])");
      return waitFor(page, (x) => x.attributes || x.alerts.length > 0 || (x.password && !x.samlForm)
        || (stopAtAutopost && x.samlForm), { timeout, notOrigin: before, what });
    };

    // 2. The wrong password first.
    if (wrong !== null) {
      s = await submitLogin(wrong, "the answer to a wrong password");
      await shot(page, "02-wrong-password.png");
      result.wrong_password_alert = s.alerts.length ? s.alerts.join(" | ") : null;
      result.wrong_password_form_again = s.password;
      if (s.attributes) throw new Error("the wrong password signed in");
    } else {
      result.wrong_password_alert = null;
    }

    // 3. Sign in to app 1.
    s = await submitLogin(password, "app 1 after signing in");
    if (!s.attributes) {
      await shot(page, "03-app1.png");
      throw new Error(`sign-in did not reach app 1: ${s.url}, alerts: ${JSON.stringify(s.alerts)}`);
    }
    await shot(page, "03-app1.png");
    result.app1_attributes = await tableAsJson(page);
    const app1Url = s.url;

    // 4. App 2 must not prompt.
    const app2Nav = [];
    const onNav = (f) => { if (f === page.mainFrame()) app2Nav.push(f.url()); };
    page.on("framenavigated", onNav);
    const before2 = (await snapshot(page)).origin;
    await page.goto(args.app2, { waitUntil: "load", timeout });
    s = await waitFor(page, (x) => x.attributes || x.password || (x.alerts.length > 0 && !x.samlForm),
      { timeout, notOrigin: before2, what: "app 2" });
    page.off("framenavigated", onNav);
    await shot(page, "04-app2.png");
    result.app2_prompted = s.password;
    result.app2_signed_in = s.attributes;
    result.app2_attributes = s.attributes ? await tableAsJson(page) : null;
    result.app2_navigations = app2Nav;
    result.final_urls = { app1: app1Url, app2: s.url };
    result.console_errors = consoleErrors;
    await ctx.close();

    // 5. The same sign-in with JavaScript disabled.
    const nojs = await browser.newContext({ ignoreHTTPSErrors: true, javaScriptEnabled: false, locale: "en-US" });
    page = await nojs.newPage();
    result.nojs_signed_in = false;
    try {
      await page.goto(args.app1, { waitUntil: "load", timeout });
      s = await waitFor(page, (x) => x.password || x.attributes, { timeout, what: "the login page (no JS)" });
      if (!s.password) throw new Error(`no login page without JS: ${s.url}`);
      s = await submitLogin(password, "the answer to signing in (no JS)", true);
      if (!s.attributes && s.samlForm) {
        // The auto-post page cannot post itself without JS: a person clicks its button.
        await shot(page, "05-nojs-autopost.png");
        result.nojs_autopost_button = s.samlSubmit;
        if (!s.samlSubmit) throw new Error("the auto-post page has no submit button for browsers without JS");
        const before = s.origin;
        await page.click("form:has(input[name=SAMLResponse]) button[type=submit], form:has(input[name=SAMLResponse]) input[type=submit], form:has(input[name=SAMLResponse]) button:not([type])");
        s = await waitFor(page, (x) => x.attributes || x.password || x.alerts.length > 0,
          { timeout, notOrigin: before, what: "app 1 after the auto-post button (no JS)" });
      }
      await shot(page, "06-nojs-app1.png");
      result.nojs_signed_in = !!s.attributes;
      result.nojs_final_url = s.url;
      if (!s.attributes) result.nojs_detail = `ended on ${s.url}, alerts: ${JSON.stringify(s.alerts)}`;
    } catch (e) {
      result.nojs_detail = e.message;
    }
    await nojs.close();
  } catch (e) {
    if (page) await shot(page, "error.png").catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
  return result;
}

main().then(
  (r) => { process.stdout.write(JSON.stringify(r, null, 2) + "\n"); },
  (e) => { console.error(`browser.mjs: ${e.message}`); process.exit(1); },
);

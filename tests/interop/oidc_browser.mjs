// tests/interop/oidc_browser.mjs — headless Chromium (playwright-core from
// scripts/install-test-tools.sh) signs in to the demo OpenID Connect client through
// Causeway's sign-in page, then opens the demo SAML application, which must sign in
// without a second prompt (one SSO session across protocols).
//
//   node oidc_browser.mjs --oidc URL --saml URL --user U --password-file P
//
// Prints one JSON object: the demo client's ID-token and UserInfo tables, whether the
// SAML application asked for a password, and where each step landed. Exits 1 with a
// message on stderr when the flow itself breaks. The password is never printed.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";

const TOOLS = process.env.CAUSEWAY_TOOLS_DIR || "/opt/causeway-test-tools";
const require = createRequire(path.join(TOOLS, "node", "package.json"));
const { chromium } = require("playwright-core");

const args = {};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const m = /^--(oidc|saml|user|password-file)$/.exec(argv[i]);
  if (!m || i + 1 >= argv.length) throw new Error(`unexpected argument ${argv[i]}`);
  args[m[1]] = argv[i + 1];
}
const password = readFileSync(args["password-file"], "utf8").replace(/\r?\n$/, "");

const table = (page, id) => page.evaluate((id) => {
  const t = document.querySelector(`table#${id}`);
  if (!t) return null;
  const out = {};
  for (const tr of t.rows) {
    if (tr.cells.length === 2) out[tr.cells[0].innerText.trim()] = tr.cells[1].innerText.trim();
  }
  return out;
}, id);

const browser = await chromium.launch({
  executablePath: process.env.CAUSEWAY_TOOLS_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, locale: "en-US" });
  const page = await ctx.newPage();
  page.setDefaultTimeout(30000);
  await page.goto(args.oidc);
  await page.waitForSelector("input[type=password]");
  const loginUrl = page.url();
  await page.fill("input[name=username]", args.user);
  await page.fill("input[name=password]", password);
  await Promise.all([page.waitForURL((u) => u.pathname === new URL(args.oidc).pathname), page.click("button[type=submit]")]);
  await page.waitForSelector("table#claims");
  const idToken = await table(page, "claims");
  const userinfo = await table(page, "userinfo");
  const oidcUrl = page.url();
  await page.goto(args.saml);
  await page.waitForSelector("table#attributes, input[type=password]");
  const samlAskedPassword = (await page.$("input[type=password]")) !== null;
  const samlHasAttributes = (await page.$("table#attributes")) !== null;
  console.log(JSON.stringify({ loginUrl, oidcUrl, idToken, userinfo, samlUrl: page.url(), samlAskedPassword, samlHasAttributes }));
} catch (e) {
  console.error(`oidc_browser.mjs: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}

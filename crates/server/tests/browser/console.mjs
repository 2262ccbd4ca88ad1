// Drives the Redeploy web console in headless Chromium like an admin would: sign in with the
// token, search a device by name, open it, Autopilot Reset it through the confirmation page, and
// watch its timeline until the device reports "done". Saves screenshots of the main pages.
// Run by the Rust test crates/server/tests/it/browser.rs, which sets:
//   REDEPLOY_URL, REDEPLOY_TOKEN, REDEPLOY_DEVICE_NAME, REDEPLOY_SCREENSHOTS, REDEPLOY_CHROMIUM.
// Exit code 0 only if every step worked.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const url = env("REDEPLOY_URL");
const token = env("REDEPLOY_TOKEN");
const deviceName = env("REDEPLOY_DEVICE_NAME");
const shots = env("REDEPLOY_SCREENSHOTS");
const executablePath = process.env.REDEPLOY_CHROMIUM || "/usr/bin/chromium";
// How long the reset may take to reach "done" (the PCs check in every half second).
const RESET_DEADLINE_MS = 240_000;

const userDataDir = await mkdtemp(join(tmpdir(), "redeploy-chromium-"));
const problems = [];
let context;
let page;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    // The server's certificate is signed by its own CA (ca.pem), which this profile does not know.
    ignoreHTTPSErrors: true,
    viewport: { width: 1366, height: 768 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30_000);
  // A script error or a blocked resource (CSP) is a failure even if the page still works.
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));

  // Accessibility floor of every page we look at: one <main> with an <h1>, and every form field
  // named (a <label>, aria-label or aria-labelledby) so a screen reader can say what it is for.
  const checkAccessible = async (name) => {
    const found = await page.evaluate(() => ({
      main: document.querySelectorAll("main").length,
      h1: document.querySelectorAll("main h1").length,
      unlabeled: [...document.querySelectorAll("input, select, textarea")]
        .filter((el) => !["hidden", "submit", "button"].includes(el.type))
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
          && !el.getAttribute("aria-labelledby"))
        .map((el) => el.outerHTML.slice(0, 120)),
    }));
    if (found.main !== 1 || found.h1 < 1) problems.push(`${name}: ${found.main} <main>, ${found.h1} <h1>`);
    for (const el of found.unlabeled) problems.push(`${name}: a form field without a label: ${el}`);
  };
  const shot = async (name) => {
    await checkAccessible(name);
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
    console.log(`screenshot ${name}`);
  };
  const step = (text) => console.log(`step: ${text}`);

  step("sign in");
  await page.goto(`${url}/console`);
  await page.waitForURL("**/console/sign-in");
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/console$/);
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  await shot("dashboard");

  step("find the device by name");
  await page.getByRole("link", { name: "Devices", exact: true }).click();
  await page.locator("#devices").waitFor();
  await shot("devices");
  await page.getByLabel("Search name, serial or user").fill(deviceName);
  await page.getByRole("button", { name: "Apply" }).click();
  await page.waitForURL(/q=/);
  const rows = page.locator("#devices tbody tr");
  if ((await rows.count()) !== 1) throw new Error(`search for ${deviceName} found ${await rows.count()} rows`);

  step("open it");
  await page.getByRole("link", { name: deviceName, exact: true }).click();
  await page.getByRole("heading", { name: deviceName, exact: true }).waitFor();
  await page.getByText("Ready for a remote Autopilot Reset.").waitFor();
  await shot("device");

  step("Autopilot Reset, confirmed");
  // Keyboard, as an admin without a mouse would: focus the link and press Enter.
  await page.getByRole("link", { name: "Autopilot Reset…" }).focus();
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: `Autopilot Reset ${deviceName}?` }).waitFor();
  await shot("confirmation");
  await page.getByRole("button", { name: `Yes, reset ${deviceName}` }).click();
  await page.waitForURL(/\/console\/actions\//);

  step("watch the timeline until done");
  // The page reloads itself (console.js) while the action is in flight; wait for a final state.
  const finalBadge = page.locator("#action-state .badge.good, #action-state .badge.bad, #action-state .badge.muted");
  await finalBadge.waitFor({ timeout: RESET_DEADLINE_MS });
  const state = (await finalBadge.innerText()).trim();
  if (state !== "done") throw new Error(`the reset ended as ${state}, not done`);
  const timeline = await page.locator("table.timeline").innerText();
  for (const s of ["pending", "sent", "done"]) {
    if (!timeline.includes(s)) throw new Error(`timeline lacks ${s}: ${timeline}`);
  }
  await shot("timeline-done");

  step("groups: create one with the device, see the dry run");
  await page.getByRole("link", { name: "Groups", exact: true }).click();
  await page.getByLabel("Name", { exact: true }).fill("Lab room 1");
  await page.getByLabel("Device names, one per line").fill(deviceName);
  await page.getByRole("button", { name: "Create group" }).click();
  await page.getByRole("heading", { name: "Group Lab room 1" }).waitFor();
  await page.locator("#preview").waitFor();
  await shot("groups");

  step("schedules: a nightly sync of the group");
  await page.getByRole("link", { name: "Schedules", exact: true }).click();
  await page.getByLabel("Name", { exact: true }).fill("Nightly sync");
  await page.getByLabel("Group").selectOption({ label: "Lab room 1" });
  await page.getByLabel("Action").selectOption("sync");
  await page.getByLabel("Time zone (IANA name)").fill("Europe/Berlin");
  await page.getByLabel("Repeats").selectOption("weekly");
  await page.getByLabel("Monday").check();
  await page.getByLabel("Friday").check();
  await page.getByLabel("Time", { exact: true }).fill("02:00");
  await page.getByLabel("Maintenance window (optional)").fill("22:00-05:00");
  await page.getByRole("button", { name: "Create schedule" }).click();
  await page.getByRole("cell", { name: "Nightly sync", exact: true }).waitFor();
  await page.getByRole("cell", { name: "every Monday and Friday at 02:00 Europe/Berlin" }).waitFor();
  await shot("schedules");

  step("Autopilot CSV upload from the browser");
  await page.getByRole("link", { name: "Autopilot devices", exact: true }).click();
  await page.getByLabel("Hardware-hash CSV (Intune import format)").setInputFiles({
    name: "autopilot.csv",
    mimeType: "text/csv",
    buffer: Buffer.from(
      "Device Serial Number,Windows Product ID,Hardware Hash,Group Tag,Assigned User\r\n" +
        "LAB-0001,,QUJDREVG,lab-room-1,ada@example.org\r\n" +
        "LAB-0002,,this is not base64!,lab-room-1,\r\n",
    ),
  });
  await page.getByRole("button", { name: "Import CSV", exact: true }).click();
  await page.locator("#import-result").waitFor();
  const result = await page.locator("#import-result").innerText();
  if (!result.includes("Imported 1 device") || !result.includes("Line 3")) {
    throw new Error(`unexpected import result: ${result}`);
  }
  await shot("autopilot");

  step("audit log");
  await page.getByRole("link", { name: "Audit log", exact: true }).click();
  await page.getByRole("cell", { name: "action.create" }).first().waitFor();
  await shot("audit");

  if (problems.length) throw new Error(`the browser reported problems:\n${problems.join("\n")}`);
  console.log("ok");
} catch (e) {
  console.error(`console.mjs: ${e.stack || e}`);
  if (page) {
    console.error(`at ${page.url()}; screenshot failure.png`);
    await page.screenshot({ path: join(shots, "failure.png"), fullPage: true }).catch(() => {});
  }
  if (problems.length) console.error(problems.join("\n"));
  process.exitCode = 1;
} finally {
  if (context) await context.close();
  await rm(userDataDir, { recursive: true, force: true });
}

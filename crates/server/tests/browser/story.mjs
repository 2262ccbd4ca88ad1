// The console part of the new-user story (crates/redeploy/tests/it/story.rs): against a
// `redeploy serve` child process with `redeploy emulate` PCs checking in, sign in with the admin
// token, open one device from the device list, Autopilot Reset it through the confirmation page
// and wait for "done" on its timeline. Screenshots land in REDEPLOY_SCREENSHOTS.
// Environment: REDEPLOY_URL (the printed console URL), REDEPLOY_TOKEN, REDEPLOY_DEVICE_NAME,
// REDEPLOY_SCREENSHOTS, REDEPLOY_CHROMIUM. Exit code 0 only if every step worked; the last line
// printed is then "reset action ACTION-ID done".
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const consoleUrl = env("REDEPLOY_URL");
const token = env("REDEPLOY_TOKEN");
const deviceName = env("REDEPLOY_DEVICE_NAME");
const shots = env("REDEPLOY_SCREENSHOTS");
const executablePath = process.env.REDEPLOY_CHROMIUM || "/usr/bin/chromium";
// How long the reset may take to reach "done" (the emulated PCs check in about every second).
const RESET_DEADLINE_MS = 240_000;

const userDataDir = await mkdtemp(join(tmpdir(), "redeploy-story-chromium-"));
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
    // A new user's browser does not know the server's own CA (ca.pem) either; they click through.
    ignoreHTTPSErrors: true,
    viewport: { width: 1366, height: 768 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30_000);
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));

  const shot = async (name) => {
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
    console.log(`screenshot ${name}`);
  };
  const step = (text) => console.log(`step: ${text}`);

  step("open the printed console URL and sign in");
  await page.goto(consoleUrl);
  await page.waitForURL("**/console/sign-in**");
  await shot("sign-in");
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  await shot("dashboard");

  step("open the device list, then one device");
  await page.getByRole("link", { name: "Devices", exact: true }).click();
  await page.locator("#devices").waitFor();
  await shot("devices");
  await page.getByRole("link", { name: deviceName, exact: true }).click();
  await page.getByRole("heading", { name: deviceName, exact: true }).waitFor();
  await page.getByText("Ready for a remote Autopilot Reset.").waitFor();
  await shot("device");

  step("Autopilot Reset, confirmed");
  await page.getByRole("link", { name: "Autopilot Reset…" }).click();
  await page.getByRole("heading", { name: `Autopilot Reset ${deviceName}?` }).waitFor();
  await shot("confirmation");
  await page.getByRole("button", { name: `Yes, reset ${deviceName}` }).click();
  await page.waitForURL(/\/console\/actions\//);
  const actionId = new URL(page.url()).pathname.split("/").pop();

  step("watch the timeline until done");
  const finalBadge = page.locator(
    "#action-state .badge.good, #action-state .badge.bad, #action-state .badge.muted",
  );
  await finalBadge.waitFor({ timeout: RESET_DEADLINE_MS });
  const state = (await finalBadge.innerText()).trim();
  await shot("timeline");
  if (state !== "done") throw new Error(`the reset ended as ${state}, not done`);
  const timeline = await page.locator("table.timeline").innerText();
  if (!timeline.includes("done")) throw new Error(`timeline lacks done: ${timeline}`);

  if (problems.length) throw new Error(`the browser reported problems:\n${problems.join("\n")}`);
  console.log(`reset action ${actionId} done`);
} catch (e) {
  console.error(`story.mjs: ${e.stack || e}`);
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

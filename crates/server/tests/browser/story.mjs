// The console part of the new-user story (crates/redeploy/tests/it/story.rs): against a
// `redeploy serve` child process with `redeploy emulate` PCs checking in, sign in with the admin
// token, open one device from the device list, Autopilot Reset it through the confirmation page
// and wait for "done" on its timeline. Screenshots land in REDEPLOY_SCREENSHOTS.
// Environment: REDEPLOY_URL (the printed console URL), REDEPLOY_TOKEN, REDEPLOY_DEVICE_NAME,
// REDEPLOY_SCREENSHOTS, REDEPLOY_CHROMIUM. Exit code 0 only if every step worked; the last line
// printed is then "reset action ACTION-ID done".
import { env, finalActionState, runInChromium } from "./chromium.mjs";

const consoleUrl = env("REDEPLOY_URL");
const token = env("REDEPLOY_TOKEN");
const deviceName = env("REDEPLOY_DEVICE_NAME");
const shots = env("REDEPLOY_SCREENSHOTS");
// How long the reset may take to reach "done" (the emulated PCs check in about every second).
const RESET_DEADLINE_MS = 240_000;

await runInChromium("story.mjs", shots, async ({ page, shot, step }) => {
  step("open the printed console URL and sign in");
  await page.goto(consoleUrl);
  await page.waitForURL("**/console/sign-in**");
  await shot("sign-in");
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
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
  const state = await finalActionState(page, RESET_DEADLINE_MS);
  await shot("timeline");
  if (state !== "done") throw new Error(`the reset ended as ${state}, not done`);
  const timeline = await page.locator("table.timeline").innerText();
  if (!timeline.includes("done")) throw new Error(`timeline lacks done: ${timeline}`);

  console.log(`reset action ${actionId} done`);
});

// Drives the Redeploy web console in headless Chromium like an admin would: sign in with the
// token, search a device by name, open it, Autopilot Reset it through the confirmation page, and
// watch its timeline until the device reports "done". Saves screenshots of the main pages.
// Run by the Rust test crates/server/tests/it/browser.rs, which sets:
//   REDEPLOY_URL, REDEPLOY_TOKEN, REDEPLOY_DEVICE_NAME, REDEPLOY_SCREENSHOTS, REDEPLOY_CHROMIUM.
// Exit code 0 only if every step worked.
import { env, finalActionState, runInChromium } from "./chromium.mjs";

const url = env("REDEPLOY_URL");
const token = env("REDEPLOY_TOKEN");
const deviceName = env("REDEPLOY_DEVICE_NAME");
const shots = env("REDEPLOY_SCREENSHOTS");
// How long the reset may take to reach "done" (the PCs check in every half second).
const RESET_DEADLINE_MS = 240_000;

await runInChromium("console.mjs", shots, async ({ page, shot, step }) => {

  step("sign in");
  await page.goto(`${url}/console`);
  await page.waitForURL("**/console/sign-in");
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
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
  const state = await finalActionState(page, RESET_DEADLINE_MS);
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

  console.log("ok");
});

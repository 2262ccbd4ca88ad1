// Drives the console in headless Chromium as an admin steering a wave reset (issue #15): start a
// group-wide Autopilot Reset in waves with the group's name typed, follow the batch's page, pause
// its waiting waves, see them counted on the dashboard and the group page no longer offering its
// PCs, cancel it; then every page at a phone's width (390 px) must fit the screen.
// Run by crates/server/tests/it/browser.rs, which sets:
//   REDEPLOY_URL, REDEPLOY_TOKEN, REDEPLOY_GROUP, REDEPLOY_SCREENSHOTS, REDEPLOY_CHROMIUM.
import { env, runInChromium, signInWithToken } from "./chromium.mjs";

const url = env("REDEPLOY_URL");
const token = env("REDEPLOY_TOKEN");
const group = env("REDEPLOY_GROUP");
const shots = env("REDEPLOY_SCREENSHOTS");

await runInChromium("batches.mjs", shots, async ({ page, shot, step }) => {
  step("sign in");
  await signInWithToken(page, url, token);

  step("start a group reset in waves of 2, typed confirmation");
  await page.getByRole("link", { name: "Groups", exact: true }).click();
  await page.getByRole("link", { name: group, exact: true }).click();
  await page.getByLabel("Devices per wave (optional)").fill("2");
  await page.getByLabel("Minutes between waves (optional)").fill("60");
  // (A wrong name is refused by the server: crates/server/tests/it/console.rs.)
  await page.getByLabel(/Type the group name/).fill(group);
  await page.getByRole("button", { name: "Autopilot Reset this group" }).click();
  await page.waitForURL(/\/console\/batches\//);
  await page.getByText("in later waves").waitFor();
  await shot("batch-running");

  step("pause its waiting waves");
  await page.getByRole("button", { name: "Pause waiting waves" }).click();
  await page.getByText(/Paused: \d+ waves held/).waitFor();
  const state = (await page.locator("#batch-state").innerText()).trim();
  if (state !== "paused") throw new Error(`batch state ${state}, not paused`);
  await shot("batch-paused");
  const batchUrl = page.url().split("?")[0];

  step("the dashboard counts the waiting waves");
  await page.getByRole("link", { name: "Dashboard", exact: true }).click();
  const waiting = await page.locator("#waiting-waves").innerText();
  if (!/paused/.test(waiting)) throw new Error(`dashboard: ${waiting}`);

  step("the group page no longer offers the waiting PCs");
  await page.getByRole("link", { name: "Groups", exact: true }).click();
  await page.getByRole("link", { name: group, exact: true }).click();
  await page.getByText("already waits in wave").first().waitFor();

  step("the batch list shows it; cancel it");
  await page.getByRole("link", { name: "Batches", exact: true }).click();
  await page.locator("#batches").getByText("paused").waitFor();
  await shot("batches");
  await page.goto(batchUrl);
  await page.getByRole("button", { name: "Cancel the batch" }).click();
  await page.getByText(/Canceled: \d+ waves dropped, \d+ actions canceled/).waitFor();

  step("every page fits a phone");
  await page.setViewportSize({ width: 390, height: 844 });
  const pages = ["/console", "/console/devices", "/console/actions", "/console/batches",
    batchUrl.replace(url, ""), "/console/groups", "/console/schedules", "/console/audit",
    "/console/autopilot"];
  const firstDevice = await page.goto(`${url}/console/devices`).then(() =>
    page.locator("#devices tbody a").first().getAttribute("href"));
  pages.push(firstDevice);
  for (const path of pages) {
    await page.goto(`${url}${path}`);
    const { scroll, inner } = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
    if (scroll > inner) throw new Error(`${path} is ${scroll} px wide on a ${inner} px screen`);
  }
  await page.goto(batchUrl);
  await shot("phone-batch");
  await page.goto(`${url}${firstDevice}`);
  await shot("phone-device");
});

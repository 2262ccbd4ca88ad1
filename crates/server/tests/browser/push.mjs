// Drives the console in headless Chromium to see how an action reached a PC (issue #16, push):
// the device page's "Push (WNS)" line and an action's "Reached the PC by" line. Mode `push`: the
// channel is active, a Sync asked from the device page reaches the PC by a push. Mode `poll` (the
// stand-in WNS now answers 410 Gone): a Sync's push fails, the device page says the channel
// expired and actions wait for the poll; the test then lets the PC's poll come due, and the
// action page says the poll brought it.
// Run by crates/server/tests/it/browser.rs, which sets:
//   REDEPLOY_URL, REDEPLOY_TOKEN, REDEPLOY_DEVICE_NAME, REDEPLOY_PUSH_MODE, REDEPLOY_SCREENSHOTS,
//   REDEPLOY_CHROMIUM.
// It prints "step: the channel expired" once it has seen that, and only then may the test move
// the PC's clock (a poll would read the channel again and make it active).
import { env, runInChromium, signInWithToken } from "./chromium.mjs";

const url = env("REDEPLOY_URL");
const token = env("REDEPLOY_TOKEN");
const deviceName = env("REDEPLOY_DEVICE_NAME");
const mode = env("REDEPLOY_PUSH_MODE");
const shots = env("REDEPLOY_SCREENSHOTS");

await runInChromium(`push.mjs ${mode}`, shots, async ({ page, shot, step }) => {
  // Loads `where` until the text of `selector` matches `pattern` (outcomes recorded by the push
  // dispatcher or a PC's session, which run beside the page); its text.
  const lineOf = async (where, selector, pattern) => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      await page.goto(where);
      const found = page.locator(selector);
      const text = (await found.count()) ? (await found.innerText()).trim() : "(no such line)";
      if (pattern.test(text)) return text;
      if (Date.now() > deadline) {
        throw new Error(`${selector} on ${where} says "${text}", not ${pattern}`);
      }
      await page.waitForTimeout(200);
    }
  };

  step("sign in");
  await signInWithToken(page, url, token);

  step("open the PC's page");
  await page.getByRole("link", { name: "Devices", exact: true }).click();
  await page.locator("#devices").getByRole("link", { name: deviceName, exact: true }).click();
  await page.waitForURL(/\/console\/devices\/[^/]+$/);
  const deviceUrl = page.url();

  if (mode === "push") {
    step("the device page: push wakes this PC");
    await lineOf(deviceUrl, "#push-channel", /^active: actions wake it at once \(Push\/Status 0,/);
    await shot("device-push-active");

    step("Sync now: the action page says a push brought it");
    await page.getByRole("button", { name: "Sync now" }).click();
    await page.waitForURL(/\/console\/actions\//);
    await lineOf(page.url(), "#woken-by", /^a push notification \(WNS\)$/);
    await shot("action-by-push");
  } else {
    step("Sync now, whose push WNS refuses (410 Gone)");
    await page.getByRole("button", { name: "Sync now" }).click();
    await page.waitForURL(/\/console\/actions\//);
    const actionUrl = page.url();

    await lineOf(deviceUrl, "#push-channel", /^expired: actions wait for its poll/);
    await shot("device-push-expired");
    step("the channel expired");

    step("the PC's poll came: the action page says so");
    await lineOf(actionUrl, "#woken-by", /^the PC's own check-in \(poll\): no push reached it$/);
    await shot("action-by-poll");
  }
});

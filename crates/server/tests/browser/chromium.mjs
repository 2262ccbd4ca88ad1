// What the browser scripts (console.mjs, story.mjs) share: reading their environment, launching
// Debian's Chromium headless with a fresh profile, collecting browser errors, screenshots that
// first check the page's accessibility floor, and the failure report. Exit code 0 only if the
// script's steps worked and the browser reported no problem.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

/** The value of an environment variable the Rust test must set. */
export function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

/** Signs the console in with an API token at `url` and waits for the dashboard. */
export async function signInWithToken(page, url, token) {
  await page.goto(`${url}/console/sign-in`);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.waitForURL(/\/console$/);
}

/** The final state badge of an action page, once the action settled (the page reloads itself). */
export async function finalActionState(page, timeout) {
  const badge = page.locator(
    "#action-state .badge.good, #action-state .badge.bad, #action-state .badge.muted",
  );
  await badge.waitFor({ timeout });
  return (await badge.innerText()).trim();
}

/**
 * Runs `steps({ page, shot, step })` in a new headless Chromium (REDEPLOY_CHROMIUM or
 * /usr/bin/chromium) at a laptop's 1366×768, saving screenshots into `shots`. `name` labels the
 * failure output. A script error or a CSP-blocked resource fails the run even if the page works;
 * so does a page answered with an error status, unless the script expects it (`expectedStatuses`:
 * a refused sign-in is a 401 or 403 page, which Chromium reports as a console error).
 */
export async function runInChromium(name, shots, steps, { expectedStatuses = [] } = {}) {
  const userDataDir = await mkdtemp(join(tmpdir(), `redeploy-${name}-chromium-`));
  const problems = [];
  let context;
  let page;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: process.env.REDEPLOY_CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
      ],
      // The server's certificate is signed by its own CA (ca.pem), which a new profile does not
      // know; an admin clicks through once.
      ignoreHTTPSErrors: true,
      viewport: { width: 1366, height: 768 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(30_000);
    const expected = (text) => expectedStatuses.some(
      (status) => text === `Failed to load resource: the server responded with a status of ${status} ()`);
    page.on("console", (m) => {
      if (m.type() === "error" && !expected(m.text())) problems.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));

    // Accessibility floor of every page we look at: one <main> with an <h1>, and every form
    // field named (a <label>, aria-label or aria-labelledby) so a screen reader can say what it is.
    const checkAccessible = async (shotName) => {
      const found = await page.evaluate(() => ({
        main: document.querySelectorAll("main").length,
        h1: document.querySelectorAll("main h1").length,
        unlabeled: [...document.querySelectorAll("input, select, textarea")]
          .filter((el) => !["hidden", "submit", "button"].includes(el.type))
          .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
            && !el.getAttribute("aria-labelledby"))
          .map((el) => el.outerHTML.slice(0, 120)),
      }));
      if (found.main !== 1 || found.h1 < 1) {
        problems.push(`${shotName}: ${found.main} <main>, ${found.h1} <h1>`);
      }
      for (const el of found.unlabeled) problems.push(`${shotName}: a form field without a label: ${el}`);
    };
    const shot = async (shotName) => {
      await checkAccessible(shotName);
      await page.screenshot({ path: join(shots, `${shotName}.png`), fullPage: true });
      console.log(`screenshot ${shotName}`);
    };
    const step = (text) => console.log(`step: ${text}`);

    await steps({ page, shot, step });
    if (problems.length) throw new Error(`the browser reported problems:\n${problems.join("\n")}`);
  } catch (e) {
    console.error(`${name}: ${e.stack || e}`);
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
}

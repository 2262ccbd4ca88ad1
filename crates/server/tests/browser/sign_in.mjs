// Signs in to the console in headless Chromium the three ways a person would, as
// crates/server/tests/it/browser.rs asks (REDEPLOY_SIGN_IN_MODE):
//   "allowed": through the OpenID Connect provider (the test issuer signs its user in at once
//     and sends the browser back), landing on the dashboard with the role of the user's group;
//     then with a local account's name and password; then a wrong password is refused;
//   "no-role": the provider's user has no group mapped to a role: refused with a clear message.
// Also set: REDEPLOY_URL, REDEPLOY_SCREENSHOTS, REDEPLOY_CHROMIUM, REDEPLOY_OIDC_WHO (the
// expected "name · role"), REDEPLOY_ACCOUNT, REDEPLOY_PASSWORD, REDEPLOY_ACCOUNT_WHO.
import { env, runInChromium } from "./chromium.mjs";

const url = env("REDEPLOY_URL");
const shots = env("REDEPLOY_SCREENSHOTS");
const mode = env("REDEPLOY_SIGN_IN_MODE");

async function signedInAs(page) {
  await page.waitForURL(/\/console$/);
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  return (await page.locator(".who").innerText()).trim();
}

async function signOut(page) {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL("**/console/sign-in");
}

await runInChromium(`sign_in.mjs ${mode}`, shots, async ({ page, shot, step }) => {
  step("open the console: the sign-in page offers the provider");
  await page.goto(`${url}/console`);
  await page.waitForURL("**/console/sign-in");
  await shot(`sign-in-${mode}`);

  if (mode === "no-role") {
    step("through the provider, without a mapped group");
    await page.getByRole("link", { name: "Sign in with Test provider" }).click();
    const alert = page.getByRole("alert");
    await alert.waitFor();
    const text = await alert.innerText();
    if (!text.includes("none of your groups is given a role")) throw new Error(`refusal says: ${text}`);
    if (!page.url().includes("/console/sign-in/oidc/callback")) throw new Error(`at ${page.url()}`);
    await shot("sign-in-refused-no-role");
    step("the dashboard still needs a sign-in");
    await page.goto(`${url}/console`);
    await page.waitForURL("**/console/sign-in");
    return;
  }

  step("through the provider");
  await page.getByRole("link", { name: "Sign in with Test provider" }).click();
  const oidcWho = await signedInAs(page);
  if (oidcWho !== env("REDEPLOY_OIDC_WHO")) throw new Error(`signed in as ${oidcWho}`);
  await shot("dashboard-openid");
  await signOut(page);

  step("with a local account");
  await page.getByLabel("Name").fill(env("REDEPLOY_ACCOUNT"));
  await page.getByLabel("Password").fill(env("REDEPLOY_PASSWORD"));
  await page.getByRole("button", { name: "Sign in with password" }).click();
  const accountWho = await signedInAs(page);
  if (accountWho !== env("REDEPLOY_ACCOUNT_WHO")) throw new Error(`signed in as ${accountWho}`);
  await signOut(page);

  step("a wrong password is refused");
  await page.getByLabel("Name").fill(env("REDEPLOY_ACCOUNT"));
  await page.getByLabel("Password").fill("not the password at all");
  await page.getByRole("button", { name: "Sign in with password" }).click();
  const alert = page.getByRole("alert");
  await alert.waitFor();
  const text = (await alert.innerText()).trim();
  if (text !== "The name or the password is wrong.") throw new Error(`refusal says: ${text}`);
  await shot("sign-in-wrong-password");
}, { expectedStatuses: mode === "no-role" ? [403] : [401] });

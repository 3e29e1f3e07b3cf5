// What the page checks here share around their own steps: Debian's
// Chromium (headless), a page whose console errors go to
// seen.consoleErrors, and one JSON line printed at the end, `seen` with
// `failure` (what stopped the steps, or null). Returns the failure.
import { chromium } from "playwright-core";

export async function inChromium(seen, pageOptions, steps) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox"],
  });
  let failure = null;
  try {
    const page = await browser.newPage(pageOptions);
    page.on("console", (message) => {
      if (message.type() === "error") seen.consoleErrors.push(message.text());
    });
    page.on("pageerror", (error) => seen.consoleErrors.push(String(error)));
    await steps(page);
  } catch (error) {
    failure = String(error);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify({ ...seen, failure }));
  return failure;
}

// Loads a page in Debian's Chromium (headless) through the gateway over
// HTTPS, trusting only what the NSS database in $HOME trusts (the test
// CA), and prints one JSON line: the status, the protocol the page came
// over, its title, and every console error. Exits 1 if it cannot load.
//
// node storefront.mjs URL
import { chromium } from "playwright-core";

const [url] = process.argv.slice(2);
const seen = { status: null, protocol: null, title: null, consoleErrors: [] };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox"],
});
let failure = null;
try {
  const page = await browser.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") seen.consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => seen.consoleErrors.push(String(error)));
  const response = await page.goto(url, { waitUntil: "load", timeout: 30_000 });
  seen.status = response.status();
  seen.protocol = await page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
  seen.title = await page.title();
} catch (error) {
  failure = String(error);
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ...seen, failure }));
process.exit(failure ? 1 : 0);

// Loads a page in Debian's Chromium (headless) through the gateway over
// HTTPS, trusting only what the NSS database in $HOME trusts (the test
// CA), and prints one JSON line: the status, the protocol the page came
// over, its title, and every console error. Exits 1 if it cannot load.
//
// node storefront.mjs URL
import { inChromium } from "./chromium.mjs";

const [url] = process.argv.slice(2);
const seen = { status: null, protocol: null, title: null, consoleErrors: [] };
const failure = await inChromium(seen, {}, async (page) => {
  const response = await page.goto(url, { waitUntil: "load", timeout: 30_000 });
  seen.status = response.status();
  seen.protocol = await page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
  seen.title = await page.title();
});
process.exit(failure ? 1 : 0);

// A customer in Debian's Chromium (headless) who posts the storefront's
// "Buy now" form while the waiting room holds a line, and presses nothing
// after. Prints one JSON line: the address the browser ended on, that
// page's text, how many of the room's pages it was shown on the way, and
// every console error. Exits 1 if it did not reach an order within 40 s.
//
// node line_order.mjs BUY_URL FORM FORWARDED_FOR
// (FORM urlencoded; FORWARDED_FOR sent on every request, as the customer's
// address behind a trusted proxy)
import { inChromium } from "./chromium.mjs";

const [buyUrl, form, forwardedFor] = process.argv.slice(2);
const seen = { url: null, text: null, roomPages: 0, consoleErrors: [] };
const headers = { extraHTTPHeaders: { "x-forwarded-for": forwardedFor } };
const failure = await inChromium(seen, headers, async (page) => {
  // The form posted and answered with a page (200), not let through to
  // the shop (whose answer to an order is a 303 to it): the room's.
  page.on("response", (response) => {
    const request = response.request();
    if (request.isNavigationRequest() && request.method() === "POST" && response.status() === 200) {
      seen.roomPages += 1;
    }
  });
  // The form as the storefront's product page has it.
  const inputs = [...new URLSearchParams(form)]
    .map(([name, value]) => `<input type="hidden" name="${name}" value="${value}">`)
    .join("");
  await page.setContent(
    `<form method="post" action="${buyUrl}">${inputs}<button type="submit">Buy now</button></form>`,
  );
  await page.click("button[type=submit]");
  await page.waitForURL(/\/orders\//, { timeout: 40_000 });
  seen.url = page.url();
  seen.text = await page.innerText("body");
});
process.exit(failure ? 1 : 0);

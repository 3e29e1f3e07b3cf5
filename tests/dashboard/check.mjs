// Opens the monitor's dashboard in Debian's Chromium (headless), waits for
// every chart to receive data, kills a shop through the stack's control
// API, waits for the dashboard to show that backend down, and saves a
// screenshot. Prints one JSON line with what it saw; exits 1 on failure.
//
// Then adds a note to the incident through the page's form (answering the
// token prompt) and checks the monitor took it, and acknowledges the
// incident with the page's button (answering the name prompt).
//
// node check.mjs DASHBOARD_URL CONTROL_URL PART SCREENSHOT TOKEN
import { chromium } from "playwright-core";

const [dashboard, control, part, screenshot, token] = process.argv.slice(2);
const seen = { consoleErrors: [], charts: {}, before: null, after: null, snapshots: 0, note: null, ack: null, update: null, room: null };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox"],
});
let failure = null;
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  page.on("console", (message) => {
    if (message.type() === "error") seen.consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => seen.consoleErrors.push(String(error)));
  await page.goto(dashboard);
  // Every chart has points.
  await page.waitForFunction(
    () => [...document.querySelectorAll("svg.chart")].every((svg) => Number(svg.dataset.points) > 0),
    null,
    { timeout: 45_000 },
  );
  const row = `tr[data-backend="${part}"]`;
  await page.waitForSelector(`${row}[data-state="up"]`, { timeout: 20_000 });
  seen.before = await page.getAttribute(row, "data-state");
  const killed = await fetch(`${control}/parts/${part}/kill`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}` },
  });
  if (!killed.ok) throw new Error(`kill answered ${killed.status}`);
  await page.waitForSelector(`${row}:is([data-state="down"],[data-state="ejected"])`, { timeout: 20_000 });
  seen.after = await page.getAttribute(row, "data-state");
  seen.charts = await page.evaluate(() =>
    Object.fromEntries([...document.querySelectorAll("svg.chart")].map((svg) => [svg.id, Number(svg.dataset.points)])),
  );
  seen.snapshots = Number(await page.getAttribute("body", "data-snapshots"));
  seen.room = await page.getAttribute("#room", "data-state");
  // The kill opened an incident (BackendDown): note it from the page.
  await page.waitForSelector("#note-form:not([hidden])", { timeout: 20_000 });
  // The page asks for the admin token, and for a name to acknowledge in.
  page.on("dialog", (dialog) => dialog.accept(/token/i.test(dialog.message()) ? token : "dashboard-tester"));
  await page.fill("#note-text", "noted from the dashboard");
  await page.click("#note-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("note-status").textContent !== "", null, { timeout: 10_000 });
  seen.note = await page.textContent("#note-status");
  // Acknowledge it from the page (its name prompt answered too).
  await page.evaluate(() => { document.getElementById("note-status").textContent = ""; });
  await page.click("#ack-button");
  await page.waitForFunction(() => document.getElementById("note-status").textContent !== "", null, { timeout: 10_000 });
  seen.ack = await page.textContent("#note-status");
  // A public update for the status page, from the page.
  await page.selectOption("#update-status", "identified");
  await page.fill("#update-title", "Checkout is slow");
  await page.fill("#update-body", "published from the dashboard");
  await page.click("#update-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("update-status-text").textContent !== "", null, { timeout: 10_000 });
  seen.update = await page.textContent("#update-status-text");
  await page.screenshot({ path: screenshot, fullPage: true });
} catch (error) {
  failure = String(error);
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ...seen, failure }));
process.exit(failure || seen.consoleErrors.length || seen.note !== "added" ? 1 : 0);

// Shared by the browser tests: one headless Chromium (Debian's, driven by playwright-core) and one
// static server for the built page (build/wasm/web). Each test file calls setup() once.
import { before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "./server.mjs";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const web = join(root, "build", "wasm", "web");
// WebGL2 in headless Chromium needs ANGLE's SwiftShader; the network flags keep it off the network.
export const flags = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
               "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--window-size=1280,800"];
let server, browser, base;

export function setup() {
  before(async () => {
    assert.ok(existsSync(join(web, "eva.wasm")), `${web}/eva.wasm missing: run scripts/web.sh first`);
    server = await serve(web);
    base = `http://127.0.0.1:${server.address().port}/`;
    browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: flags });
  });
  after(async () => {
    await browser?.close();
    server?.close();
  });
}

// Opens the page at `query` (in a viewport of CSS pixels at a devicePixelRatio), waits for the first drawn
// frame, returns the page and its console errors.
export async function open(query = "", viewport = { width: 1280, height: 800 }, deviceScaleFactor = 1) {
  const page = await browser.newPage({ viewport, deviceScaleFactor });
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("response", (r) => { if (r.status() >= 400) errors.push(`HTTP ${r.status()} ${r.url()}`); });
  await page.goto(base + query);
  await page.waitForFunction(() => window.eva && window.eva.ready === true, null, { timeout: 60000 });
  return { page, errors };
}

// Waits until the page has drawn two more frames (so an input event sent before the call has been seen
// by at least one whole frame).
export async function nextFrames(page) {
  const f = await page.evaluate(() => window.eva.frames);
  await page.waitForFunction((n) => window.eva.frames > n + 1, f, { timeout: 30000 });
}

// Clicks the middle of a control's rectangle [x0, y0, x1, y1], as every panel exports them (web/panel.hpp
// Rect). Dear ImGui 1.86 reads the mouse once per frame; its GLFW backend remembers a press released within
// the same frame, so page.mouse.click also works there, but only because of that backend detail. Moving,
// pressing and releasing in separate frames is what ImGui's model needs in general: the control is hovered
// in a frame before the press, and the press is seen in a frame before the release.
export async function click(page, rect) {
  await page.mouse.move((rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2);
  await nextFrames(page);
  await page.mouse.down();
  await nextFrames(page);
  await page.mouse.up();
  await nextFrames(page);
}

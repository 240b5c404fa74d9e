// Browser tests: Debian's Chromium, headless, driven by playwright-core, against the built page
// (build/wasm/web). Run by scripts/test.sh after the wasm build: node --test tests/browser/
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "./server.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const web = join(root, "build", "wasm", "web");
// WebGL2 in headless Chromium needs ANGLE's SwiftShader; the network flags keep it off the network.
const flags = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
               "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--window-size=1280,800"];
let server, browser, base;

before(async () => {
  assert.ok(existsSync(join(web, "eva.wasm")), `${web}/eva.wasm missing: build the wasm preset first`);
  server = await serve(web);
  base = `http://127.0.0.1:${server.address().port}/`;
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: flags });
});

after(async () => {
  await browser?.close();
  server?.close();
});

// Opens the page, waits for the first drawn frame, returns the page and its console errors.
async function open(query = "") {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("response", (r) => { if (r.status() >= 400) errors.push(`HTTP ${r.status()} ${r.url()}`); });
  await page.goto(base + query);
  await page.waitForFunction(() => window.eva && window.eva.ready === true, null, { timeout: 60000 });
  return { page, errors };
}

test("the page loads, draws ImGui frames and logs no errors", async () => {
  const { page, errors } = await open();
  await page.waitForFunction(() => window.eva.frames >= 10, null, { timeout: 30000 });
  const eva = await page.evaluate(() => ({ frames: window.eva.frames, vertices: window.eva.vertices,
                                           frameMs: window.eva.frameMs }));
  assert.ok(eva.vertices > 100, `ImGui produced ${eva.vertices} vertices`);
  assert.ok(eva.frameMs > 0 && Number.isFinite(eva.frameMs));
  const shot = join(root, "build", "wasm", "page.png");
  await page.screenshot({ path: shot });
  assert.deepEqual(errors, []);
  await page.close();
});

test("selfTest() returns figures computed by the wasm core", async () => {
  const { page } = await open();
  const r = await page.evaluate(() => window.eva.selfTest());
  assert.equal(r.gemm_simd, "sse4.1");  // SSE4.1 intrinsics compiled to WebAssembly SIMD128
  assert.ok(r.gemm_max_rel_error < 1e-5, `GEMM error ${r.gemm_max_rel_error}`);
  // The same first Philox draws as the native test (tests/test_rng.cpp).
  assert.deepEqual(r.rng_seed42_first, [0x9ceaf053, 0x77f5493b, 0x12bf50ad, 0x5742b3d7]);
  await page.close();
});

test("embed mode hides the page header", async () => {
  const { page } = await open("?embed=1");
  assert.equal(await page.locator("header").isVisible(), false);
  await page.close();
});

// Browser tests: Debian's Chromium, headless, driven by playwright-core, against the built page
// (build/wasm/web). Run by scripts/test.sh after the wasm build: node --test tests/browser/
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { setup, open, root } from "./lib.mjs";

setup();

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

test("an embed whose frame is as large as the screen draws at that size without asking for fullscreen", async () => {
  // Headless Chromium's screen is the viewport, so this is the iframe-as-large-as-the-screen case, in which
  // Emscripten's glfwSetWindowSize would call requestFullscreen (refused without a user gesture).
  const { page, errors } = await open("?panel=gemm&embed=1", { width: 900, height: 560 });
  const warnings = [];
  page.on("console", (m) => warnings.push(m.text()));
  await page.waitForFunction(() => window.eva.frames >= 30, null, { timeout: 30000 });
  const size = await page.evaluate(() => [document.getElementById("canvas").width, document.getElementById("canvas").height]);
  assert.deepEqual(size, [900, 560]);
  assert.deepEqual(warnings.filter((w) => /fullscreen/i.test(w)), []);
  assert.deepEqual(errors, []);
  await page.close();
});

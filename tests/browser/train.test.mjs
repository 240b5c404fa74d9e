// Browser tests of the Train panel (web/panel_train.cpp): it renders alone in embed mode, its start
// button sets both trainers (each in its Web Worker) stepping with a falling loss while frames stay
// short, pause stops them, and the wasm core's short training run matches the native `eva train`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inflateSync } from "node:zlib";
import { setup, open, root, click } from "./lib.mjs";

setup();

const trainState = (page) => page.evaluate(() => window.eva.state("train"));

// Distinct colours in a PNG screenshot (8-bit RGB or RGBA, not interlaced, as Chromium writes them):
// a blank or single-colour frame has a handful, a drawn panel with text and charts has hundreds.
function distinctColours(png) {
  const width = png.readUInt32BE(16), height = png.readUInt32BE(20), channels = png[25] === 6 ? 4 : 3;
  const idat = [];
  for (let at = 8; at < png.length;) {
    const len = png.readUInt32BE(at), type = png.toString("ascii", at + 4, at + 8);
    if (type === "IDAT") idat.push(png.subarray(at + 8, at + 8 + len));
    at += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat)), stride = width * channels;
  const prev = new Uint8Array(stride), row = new Uint8Array(stride), seen = new Set();
  for (let y = 0; y < height; ++y) {
    const filter = raw[y * (stride + 1)], src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let i = 0; i < stride; ++i) {  // undo the PNG row filters (none, sub, up, average, Paeth)
      const a = i >= channels ? row[i - channels] : 0, b = prev[i], c = i >= channels ? prev[i - channels] : 0;
      const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      const pred = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][filter];
      row[i] = (src[i] + pred) & 255;
    }
    for (let x = 0; x < width; x += 2) seen.add((row[x * channels] << 16) | (row[x * channels + 1] << 8) | row[x * channels + 2]);
    prev.set(row);
  }
  return seen.size;
}

test("?panel=train&embed=1 renders the panel alone, without console errors", async () => {
  const { page, errors } = await open("?panel=train&embed=1");
  await page.waitForFunction(() => window.eva.frames >= 10, null, { timeout: 30000 });
  const s = await trainState(page);
  assert.equal(s.drawn, true);
  assert.equal(s.running, false);
  assert.equal(s.gamma.toFixed(4), "0.0200");  // eva::kTrainPanelGamma (tests/test_train_panel.cpp checks its run)
  const shot = await page.screenshot({ path: join(root, "build", "wasm", "train.png") });
  const colours = distinctColours(shot);
  // Measured: ~25 colours before training starts (text, widgets), hundreds with the charts; blank: 1.
  assert.ok(colours >= 10, `screenshot has only ${colours} colours`);
  assert.deepEqual(errors, []);
  await page.close();
});

test("start trains both precisions with a falling loss, frames stay short, pause stops", async () => {
  const { page, errors } = await open("?panel=train&embed=1");
  await page.waitForFunction(() => window.eva.frames >= 5, null, { timeout: 30000 });
  const { button } = await trainState(page);
  await click(page, button);
  await page.waitForFunction(() => window.eva.state("train").running, null,
                             { timeout: 30000 });
  // 8 steps of 4 × 64 bytes (seconds each in wasm): from ln 256 = 5.55 nats/byte the loss of the
  // untrained byte model falls by about 1 nat within them (measured in the browser: 5.55 → 4.46 at step 7).
  await page.waitForFunction(() => {
    const s = window.eva.state("train");
    return s.runs.every((r) => r.steps >= 8);
  }, null, { timeout: 300000, polling: 500 });
  let s = await trainState(page);
  assert.equal(s.running, true);
  for (const r of s.runs) {
    assert.equal(r.error, "");
    const mean = (v) => v.reduce((a, b) => a + b, 0) / v.length;
    const first = mean(r.losses.slice(0, 2)), last = mean(r.losses.slice(-2));
    assert.ok(first > 5.0, `${r.label}: first losses ${first} (an untrained byte model: ln 256 = 5.55)`);
    assert.ok(last < first - 0.5, `${r.label}: loss fell only from ${first} to ${last}`);
    assert.equal(r.max_vio_layers, 3);  // mini has three MoE layers
    assert.ok(r.tokens_per_s > 0);
  }
  // The page's frame time while both workers train: the main thread only draws.
  const f0 = await page.evaluate(() => window.eva.frames);
  await page.waitForFunction((f) => window.eva.frames >= f + 60, f0, { timeout: 60000 });
  const frameMs = await page.evaluate(() => window.eva.frameMs);
  const { panel_ms } = await trainState(page);

  // Pause: at most the step already in flight still lands.
  await click(page, button);
  await page.waitForFunction(() => !window.eva.state("train").running, null,
                             { timeout: 30000 });  // ImGui sees the click on its next frame
  const paused = await trainState(page);
  await page.waitForTimeout(4000);
  s = await trainState(page);
  for (let i = 0; i < s.runs.length; ++i) assert.ok(s.runs[i].steps <= paused.runs[i].steps + 1);
  const later = s;
  await page.waitForTimeout(2000);
  s = await trainState(page);
  for (let i = 0; i < s.runs.length; ++i) assert.equal(s.runs[i].steps, later.runs[i].steps);
  // Reset terminates the workers and forgets the curves; the button offers a fresh start.
  await click(page, s.reset);
  await page.waitForFunction(() => window.eva.state("train")
                                      .runs.every((r) => r.steps === 0 && r.state === 0), null, { timeout: 30000 });
  assert.equal((await trainState(page)).running, false);
  assert.deepEqual(errors, []);
  await page.close();
  // Checked last, so that the steps above are checked even on a machine too busy for smooth frames.
  assert.ok(panel_ms < 16, `building the panel took ${panel_ms} ms`);  // measured 0.2-4 ms on a loaded machine
  assert.ok(frameMs < 16, `frame ${frameMs} ms while training (the panel's own share: ${panel_ms} ms)`);
});

test("selfTest(): the wasm core's training losses match the native eva train", async () => {
  const eva = join(root, "build", "release", "eva");
  assert.ok(existsSync(eva), `${eva} missing: build the release preset first`);
  const { page } = await open("?panel=train&embed=1");
  const r = await page.evaluate(() => window.eva.selfTest());
  await page.close();
  const dir = mkdtempSync(join(tmpdir(), "eva-train-"));
  const text = join(dir, "selftest.txt");
  writeFileSync(text, r.train_selftest_text);
  // Identical code, data, config and seeds; only the GEMM's summation order differs (SIMD128 4-lane
  // tiles in wasm, AVX-512 or AVX2 tiles natively), which perturbs float results in their last bits
  // (~1e-7 relative). Training carries that forward: AdamW's first updates are about ±lr·sign(g), so a
  // gradient entry near zero whose sign flips moves its weight by 2·lr. fp32: measured ≤ 1e-7 relative
  // over the four losses (≤ 4e-6 for mini itself); bound 1e-4. FP8 amplifies more: an fp32 value on an
  // E4M3 rounding boundary flips to the neighbouring code, 1/8 apart, and the flips compound (mini:
  // 1e-2 apart by step 4); this small model measured 3e-6; bound 1e-3. Each step lowers the loss by
  // 3-5% here, so a wrong batch, lr, init or layer misses these bounds by far.
  const bound = { fp32: 1e-4, fp8: 1e-3 };
  try {
    for (const precision of ["fp32", "fp8"]) {
      // The run train_self_test() performs (web/panel_train.cpp), natively.
      const out = execFileSync(eva, ["train", "--config", "tiny", "--data", text, "--steps", "4", "--batch", "2",
                                     "--seq-len", "32", "--lr", "0.003", "--warmup", "1", "--seed", "1",
                                     "--precision", precision, "--eval-every", "4", "--json"], { encoding: "utf8" });
      const native = out.trim().split("\n").map((l) => JSON.parse(l)).filter((l) => "step" in l).map((l) => l.loss);
      const wasm = r[`train_losses_${precision}`];
      assert.equal(wasm.length, 4);
      assert.equal(native.length, 4);
      for (let i = 0; i < 4; ++i)
        assert.ok(Math.abs(wasm[i] - native[i]) <= bound[precision] * native[i],
                  `${precision} step ${i + 1}: wasm ${wasm[i]} vs native ${native[i]}`);
      assert.ok(wasm[3] < wasm[0] - 0.3, `${precision}: the loss did not fall over 4 steps`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a trainer whose worker dies is reported as failed, not left busy", async () => {
  const { page, errors } = await open("?panel=train&embed=1");
  await page.waitForFunction(() => window.eva.frames >= 5, null, { timeout: 30000 });
  await click(page, (await trainState(page)).button);
  await page.waitForFunction(() => window.eva.state("train").runs.every((r) => r.state >= 1), null, { timeout: 30000 });
  // What the browser does when a worker's wasm aborts (out of memory): an "error" event on its Worker.
  await page.evaluate(() => Browser.workers.filter((w) => w)[0].worker.dispatchEvent(
    new ErrorEvent("error", { message: "RuntimeError: Aborted(OOM)" })));
  await page.waitForFunction(() => window.eva.state("train").runs.some((r) => r.state === 3), null, { timeout: 30000 });
  const failed = (await trainState(page)).runs.find((r) => r.state === 3);
  assert.match(failed.error, /worker died \(RuntimeError: Aborted\(OOM\); out of memory\?\)/);
  assert.deepEqual(errors, []);
  await page.close();
});

// Browser tests of the FP8 error panel (web/panel_fp8.cpp): it renders alone in embed mode, its controls
// change what is computed, its self-test figures equal the native CLI's (build/release/eva fp8 …), and
// it stays inside the frame budget while the accumulation experiment runs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setup, open, root, click } from "./lib.mjs";

setup();

const cli = join(root, "build", "release", "eva");
const native = (args, input) => execFileSync(cli, ["fp8", ...args], { encoding: "utf8", input });
const state = (page) => page.evaluate(() => window.eva.state("fp8"));

// Waits until the panel shows a quantized tensor (the default one is a weight of the pretrained model,
// which arrives asynchronously).
async function shown(page) {
  await page.waitForFunction(() => {
    const s = window.eva.state("fp8");
    return s && s.count > 0;
  }, null, { timeout: 60000 });
  return state(page);
}

test("fp8 embed renders the panel: histogram, heatmap, no console errors", async () => {
  const { page, errors } = await open("?panel=fp8&embed=1");
  const s = await shown(page);
  assert.equal(s.source, "weight");
  assert.match(s.tensor, /pretrained mini model/);
  await page.waitForFunction(() => window.eva.frames >= 30, null, { timeout: 60000 });
  const png = await page.screenshot({ path: join(root, "build", "wasm", "fp8.png") });
  // Decode the screenshot with the browser's own PNG decoder and count what is on it.
  const pixels = await page.evaluate(async (b64) => {
    const img = await createImageBitmap(await (await fetch(`data:image/png;base64,${b64}`)).blob());
    const c = new OffscreenCanvas(img.width, img.height), g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, img.width, img.height).data, colours = new Set();
    let bars = 0;
    for (let i = 0; i < d.length; i += 4) {
      colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
      if (d[i] === 110 && d[i + 1] === 170 && d[i + 2] === 240) ++bars;  // the histogram's bar colour
    }
    return { colours: colours.size, bars };
  }, png.toString("base64"));
  assert.ok(pixels.colours > 200, `only ${pixels.colours} colours on the screenshot`);
  assert.ok(pixels.bars > 2000, `histogram bars cover only ${pixels.bars} pixels`);
  assert.deepEqual(errors, []);
  await page.close();
});

test("fp8 controls: E5M2 and 128x128 blocks change the quantization and its error", async () => {
  const { page, errors } = await open("?panel=fp8&embed=1");
  const a = await shown(page);
  assert.equal(a.format, "e4m3");
  assert.equal(a.granularity, "tile");
  assert.equal(a.scales, a.rows * Math.ceil(a.cols / 128));  // one scale per 1x128 tile
  await click(page, a.ui.e5m2);
  await page.waitForFunction(() => window.eva.state("fp8").format === "e5m2",
                             null, { timeout: 30000 });
  const b = await state(page);
  // One mantissa bit fewer halves the step: about 6 dB less SNR on the same tensor with the same scales.
  assert.ok(a.snr_db - b.snr_db > 4.5 && a.snr_db - b.snr_db < 7.5, `SNR ${a.snr_db} -> ${b.snr_db} dB`);
  await click(page, b.ui.block);
  await page.waitForFunction(() => window.eva.state("fp8").granularity === "block",
                             null, { timeout: 30000 });
  const c = await state(page);
  assert.equal(c.scales, Math.ceil(c.rows / 128) * Math.ceil(c.cols / 128));
  assert.notEqual(c.snr_db, b.snr_db);
  assert.deepEqual(errors, []);
  await page.close();
});

test("fp8 delayed scaling: the x4 spike saturates at its step only, while the history has not seen it", async () => {
  const { page, errors } = await open("?panel=fp8&embed=1");
  const a = await shown(page);
  await click(page, a.ui.delayed);
  await page.waitForFunction(() => window.eva.state("fp8").delayed.done === 24,
                             null, { timeout: 60000 });
  const d = (await state(page)).delayed, spike = 16;  // DelayedRun::kSpikeStep
  assert.equal(d.history_length, 4);
  // Before the spike the 3% drift per step stays within rounding of the top code (448·1.03 < 464): nothing
  // overflows; at the spike, the values above 464·s (s from the history, 4x too small) do, and SNR drops.
  assert.deepEqual(d.saturated.slice(0, spike), new Array(spike).fill(0));
  assert.ok(d.saturated[spike] > 0, `saturated at the spike: ${d.saturated[spike]}`);
  assert.ok(d.snr_db[spike] < d.snr_db[spike - 1] - 10, `SNR ${d.snr_db[spike - 1]} -> ${d.snr_db[spike]} dB`);
  // Afterwards the history holds the spike's amax, so nothing saturates.
  assert.deepEqual(d.saturated.slice(spike + 1), new Array(24 - spike - 1).fill(0));
  assert.deepEqual(errors, []);
  await page.close();
});

test("fp8 selfTest figures equal the native eva fp8 CLI", async () => {
  assert.ok(existsSync(cli), `${cli} missing: build the release preset`);
  const { page } = await open("?panel=fp8&embed=1");
  const r = await page.evaluate(() => window.eva.selfTest());
  for (const [f, nans] of [["e4m3", 2], ["e5m2", 6]]) {
    // decode → encode of all 256 codes: every code back to itself, NaNs to 0x7F / 0xFF (exact).
    assert.equal(r[`fp8_${f}_roundtrip_mismatches`], 0);
    assert.equal(r[`fp8_${f}_simd_scalar_mismatches`], 0);
    assert.equal(r[`fp8_${f}_nan_codes`], nans);  // OFP8: S.1111.111 (E4M3), S.11111.{01,10,11} (E5M2)
    // The 256 decoded values, exactly as `eva fp8 table` prints them natively.
    const table = JSON.parse(native(["table", "--format", f, "--json"]));
    assert.deepEqual(r[`fp8_${f}_values`], table.map((e) => e.value));
    // The native encoder fed the same values gives the same codes (NaN lines carry no sign: left out).
    const finite = table.map((e, c) => [e.value, c]).filter(([v]) => v !== "nan");
    const codes = native(["encode", "--format", f], finite.map(([v]) => v).join("\n") + "\n").trim().split("\n");
    assert.deepEqual(finite.map(([, c]) => r[`fp8_${f}_reencoded`][c]), codes.map((h) => parseInt(h, 16)));
  }
  // Seeded FP8 GEMM errors (16x16 output, K = 4096, N(0,1) operands, seed 1). The operands are the same
  // Philox draws, the codec is bit-exact and the sums run in the same order, so only libm's log/cos in
  // Box-Muller (musl vs glibc, ≤ 1 ulp in double before rounding to float) could differ: 1e-6 relative.
  const close = (w, n, what) => assert.ok(Math.abs(w - n) <= 1e-6 * Math.abs(n), `${what}: wasm ${w}, native ${n}`);
  const gemm = (g, p) => JSON.parse(native(["gemm-error", "--m", "16", "--n", "16", "--k", "4096", "--seed", "1",
                                            "--granularity", g, "--promote-every", p, "--json"]));
  const ds = gemm("deepseek", "128"), never = gemm("tensor", "0");
  close(r.fp8_gemm_deepseek_accumulation_rel_error, ds.accumulation_rel_error, "1x128 x 128x128, N_C = 128: accumulation");
  close(r.fp8_gemm_deepseek_total_rel_error, ds.total_rel_error, "1x128 x 128x128, N_C = 128: total");
  close(r.fp8_gemm_never_accumulation_rel_error, never.accumulation_rel_error, "per tensor, no promotion: accumulation");
  close(r.fp8_gemm_never_total_rel_error, never.total_rel_error, "per tensor, no promotion: total");
  // And the point of the experiment: promotion every 128 cuts the 14-bit accumulator's error many times.
  assert.ok(r.fp8_gemm_never_accumulation_rel_error > 10 * r.fp8_gemm_deepseek_accumulation_rel_error);
  await page.close();
});

test("fp8 frame time stays under 16 ms at default settings, also while the accumulation experiment runs", async () => {
  const { page } = await open("?panel=fp8&embed=1");
  await shown(page);
  // The experiment starts with the first frame and does one bounded slice per frame until done.
  await page.waitForFunction(() => window.eva.state("fp8").accum.length === 7,
                             null, { timeout: 120000 });
  const s = await state(page);
  assert.ok(s.accum_frames >= 20, `the experiment took only ${s.accum_frames} frames`);
  const during = await page.evaluate((n) => window.eva.frameSamples.slice(1, n), s.accum_frames);  // not the first frame
  const median = [...during].sort((x, y) => x - y)[Math.floor(during.length / 2)];
  await page.waitForFunction((n) => window.eva.frames >= n, s.accum_frames + 60, { timeout: 120000 });
  const after = await page.evaluate(() => window.eva.frameMs);
  // The panel's own share (its computation and ImGui calls, without WebGL), which machine load inflates less.
  const own = (await state(page)).panel_ms;
  assert.ok(own < 8, `fp8_panel takes ${own} ms per frame`);
  assert.ok(median < 16, `median frame while the experiment ran: ${median} ms`);
  assert.ok(after < 16, `frame time (rolling mean) after it: ${after} ms`);
  await page.close();
});

// The shipped checkpoint's header and one tensor's bytes, read here with the safetensors layout (8-byte
// little-endian header length, JSON header, data after it) — independently of eva's reader.
function safetensorsTensor(path, name) {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0)), header = JSON.parse(buf.toString("utf8", 8, 8 + n));
  const e = header[name];
  assert.ok(e, `${name} not in ${path}`);
  const bytes = buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]);
  return { dtype: e.dtype, shape: e.shape, bytes, size: buf.length };
}

test("fp8 the page loads the model as stored (E4M3 + 128x128 scales) and shows the stored codes and scales", async () => {
  const file = join(root, "build", "wasm", "web", "mini.safetensors");
  const { page, errors } = await open("?panel=fp8&embed=1");
  const s = await shown(page);
  assert.equal(s.model, "pretrained");
  const p = s.checkpoint;  // how the app loaded it
  // The page says how the weights are stored, with the file's size (core inspect_checkpoint).
  assert.match(p.message, /weights stored as DeepSeek-V3 stores them: FP8 E4M3 Linear weights with 128x128 scales/);
  const codes = safetensorsTensor(file, s.stored.name), scales = safetensorsTensor(file, s.stored.name.replace(/weight$/, "scale"));
  assert.equal(p.inspect.file_bytes, codes.size);
  assert.ok(p.inspect.stored_by_dtype.F8_E4M3.tensors > 0);
  const mb = (codes.size / 1e6).toFixed(1);
  assert.ok(p.message.includes(`${mb} MB`), `"${p.message}" does not give the size ${mb} MB`);
  // The default weight's view: exactly the file's bytes, not a re-quantization.
  assert.equal(s.stored.name, "layers.0.ffn.w1.weight");
  assert.equal(codes.dtype, "F8_E4M3");
  assert.equal(s.stored.dtype, "F8_E4M3");
  assert.deepEqual(s.stored.shape, codes.shape);
  assert.equal(scales.dtype, "F32");
  assert.deepEqual(s.stored.scale_shape, scales.shape);
  assert.deepEqual(s.stored.scale_shape, codes.shape.map((d) => Math.ceil(d / 128)));
  assert.deepEqual(s.stored.codes_head, [...codes.bytes.subarray(0, 64)]);
  const f32 = new Float32Array(scales.bytes.buffer.slice(scales.bytes.byteOffset, scales.bytes.byteOffset + scales.bytes.length));
  assert.deepEqual(s.stored.scales, [...f32]);  // float32 → double → JSON: exact
  const counts = new Array(256).fill(0);
  for (const c of codes.bytes) ++counts[c];
  assert.deepEqual(s.stored.counts, counts);
  // Dequantized, the stored codes are the weights the page runs on (the loader's own dequantization).
  assert.equal(s.stored.max_rel_diff_loaded, 0);
  assert.deepEqual(errors, []);
  await page.close();
});

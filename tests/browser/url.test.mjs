// The page's state in its address and as text (web/main.cpp, web/panel.hpp Query): a panel's controls
// come from the query string, window.eva.embedLink() gives the link that reopens the panel in its current
// state, invalid values fall back to the defaults, and each panel's plain-text summary is mirrored into
// the page's aria-live region.
import { test } from "node:test";
import assert from "node:assert/strict";
import { setup, open } from "./lib.mjs";

setup();

const state = (page, id) => page.evaluate((i) => window.eva.state(i), id);

test("kv: model and tokens round-trip through the query string and the embed link", async () => {
  const { page, errors } = await open("?panel=kv&embed=1&model=v2&tokens=4096");
  await page.waitForFunction(() => window.eva.state("kv").drawn, null, { timeout: 30000 });
  const s = await state(page, "kv");
  assert.equal(s.preset, "V2");
  assert.equal(s.seq_len, 4096);
  const link = await page.evaluate(() => window.eva.embedLink());
  const q = new URL(link).searchParams;
  assert.equal(q.get("panel"), "kv");
  assert.equal(q.get("embed"), "1");
  assert.equal(q.get("model"), "v2");
  assert.equal(q.get("tokens"), "4096");
  await page.close();
  // The link reopens the same state.
  const again = await open(new URL(link).search);
  await again.page.waitForFunction(() => window.eva.state("kv").drawn, null, { timeout: 30000 });
  const t = await state(again.page, "kv");
  assert.equal(t.preset, "V2");
  assert.equal(t.seq_len, 4096);
  assert.deepEqual([...errors, ...again.errors], []);
  await again.page.close();
});

test("invalid query values leave the defaults", async () => {
  const { page, errors } = await open("?panel=kv&embed=1&model=gpt5&tokens=lots");
  await page.waitForFunction(() => window.eva.state("kv").drawn, null, { timeout: 30000 });
  const s = await state(page, "kv");
  assert.equal(s.preset, "V3");
  assert.equal(s.seq_len, 32768);
  assert.deepEqual(errors, []);
  await page.close();
});

test("fp8 and train controls come from the query string", async () => {
  const a = await open("?panel=fp8&embed=1&format=e5m2&granularity=block&accum_bits=13");
  await a.page.waitForFunction(() => window.eva.state("fp8").drawn, null, { timeout: 30000 });
  const f = await state(a.page, "fp8");
  assert.equal(f.format, "e5m2");
  assert.equal(f.granularity, "block");
  assert.equal(f.accum_bits, 13);
  assert.match(await a.page.evaluate(() => window.eva.embedLink()), /format=e5m2.*granularity=block|granularity=block.*format=e5m2/);
  await a.page.close();
  const b = await open("?panel=train&embed=1&gamma=0.001");
  await b.page.waitForFunction(() => window.eva.state("train").drawn, null, { timeout: 30000 });
  assert.equal((await state(b.page, "train")).gamma.toFixed(4), "0.0010");  // V3's value, one link away
  assert.deepEqual([...a.errors, ...b.errors], []);
  await b.page.close();
});

test("routing: score, layout and balancing come from the query string; a layout the rule refuses is ignored", async () => {
  const a = await open("?panel=routing&embed=1&score=softmax&groups=2&kept=1&topk=3&balance=seq-loss&moe_layer=1");
  await a.page.waitForFunction(() => window.eva.state("routing").tokens > 0, null, { timeout: 60000 });
  const s = await state(a.page, "routing");
  assert.equal(s.config.score_func, "softmax");
  assert.equal(s.config.n_expert_groups, 2);
  assert.equal(s.config.n_limited_groups, 1);
  assert.equal(s.config.n_activated_experts, 3);
  assert.equal(s.config.balance, "seq-loss");
  assert.equal(s.layer, 1);
  assert.match(await a.page.evaluate(() => window.eva.embedLink()), /groups=2/);
  await a.page.close();
  // 16 experts in 16 groups leave one expert per group: refused by validate_expert_groups, so mini's
  // trained 4 groups stay (the score function from the same link still applies).
  const b = await open("?panel=routing&embed=1&groups=16&kept=2&score=softmax");
  await b.page.waitForFunction(() => window.eva.state("routing").tokens > 0, null, { timeout: 60000 });
  const t = await state(b.page, "routing");
  assert.equal(t.config.n_expert_groups, 4);
  assert.equal(t.config.score_func, "softmax");
  assert.deepEqual([...a.errors, ...b.errors], []);
  await b.page.close();
});

test("the shown panel's summary is mirrored into the aria-live region", async () => {
  const { page, errors } = await open("?panel=kv&embed=1&model=v3&tokens=32768");
  // The region is refreshed every 30 frames.
  await page.waitForFunction(() => document.getElementById("summary").textContent.length > 0, null, { timeout: 30000 });
  const text = await page.evaluate(() => document.getElementById("summary").textContent);
  // V3 in bf16: MLA caches 576 elements per token per layer, MHA 40,960: × 2 bytes × 61 layers × 32768
  // tokens = 2.14 GiB and 152.50 GiB.
  assert.match(text, /^KV cache of V3 for 32768 tokens in bf16: MLA 2\.14 GiB; MHA 152\.50 GiB; GQA-8 [0-9.]+ GiB;/);
  assert.equal(await page.evaluate(() => document.getElementById("summary").getAttribute("aria-live")), "polite");
  assert.deepEqual(errors, []);
  await page.close();
});

test("gemm: the matrix size round-trips through the query string; out of range keeps the default", async () => {
  const a = await open("?panel=gemm&embed=1&n=200");
  await a.page.waitForFunction(() => window.eva.state("gemm").done, null, { timeout: 30000 });
  const s = await state(a.page, "gemm");
  assert.equal(s.size, 200);
  assert.match(s.summary, /^GEMM n = 200:/);  // the figures are of that size's product
  assert.equal(new URL(await a.page.evaluate(() => window.eva.embedLink())).searchParams.get("n"), "200");
  await a.page.close();
  const b = await open("?panel=gemm&embed=1&n=4096");  // above the slider's 512
  await b.page.waitForFunction(() => window.eva.state("gemm").done, null, { timeout: 30000 });
  assert.equal((await state(b.page, "gemm")).size, 128);
  assert.deepEqual([...a.errors, ...b.errors], []);
  await b.page.close();
});

// Every panel whole at the two embed sizes the issue names (800x600, 1280x800) and at devicePixelRatio 1
// and 2: the page renders at the device's pixel ratio (canvas backing store = CSS size x ratio, ImGui in CSS
// pixels), follows the frame's resizing, and no text is cut. "Cut" is read from the panel's exported
// layout (window.eva.layout(), web/panel.hpp layout_report): every glyph on screen with its clip
// rectangle, each window's overflow, shortened tabs and table headers. Each case also leaves a screenshot
// in build/wasm/layout/ to look at.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { setup, open, nextFrames, root, click } from "./lib.mjs";

setup();

const shots = join(root, "build", "wasm", "layout");
mkdirSync(shots, { recursive: true });
const sizes = [{ width: 1280, height: 800 }, { width: 800, height: 600 }];

// Asserts the frame on screen is whole: the canvas's backing store follows the CSS size and ratio, ImGui's
// display is the CSS size, no window runs off it or overflows sideways, and no glyph is cut.
async function assertWhole(page, what, size, ratio) {
  const canvas = await page.evaluate(() => { const c = document.getElementById("canvas"); return [c.width, c.height]; });
  assert.deepEqual(canvas, [size.width * ratio, size.height * ratio], `${what}: canvas backing store`);
  const l = await page.evaluate(() => window.eva.layout());
  assert.deepEqual(l.display, [size.width, size.height], `${what}: ImGui's display in CSS pixels`);
  assert.equal(l.pixel_ratio, ratio, `${what}: framebuffer scale`);
  assert.ok(l.glyphs > 200, `${what}: only ${l.glyphs} glyphs on screen`);
  for (const w of l.windows) {
    if (w.name.includes("##Combo") || w.name.startsWith("##Tooltip")) continue;  // popups place themselves
    const [x0, y0, x1, y1] = w.rect;
    assert.ok(x0 >= 0 && y0 >= 0 && x1 <= size.width + 0.5 && y1 <= size.height + 0.5,
              `${what}: window ${w.name} at ${w.rect} runs off the ${size.width}x${size.height} display`);
    // ImGui rounds a text's measured width up to the next whole pixel (CalcTextSize), so a wrapped line
    // ending less than a pixel from the edge counts 1 px of overflow that nothing shows; whether a glyph is
    // actually cut is what l.cut says.
    assert.ok(w.overflow_x <= 1, `${what}: window ${w.name} is ${w.overflow_x} px too narrow for its content`);
  }
  assert.deepEqual(l.cut, [], `${what}: cut text`);
}

// A panel is ready to check once its figures are there (the pretrained model loaded, the panel computed).
const ready = {
  kv: () => window.eva.state("kv").tokens >= 4,
  routing: () => window.eva.state("routing").tokens > 0,
  fp8: () => window.eva.state("fp8").drawn && window.eva.state("fp8").model === "pretrained",
  train: () => window.eva.state("train").drawn,
  gemm: () => window.eva.state("gemm").drawn,
};

// Resizes the frame to each size and checks it whole, at the top and scrolled to its end; `name` names the
// screenshots.
async function assertWholeAtEverySize(page, name, ratio) {
  for (const size of sizes) {
    await page.setViewportSize(size);  // the iframe resized: the canvas and ImGui follow
    await page.waitForFunction(([w, r]) => document.getElementById("canvas").width === w * r &&
                                           window.eva.layout().display[0] === w, [size.width, ratio], { timeout: 30000 });
    await nextFrames(page);
    const what = `${name} ${size.width}x${size.height}@${ratio}`;
    await page.screenshot({ path: join(shots, `${name}-${size.width}x${size.height}@${ratio}.png`) });
    await assertWhole(page, what, size, ratio);
    // What lies below the fold is whole too: scroll the panel to its end and look again.
    await page.mouse.move(size.width / 2, size.height / 2);
    await page.mouse.wheel(0, 20000);
    await nextFrames(page);
    await nextFrames(page);
    await page.screenshot({ path: join(shots, `${name}-${size.width}x${size.height}@${ratio}-end.png`) });
    await assertWhole(page, `${what} scrolled to the end`, size, ratio);
    await page.mouse.wheel(0, -20000);
  }
}

for (const ratio of [1, 2])
  for (const id of Object.keys(ready))
    test(`${id} is whole at 1280x800 and 800x600, devicePixelRatio ${ratio}`, async () => {
      const { page, errors } = await open(`?panel=${id}&embed=1`, sizes[0], ratio);
      await page.waitForFunction(ready[id], null, { timeout: 60000 });
      await assertWholeAtEverySize(page, id, ratio);
      assert.deepEqual(errors, []);
      await page.close();
    });

// The Train panel while it trains: run status lines, the loss chart and the expert-load charts on screen.
test("train is whole while training, at 1280x800 and 800x600", async () => {
  const { page, errors } = await open("?panel=train&embed=1", sizes[0], 1);
  await page.waitForFunction(() => window.eva.frames >= 5, null, { timeout: 30000 });
  await click(page, await page.evaluate(() => window.eva.state("train").button));
  await page.waitForFunction(() => window.eva.state("train").runs.every((r) => r.steps >= 2), null,
                             { timeout: 300000, polling: 500 });
  await assertWholeAtEverySize(page, "train-training", 1);
  assert.deepEqual(errors, []);
  await page.close();
});

// The page's performance in headless Chromium (Debian's, SwiftShader WebGL2): for the whole page and each
// panel's embed URL, the median and 95th percentile of the per-frame compute + render time measured by the
// page itself (window.eva.frameSamples) at default settings, the mean WebGL submission time, the time to the first drawn frame, and the
// size of the code the page downloads (.js + .wasm; the pretrained checkpoint counted apart).
// Usage: node tests/browser/bench_page.mjs [--frames N] [--json]     (after scripts/web.sh)
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { serve } from "./server.mjs";
import { web, flags } from "./lib.mjs";

const args = process.argv.slice(2);
if (args.includes("--help")) {
  console.log("usage: node tests/browser/bench_page.mjs [--frames N] [--json]\n" +
              "Frame time (median, p95) per panel, time to first frame, code size of build/wasm/web.");
  process.exit(0);
}
const json = args.includes("--json");
const framesAt = args.indexOf("--frames");
const frames = framesAt >= 0 ? Number(args[framesAt + 1]) : 240;
if (!(frames >= 10 && frames <= 600)) {
  console.error("bench_page: --frames must be between 10 and 600");
  process.exit(2);
}

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const size = (pred) => readdirSync(web).filter(pred).reduce((n, f) => n + statSync(join(web, f)).size, 0);

let server, browser;
try {
  server = await serve(web);
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: flags });
  const base = `http://127.0.0.1:${server.address().port}/`;
  // The panel ids come from the page itself (window.eva.panels), so new panels are measured too.
  const probe = await browser.newPage();
  await probe.goto(base);
  await probe.waitForFunction(() => window.eva && window.eva.ready === true, null, { timeout: 60000 });
  const ids = await probe.evaluate(() => window.eva.panels);
  await probe.close();
  const rows = [];
  for (const query of ["", ...ids.map((id) => `?panel=${id}&embed=1`)]) {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(base + query);
    await page.waitForFunction(() => window.eva && window.eva.ready === true, null, { timeout: 60000 });
    const first = await page.evaluate(() => window.eva.firstFrameMs);
    const start = await page.evaluate(() => window.eva.frames);
    await page.waitForFunction((n) => window.eva.frames >= n, start + frames, { timeout: 600000 });
    const { samples, submit } = await page.evaluate(() => ({ samples: window.eva.frameSamples,
                                                             submit: window.eva.submitMs }));
    const last = samples.slice(-frames);
    rows.push({ url: query || "(all panels)", frames: last.length, median_ms: quantile(last, 0.5),
                p95_ms: quantile(last, 0.95), webgl_submit_mean_ms: submit, first_frame_ms: first });
    await page.close();
  }
  const code = size((f) => /\.(js|wasm)$/.test(f)), checkpoint = size((f) => f.endsWith(".safetensors"));
  const result = { frames_per_url: frames, code_bytes: code, checkpoint_bytes: checkpoint, urls: rows };
  if (json) console.log(JSON.stringify(result));
  else {
    console.log(`code (.js + .wasm): ${(code / 1e6).toFixed(2)} MB; checkpoint: ${(checkpoint / 1e6).toFixed(1)} MB`);
    console.log("frame = the page thread's compute + ImGui time; WebGL submission (browser GPU process) apart");
    console.log("url                          frames  median ms  p95 ms  submit ms  first frame ms");
    for (const r of rows)
      console.log(`${r.url.padEnd(28)} ${String(r.frames).padStart(6)} ${r.median_ms.toFixed(2).padStart(10)} ` +
                  `${r.p95_ms.toFixed(2).padStart(7)} ${r.webgl_submit_mean_ms.toFixed(2).padStart(10)} ` +
                  `${r.first_frame_ms.toFixed(0).padStart(15)}`);
  }
} catch (e) {
  console.error(`bench_page: ${e.message.split("\n")[0]}`);
  process.exitCode = 1;
} finally {
  await browser?.close();
  server?.close();
}

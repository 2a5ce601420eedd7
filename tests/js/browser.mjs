// What the Chromium drivers under tests/js share (imported, never run on its own).

// Chromium on this closed network: no network chatter, and WebGL 2 through ANGLE on
// SwiftShader (software GL; Chromium 156 falls back to it even without the last three
// flags, which keep it so when the automatic fallback goes). playwright's launch() gives
// each run a fresh profile dir.
export const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
];

// page side (page.evaluate): wait until the viewer's 2D map has drawn everything it asked
// for: its `idle` event, or — MapLibre sometimes draws its last frame while a label
// placement is still settling and then asks for no other, so `idle` never comes (seen on a
// first slider move, on a server still building its pyramids) — a map loaded (every tile,
// the style) that drew nothing for a second. Returns which it was.
export const IDLE = async () => {
  const map = window.gp.map2d.map;
  await window.gp.settled();
  let last = Date.now();
  const drew = () => { last = Date.now(); };
  map.on("render", drew);
  const how = await new Promise((ok) => {
    const poll = setInterval(() => {
      if (Date.now() - last > 1000 && map.loaded() && !map.isMoving()) { clearInterval(poll); ok("quiet"); }
    }, 100);
    map.once("idle", () => { clearInterval(poll); ok("idle"); });
    map.triggerRepaint();
  });
  map.off("render", drew);
  return how;
};

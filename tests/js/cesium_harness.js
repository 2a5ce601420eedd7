// The page side of tests/js/cesium_load.mjs (served as /harness.js next to the Cesium build):
// window.cesiumHarness(options) builds an offline Viewer (no ion, no imagery, no geocoder),
// loads the tileset, zooms to it, waits until the view's tiles are loaded and reports.
// Console errors are collected by the driver, outside the page.
"use strict";

window.cesiumHarness = async function cesiumHarness(o) {
  const t0 = performance.now();
  const out = { tiles_loaded: 0, failed: 0, failures: [], features: 0, page_errors: [],
                all_tiles_loaded: false, timings_ms: {} };
  try {
    await load(o, out, t0);
  } catch (e) {
    out.error = String((e && (e.stack || e.message)) || e);
  }
  out.timings_ms.total = Math.round(performance.now() - t0);
  return out;
};

async function load(o, out, t0) {
  Cesium.Ion.defaultAccessToken = "";
  const viewer = new Cesium.Viewer("c", {
    baseLayer: false, baseLayerPicker: false, geocoder: false, homeButton: false,
    sceneModePicker: false, navigationHelpButton: false, animation: false, timeline: false,
    fullscreenButton: false, infoBox: false, selectionIndicator: false, vrButton: false,
    projectionPicker: false, shouldAnimate: false,
    terrainProvider: new Cesium.EllipsoidTerrainProvider(),
    // software GL: draw only when something changed, no MSAA, no sky
    requestRenderMode: true, maximumRenderTimeChange: Infinity, msaaSamples: 1,
    skyBox: false, skyAtmosphere: false,
  });
  const scene = viewer.scene;
  scene.fog.enabled = false;
  scene.globe.showGroundAtmosphere = false;
  if (scene.sun) scene.sun.show = false;
  if (scene.moon) scene.moon.show = false;
  window.viewer = viewer;
  scene.renderError.addEventListener((_scene, e) =>
    out.page_errors.push(`render error: ${e && (e.stack || e.message || e)}`));
  scene.globe.baseColor = Cesium.Color.fromCssColorString("#30343a");
  if (o.terrain_url) {
    const terrain = await Cesium.CesiumTerrainProvider.fromUrl(o.terrain_url);
    terrain.errorEvent.addEventListener((e) => {
      out.failed += 1;
      out.failures.push({ terrain: true, message: String(e && (e.message || e)) });
    });
    viewer.terrainProvider = terrain;
  }
  const gl = scene.context._gl;
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  out.webgl = { webgl2: scene.context.webgl2,
                renderer: gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER) };
  out.timings_ms.viewer = Math.round(performance.now() - t0);

  const tileset = await Cesium.Cesium3DTileset.fromUrl(o.tileset_url);
  window.tileset = tileset;
  tileset.tileLoad.addEventListener((tile) => {
    out.tiles_loaded += 1;
    if (out.timings_ms.first_tile === undefined) out.timings_ms.first_tile = Math.round(performance.now() - t0);
    out.features += (tile.content && tile.content.featuresLength) || 0;
  });
  let settledEvents = 0;
  tileset.allTilesLoaded.addEventListener(() => { settledEvents += 1; });
  tileset.tileFailed.addEventListener((e) => {
    out.failed += 1;
    out.failures.push({ url: e.url, message: String(e.message) });
  });
  scene.primitives.add(tileset);
  out.timings_ms.tileset_json = Math.round(performance.now() - t0);
  // from the south-west, looking down 35°, far enough to see all of it
  if (o.flyto) {
    await viewer.zoomTo(tileset, new Cesium.HeadingPitchRange(
      Cesium.Math.toRadians(30), Cesium.Math.toRadians(-35), tileset.boundingSphere.radius * 3));
    out.timings_ms.zoom = Math.round(performance.now() - t0);
  }

  // Done once the tileset has raised allTilesLoaded (it does so only after loading made
  // progress: every tile the view needs is loaded or failed) and tilesLoaded (with terrain
  // also globe.tilesLoaded) holds over two rendered frames. tilesLoaded alone is true in the
  // first frames, before any request, and a view needing no tile never raises the event:
  // 40 settled frames without it end the wait too. Frames are asked for explicitly
  // (requestRenderMode).
  const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
  const frame = () => Promise.race([sleep(1000), new Promise((ok) => {
    const off = scene.postRender.addEventListener(() => { off(); ok(); });
    scene.requestRender();
  })]);
  const deadline = performance.now() + o.load_timeout_ms;
  let stable = 0;
  const done = () => (settledEvents > 0 && stable >= 2) || stable >= 40;
  while (!done() && performance.now() < deadline) {
    await frame();
    const ready = tileset.tilesLoaded && (!o.terrain_url || scene.globe.tilesLoaded);
    stable = ready ? stable + 1 : 0;
    if (!done()) await sleep(50);
  }
  out.all_tiles_loaded = done();
  out.timings_ms.tiles = Math.round(performance.now() - t0);
  // Render once more and pick the middle of the canvas: proof the content was drawn.
  await frame();
  const canvas = scene.canvas;
  const picked = scene.pick(new Cesium.Cartesian2(canvas.clientWidth / 2, canvas.clientHeight / 2));
  out.center_pick = !!picked && (picked.primitive === tileset || picked.tileset === tileset ||
                                 (picked.content && picked.content.tileset === tileset));
  out.timings_ms.pick = Math.round(performance.now() - t0);
  const bs = tileset.boundingSphere;
  const c = Cesium.Cartographic.fromCartesian(bs.center);
  out.bounding_sphere = c ? { lon: Cesium.Math.toDegrees(c.longitude), lat: Cesium.Math.toDegrees(c.latitude),
                              height: c.height, radius: bs.radius } : null;
  if (o.script) {
    const fn = new Function("Cesium", "viewer", "tileset", `return (async () => { ${o.script} })();`);
    out.script = await fn(Cesium, viewer, tileset);
  }
}

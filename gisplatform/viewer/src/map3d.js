// The 3D view (CesiumJS, loaded on the first switch to 3D from vendor/cesium): the
// platform's orthophoto of the slider's year and hillshade on its quantized-mesh terrain
// (the ellipsoid without a DEM), the buildings tileset shown as of the slider's time, the
// real-scene tilesets and, when the token reads cameras, the cameras with their view cones.
// No Cesium ion, no online imagery: every request goes to this origin.
import { getJSON, q, rel } from "./api.js";
import { t } from "./i18n.js";
import { ORTHO_MINZOOM } from "./map2d.js";

let loading = null;

function loadCesium() {
  if (window.Cesium) return Promise.resolve(window.Cesium);
  if (loading) return loading;
  window.CESIUM_BASE_URL = new URL("vendor/cesium/", document.baseURI).href;
  const css = document.createElement("link");
  css.rel = "stylesheet";
  css.href = "vendor/cesium/Widgets/widgets.css";
  document.head.append(css);
  loading = new Promise((ok, no) => {
    const s = document.createElement("script");
    s.src = "vendor/cesium/Cesium.js";
    s.onload = () => ok(window.Cesium);
    s.onerror = () => no(new Error("vendor/cesium/Cesium.js did not load"));
    document.head.append(s);
  });
  return loading;
}

const USE_COLORS = [["residential", "#e9dfcf"], ["commercial", "#f2b880"], ["office", "#9fc5e8"],
                    ["industrial", "#b4a7d6"], ["public", "#b6d7a8"], ["mixed", "#f9cb9c"]];

// a camera's view sector as a ring of lon/lat (apex, arc, apex); flat-earth metres are
// fine for ranges of a few hundred metres
export function conePolygon(lon, lat, azimuth, fov, range) {
  const ring = [[lon, lat]];
  const steps = Math.max(4, Math.ceil(fov / 5));
  const mLat = 111320, mLon = 111320 * Math.cos((lat * Math.PI) / 180);
  for (let i = 0; i <= steps; i++) {
    const a = ((azimuth - fov / 2 + (fov * i) / steps) * Math.PI) / 180;
    ring.push([lon + (range * Math.sin(a)) / mLon, lat + (range * Math.cos(a)) / mLat]);
  }
  ring.push([lon, lat]);
  return ring;
}

export class Map3D {
  constructor(container, app) {
    this.app = app;
    this.container = container;
    this.stats = { buildings: 0, realscene: 0, failed: 0, failures: [], cameras: 0, ready: false, terrain: "ellipsoid" };
    this.orthoName = undefined;
    this.realscenes = [];
  }

  async init() {
    const Cesium = (this.Cesium = await loadCesium());
    Cesium.Ion.defaultAccessToken = "";
    const viewer = (this.viewer = new Cesium.Viewer(this.container, {
      baseLayer: false, baseLayerPicker: false, geocoder: false, homeButton: false, sceneModePicker: false,
      navigationHelpButton: false, animation: false, timeline: false, fullscreenButton: false, infoBox: false,
      selectionIndicator: false, vrButton: false, projectionPicker: false, shouldAnimate: false,
      terrainProvider: new Cesium.EllipsoidTerrainProvider(),
      requestRenderMode: true, maximumRenderTimeChange: Infinity, msaaSamples: 1,
    }));
    const scene = viewer.scene;
    scene.globe.baseColor = Cesium.Color.fromCssColorString("#8a9078");
    scene.globe.depthTestAgainstTerrain = true;
    scene.globe.maximumScreenSpaceError = 3; // fewer imagery/terrain tiles (software GL, titiler)
    scene.renderError.addEventListener((_s, e) => console.error("3D render error", e));
    // the base layer: one plain tile made here (Cesium stretches the base layer over the
    // whole globe; a served layer there would be asked for world-sized tiles)
    const canvas = Object.assign(document.createElement("canvas"), { width: 1, height: 1 });
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#8a9078";
    ctx.fillRect(0, 0, 1, 1);
    viewer.imageryLayers.addImageryProvider(await Cesium.SingleTileImageryProvider.fromUrl(canvas.toDataURL()));
    const rasters = this.app.rasters;
    const dem = rasters.find((r) => r.kind === "dem");
    if (dem) {
      try {
        viewer.terrainProvider = await Cesium.CesiumTerrainProvider.fromUrl(new URL("/3d/terrain/", location.href).href);
        this.stats.terrain = "quantized-mesh";
      } catch (e) {
        console.warn("terrain unavailable, using the ellipsoid", e);
      }
      this.hillshade = viewer.imageryLayers.addImageryProvider(new Cesium.UrlTemplateImageryProvider({
        url: `${location.origin}/raster/dem/hillshade/{z}/{x}/{y}.png`,
        rectangle: Cesium.Rectangle.fromDegrees(...dem.bounds), maximumLevel: 12, // the DEM is ~90 m
      }));
      this.hillshade.alpha = 0.5;
    }
    const listing = await getJSON("/3d/");
    const buildingsEntry = listing.tilesets.find((x) => x.kind === "buildings");
    if (buildingsEntry) {
      this.buildings = await Cesium.Cesium3DTileset.fromUrl(rel(buildingsEntry.tileset), { maximumScreenSpaceError: 8 });
      this.watch(this.buildings, "buildings");
      scene.primitives.add(this.buildings);
    }
    for (const entry of listing.tilesets.filter((x) => x.kind === "realscene")) {
      // a small block with small geometric errors: refine it from afar too
      const ts = await Cesium.Cesium3DTileset.fromUrl(rel(entry.tileset), { maximumScreenSpaceError: 2 });
      this.watch(ts, "realscene");
      this.realscenes.push(ts);
      scene.primitives.add(ts);
    }
    this.cameras = new Cesium.CustomDataSource("cameras");
    await viewer.dataSources.add(this.cameras);
    const handler = new Cesium.ScreenSpaceEventHandler(scene.canvas);
    handler.setInputAction((m) => this.onClick(m.position), Cesium.ScreenSpaceEventType.LEFT_CLICK);
    await this.update();
    this.stats.ready = true;
  }

  watch(tileset, kind) {
    tileset.tileLoad.addEventListener(() => { this.stats[kind] += 1; });
    tileset.tileFailed.addEventListener((e) => {
      this.stats.failed += 1;
      this.stats.failures.push(`${kind}: ${e.url} ${e.message}`);
    });
  }

  // The slider moved (or the token changed): buildings style, orthophoto year, cameras
  async update() {
    const Cesium = this.Cesium;
    const time = this.app.time();
    const T = Math.floor(time.epoch);
    if (this.buildings) {
      this.buildings.style = new Cesium.Cesium3DTileStyle({
        show: `\${valid_from} <= ${T} && ${T} < \${valid_to}`,
        color: { conditions: [...USE_COLORS.map(([u, c]) => [`\${use} === '${u}'`, `color('${c}')`]), ["true", "color('#dddddd')"]] },
      });
    }
    const ortho = this.app.orthoAt(time);
    if ((ortho?.name ?? null) !== this.orthoName) {
      if (this.ortho) this.viewer.imageryLayers.remove(this.ortho, true);
      this.ortho = null;
      if (ortho) {
        const provider = new Cesium.UrlTemplateImageryProvider({
          url: `${location.origin}/raster/ortho/{z}/{x}/{y}.png${q({ datetime: ortho.time })}`,
          rectangle: Cesium.Rectangle.fromDegrees(...ortho.bounds), maximumLevel: 16,
        });
        // below ORTHO_MINZOOM a tile spans much of the photo and takes the server long to
        // render: coarse globe tiles get a transparent one made here (minimumLevel would make
        // Cesium ask for dozens of fine tiles per coarse tile instead)
        const empty = Object.assign(document.createElement("canvas"), { width: 1, height: 1 });
        const requestImage = provider.requestImage.bind(provider);
        provider.requestImage = (x, y, level, request) =>
          level < ORTHO_MINZOOM ? Promise.resolve(empty) : requestImage(x, y, level, request);
        this.ortho = this.viewer.imageryLayers.addImageryProvider(provider);
      }
      this.orthoName = ortho?.name ?? null;
    }
    await this.loadCameras();
    this.syncLayers();
    this.viewer.scene.requestRender();
  }

  async loadCameras() {
    const Cesium = this.Cesium;
    this.cameras.entities.removeAll();
    this.stats.cameras = 0;
    const fc = this.app.cameraFeatures;
    if (!fc) return;
    const red = Cesium.Color.fromCssColorString("#e31a1c");
    for (const f of fc.features || []) {
      const [lon, lat] = f.geometry.coordinates;
      const p = f.properties || {};
      const entity = this.cameras.entities.add({
        id: `camera:${f.id}`,
        position: Cesium.Cartesian3.fromDegrees(lon, lat),
        point: { pixelSize: 8, color: red, outlineColor: Cesium.Color.WHITE, outlineWidth: 1,
                 heightReference: Cesium.HeightReference.CLAMP_TO_GROUND, disableDepthTestDistance: Number.POSITIVE_INFINITY },
      });
      entity.gp = { layer: "cameras", fid: f.id };
      if (p.azimuth != null && p.fov != null && p.range_m != null) {
        const ring = conePolygon(lon, lat, p.azimuth, Math.min(p.fov, 359), p.range_m);
        const cone = this.cameras.entities.add({
          id: `cone:${f.id}`,
          polygon: { hierarchy: Cesium.Cartesian3.fromDegreesArray(ring.flat()), material: red.withAlpha(0.25),
                     classificationType: Cesium.ClassificationType.TERRAIN },
        });
        cone.gp = entity.gp;
      }
      this.stats.cameras += 1;
    }
  }

  // the layer tree's ticks and opacities that have a 3D counterpart
  syncLayers() {
    if (!this.viewer) return;
    const u = (id) => this.app.map2d.userOf(id);
    if (this.buildings) this.buildings.show = u("buildings").visible;
    if (this.ortho) { this.ortho.show = u("ortho").visible; this.ortho.alpha = u("ortho").opacity; }
    if (this.hillshade) { this.hillshade.show = u("hillshade").visible; this.hillshade.alpha = 0.5 * u("hillshade").opacity; }
    if (this.cameras) this.cameras.show = u("cameras").visible;
    this.viewer.scene.requestRender();
  }

  onClick(position) {
    const picked = this.viewer.scene.pick(position);
    if (!picked) return;
    if (picked instanceof this.Cesium.Cesium3DTileFeature && picked.tileset === this.buildings) {
      this.app.openFeature("buildings", picked.getProperty("fid"), {});
    } else if (picked.id?.gp) {
      this.app.openFeature(picked.id.gp.layer, picked.id.gp.fid, {});
    }
  }

  // look at the 2D map's centre from the south, about as far as the map's scale
  lookAt(center, zoom, heightPx) {
    const Cesium = this.Cesium;
    const [lon, lat] = center;
    const mpp = (156543.03 * Math.cos((lat * Math.PI) / 180)) / 2 ** zoom;
    const range = Math.min(3000, Math.max(300, (mpp * heightPx) / 2 / Math.tan(Math.PI / 6)));
    const target = Cesium.Cartesian3.fromDegrees(lon, lat, 80);
    this.viewer.camera.lookAt(target, new Cesium.HeadingPitchRange(0, Cesium.Math.toRadians(-40), range));
    this.viewer.camera.lookAtTransform(Cesium.Matrix4.IDENTITY);
    this.viewer.scene.requestRender();
  }

  zoomTo(hit) {
    const Cesium = this.Cesium;
    this.viewer.camera.flyTo({
      destination: Cesium.Cartesian3.fromDegrees(hit.lon, hit.lat - 0.006, 700),
      orientation: { heading: 0, pitch: Cesium.Math.toRadians(-45), roll: 0 }, duration: 0.8,
    });
  }

  // every tile the view needs is loaded (buildings, real-scene, terrain)
  tilesLoaded() {
    const v = this.viewer;
    return !!v && v.scene.globe.tilesLoaded && (!this.buildings || this.buildings.tilesLoaded)
      && this.realscenes.every((ts) => ts.tilesLoaded);
  }

  static message(key) { return t(key); }
}

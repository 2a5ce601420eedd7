// Validate glTF / GLB files with the Khronos glTF-Validator (npm gltf-validator), many per run.
//
//   echo '{"paths": ["a.glb", "b.gltf"]}' | node tests/js/validate_gltf.mjs
//
// Options (JSON on stdin): paths (required), max_issues (100; 0 = all), ignored_issues ([]).
// Prints one JSON object on stdout: {"<path>": <validation report>, ...}. A file the
// validator cannot even read (not glTF, unreadable) gets a report of one error,
// code "UNREADABLE", so every path has issues.numErrors. External resources of a .gltf
// (buffers, images) are read relative to the file.

import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import * as validator from "gltf-validator";

function unreadable(path, message) {
  return {
    uri: path, validatorVersion: validator.version(),
    issues: { numErrors: 1, numWarnings: 0, numInfos: 0, numHints: 0, truncated: false,
              messages: [{ code: "UNREADABLE", message: String(message), severity: 0, pointer: "" }] },
  };
}

async function validate(path, o) {
  let bytes;
  try {
    bytes = new Uint8Array(await readFile(path));
  } catch (e) {
    return unreadable(path, e.message);
  }
  try {
    return await validator.validateBytes(bytes, {
      uri: path,
      writeTimestamp: false,
      maxIssues: o.max_issues ?? 100,
      ignoredIssues: o.ignored_issues || [],
      externalResourceFunction: async (uri) =>
        new Uint8Array(await readFile(resolve(dirname(path), decodeURIComponent(uri)))),
    });
  } catch (e) {
    return unreadable(path, e);
  }
}

const o = JSON.parse(readFileSync(0, "utf8"));
const out = {};
for (const path of o.paths) out[path] = await validate(path, o);
process.stdout.write(JSON.stringify(out) + "\n");

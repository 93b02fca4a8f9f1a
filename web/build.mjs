// Builds web/dist/ (committed, embedded in the paraph binary): one minified ES module bundle
// and the static files. Deterministic: same sources and lockfile, same bytes.
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

mkdirSync("dist", { recursive: true });
await esbuild.build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  format: "esm",
  target: ["es2022"],
  minify: true,
  sourcemap: false,
  legalComments: "eof",
  charset: "utf8",
  outfile: "dist/app.js",
  logLevel: "warning",
});
copyFileSync("static/index.html", "dist/index.html");
copyFileSync("static/app.css", "dist/app.css");

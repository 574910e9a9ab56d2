/// <reference types="vitest/config" />
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";

// The build lands inside the Python package, so `pip install .` ships it and the Host App
// serves it (guildnet/http/static.py). The build output is not committed: emptyOutDir wipes
// the directory, so the two files that keep it (empty) in git are written back afterwards.
const outDir = fileURLToPath(new URL("../guildnet/web", import.meta.url));

function keepGitkeep(): Plugin {
  return {
    name: "guildnet-keep-gitkeep",
    apply: "build",
    closeBundle() {
      writeFileSync(`${outDir}/.gitkeep`, "");
      writeFileSync(`${outDir}/.gitignore`, "# Built by `make ui` (cd ui && npm ci && npm run build); not committed.\n*\n!.gitkeep\n!.gitignore\n");
    },
  };
}

export default defineConfig({
  base: "/",
  plugins: [keepGitkeep()],
  build: {
    outDir,
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    // Nothing inline: the Host App's CSP has no 'unsafe-inline'.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    // Swagger UI (the /api/docs page) is one ~1.5 MB chunk, loaded by that page only.
    chunkSizeWarningLimit: 1600,
    rollupOptions: {
      // Two pages: the UI, and the API reference served at /api/docs.
      input: {
        main: fileURLToPath(new URL("index.html", import.meta.url)),
        docs: fileURLToPath(new URL("docs.html", import.meta.url)),
      },
    },
  },
  server: {
    // `npm run dev` against a running Host App (make run): same-origin API through the proxy.
    proxy: {
      "/api": { target: "https://127.0.0.1:8090", secure: false },
      "/sse": { target: "https://127.0.0.1:8090", secure: false },
      "/proxy": { target: "https://127.0.0.1:8090", secure: false, ws: true },
      "/healthz": { target: "https://127.0.0.1:8090", secure: false },
    },
  },
  test: {
    include: ["src/**/*.test.ts", "src/**/*.test.tsx"],
    environment: "node",
  },
});

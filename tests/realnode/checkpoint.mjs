// Checkpoints of the real-IDE browser scripts: where the Python test does its part (exec in
// the pod, read the real Pod) before the browser goes on.
//
// Protocol: the script prints one line `@@checkpoint <name> <json>` and waits until the file
// `<GUILDNET_HANDSHAKE>/<name>.json` exists; the test writes that file when its part is done,
// `{"ok": true, ...}` or `{"ok": false, "error": "..."}` (the script then fails).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

import { env, sleep } from "../browser/session.mjs";

/** Hand over to the Python test and wait for its answer (see the header). */
export async function checkpoint(name, data = {}, timeoutMs = 120_000) {
  const dir = env("GUILDNET_HANDSHAKE");
  const file = join(dir, `${name}.json`);
  console.log(`@@checkpoint ${name} ${JSON.stringify(data)}`);
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`checkpoint ${name}: no answer from the test`);
    await sleep(100);
  }
  await sleep(20); // the writer renames into place, but be kind to slow filesystems
  const reply = JSON.parse(readFileSync(file, "utf8"));
  if (!reply.ok) throw new Error(`checkpoint ${name}: ${reply.error}`);
  return reply;
}

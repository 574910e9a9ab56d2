// What a JupyterLab page exchanges with its server, recorded for a flow's diagnosis.
//
// Through the Chrome DevTools Protocol (the same events DevTools' Network panel shows):
// every WebSocket's handshake and frames (kernel messages decoded from Jupyter's
// `v1.kernel.websocket.jupyter.org` binary framing, or its JSON one), the REST calls under
// /api/, and the page's console. Written as JSON lines to `file` by `save()`, and
// summarised by `kernelSummary()` when a cell is not run.

import { writeFileSync } from "node:fs";

/** Decode one kernel WebSocket frame (the v1 binary protocol or the legacy JSON one). */
export function decodeKernelFrame(opcode, payloadData) {
  try {
    if (opcode === 1) {
      const m = JSON.parse(payloadData);
      return summarise(m.channel, m.header, m.parent_header, m.content);
    }
    const buf = Buffer.from(payloadData, "base64");
    const n = Number(buf.readBigUInt64LE(0));
    const offsets = [];
    for (let i = 0; i < n; i += 1) offsets.push(Number(buf.readBigUInt64LE(8 * (i + 1))));
    const part = (i) => buf.subarray(offsets[i], offsets[i + 1]).toString("utf8");
    const json = (i) => JSON.parse(part(i) || "{}");
    return summarise(part(0), json(1), json(2), json(4));
  } catch (e) {
    return { undecoded: String(e).slice(0, 100) };
  }
}

function summarise(channel, header, parent, content) {
  const out = { channel, type: header?.msg_type, id: header?.msg_id, parent: parent?.msg_id };
  if (content?.execution_state) out.state = content.execution_state;
  if (content?.code !== undefined) out.code = content.code;
  if (content?.status) out.status = content.status;
  if (content?.data?.["text/plain"] !== undefined) out.text = content.data["text/plain"];
  if (content?.execution_count !== undefined) out.count = content.execution_count;
  if (header?.session) out.session = header.session;
  return out;
}

export class JupyterTrace {
  constructor(file) {
    this.file = file;
    this.events = [];
    this.sockets = new Map(); // requestId -> url
    this.t0 = Date.now();
  }

  add(kind, data) {
    this.events.push({ t: Date.now() - this.t0, kind, ...data });
  }

  /** Start recording `page` (call right after it opens). */
  async attach(context, page) {
    const cdp = await context.newCDPSession(page);
    await cdp.send("Network.enable");
    cdp.on("Network.webSocketCreated", (e) => {
      this.sockets.set(e.requestId, e.url.split("?")[0]);
      this.add("ws-created", { ws: e.requestId, url: e.url.split("?")[0] });
    });
    cdp.on("Network.webSocketWillSendHandshakeRequest", (e) =>
      this.add("ws-handshake", { ws: e.requestId, protocol: e.request.headers["Sec-WebSocket-Protocol"] ?? null }),
    );
    cdp.on("Network.webSocketHandshakeResponseReceived", (e) =>
      this.add("ws-open", {
        ws: e.requestId,
        status: e.response.status,
        protocol: e.response.headers["Sec-WebSocket-Protocol"] ?? e.response.headers["sec-websocket-protocol"] ?? null,
      }),
    );
    const frame = (dir) => (e) => {
      const url = this.sockets.get(e.requestId) ?? "";
      const { opcode, payloadData } = e.response;
      // Payload bytes as on the wire (binary frames come base64-encoded), to compare with
      // the proxy's access-log line for the socket (bytes, bytes_in: frames included).
      const bytes = opcode === 1 ? Buffer.byteLength(payloadData) : Buffer.from(payloadData, "base64").length;
      const data = { ws: e.requestId, opcode, bytes };
      if (url.endsWith("/channels") && (opcode === 1 || opcode === 2)) Object.assign(data, decodeKernelFrame(opcode, payloadData));
      else if (opcode === 1) data.text = payloadData.slice(0, 200);
      this.add(dir, data);
    };
    cdp.on("Network.webSocketFrameSent", frame("ws-sent"));
    cdp.on("Network.webSocketFrameReceived", frame("ws-recv"));
    cdp.on("Network.webSocketFrameError", (e) => this.add("ws-error", { ws: e.requestId, error: e.errorMessage }));
    cdp.on("Network.webSocketClosed", (e) => this.add("ws-closed", { ws: e.requestId }));
    const api = (url) => {
      const path = new URL(url).pathname;
      return path.includes("/api/") ? path : null;
    };
    cdp.on("Network.requestWillBeSent", (e) => {
      const path = api(e.request.url);
      if (path) this.add("http", { id: e.requestId, method: e.request.method, path, body: (e.request.postData ?? "").slice(0, 300) });
    });
    cdp.on("Network.responseReceived", (e) => {
      const path = api(e.response.url);
      if (path) this.add("http-done", { id: e.requestId, status: e.response.status, path });
    });
    cdp.on("Network.loadingFailed", (e) => this.add("http-failed", { id: e.requestId, error: e.errorText }));
    page.on("console", (m) => this.add("console", { type: m.type(), text: m.text().slice(0, 500) }));
    page.on("pageerror", (e) => this.add("pageerror", { text: String(e?.message ?? e).slice(0, 500) }));
  }

  /** The notebook as the user sees it now (kernel status, focus, the first cell). */
  async snapshot(page, label) {
    const state = await page.evaluate(() => {
      const panel = document.querySelector(".jp-NotebookPanel:not(.lm-mod-hidden)");
      const q = (sel) => panel?.querySelector(sel);
      const active = document.activeElement;
      return {
        indicator: q(".jp-Notebook-ExecutionIndicator")?.getAttribute("data-status") ?? null,
        kernelName: q(".jp-KernelName, .jp-Toolbar-kernelName")?.textContent?.trim() ?? null,
        statusBar: document.querySelector(".jp-StatusBar-Widget")?.parentElement?.textContent?.replace(/\s+/g, " ").slice(0, 300) ?? null,
        cells: [...(panel?.querySelectorAll(".jp-Cell") ?? [])].map((c) => ({
          cls: c.className.split(" ").filter((x) => /active|selected|mod-dirty|Cell$|CodeCell|Markdown/.test(x)).join(" "),
          prompt: c.querySelector(".jp-InputPrompt")?.textContent ?? "",
          text: c.querySelector(".cm-content")?.textContent ?? "",
        })),
        focus: `${active?.tagName}.${String(active?.className ?? "").slice(0, 80)}`,
        dialog: document.querySelector(".jp-Dialog")?.textContent?.slice(0, 300) ?? null,
        title: document.title,
      };
    });
    this.add("snapshot", { label, ...state });
    return state;
  }

  /** The kernel messages, one short line each (for the log of a flow that went wrong). */
  kernelSummary() {
    return this.events
      .filter((e) => (e.kind === "ws-sent" || e.kind === "ws-recv") && e.channel !== undefined)
      .map((e) => `${e.t}ms ${e.kind === "ws-sent" ? ">" : "<"} ${e.channel} ${e.type}${e.state ? ` ${e.state}` : ""}${e.code !== undefined ? ` ${JSON.stringify(e.code)}` : ""}`);
  }

  save() {
    writeFileSync(this.file, `${this.events.map((e) => JSON.stringify(e)).join("\n")}\n`);
  }
}

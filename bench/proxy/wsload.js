// WebSocket echo load for bench.proxy, in node: a load generator cheap enough that the
// proxies, not the client, decide the figure (the asyncio client in load.py spends
// more CPU per message than any proxy measured). No dependencies: node's TLS and a
// minimal RFC 6455 client (masked text frames out, unmasked frames in).
//
//   node bench/proxy/wsload.js URL CONNECTIONS SECONDS [SIZE]
//
// Prints one JSON line: {"rate", "p50_ms", "p99_ms", "count"}. Only for the
// benchmark's own loopback servers (the certificate is not verified).
"use strict";

const crypto = require("crypto");
const net = require("net");
const tls = require("tls");

function main() {
  const [url, connArg, secArg, sizeArg] = process.argv.slice(2);
  const target = new URL(url);
  const connections = Number(connArg || 10);
  const seconds = Number(secArg || 3);
  const size = Number(sizeArg || 32);
  const secure = target.protocol === "wss:";
  const port = Number(target.port || (secure ? 443 : 80));
  const host = target.hostname;
  const path = target.pathname + target.search;
  const frame = maskedFrame(Buffer.alloc(size, "m"));
  const latencies = [];
  const started = process.hrtime.bigint();
  const deadline = started + BigInt(Math.round(seconds * 1e9));
  let open = connections;

  for (let i = 0; i < connections; i++) {
    const socket = secure
      ? tls.connect({ host, port, rejectUnauthorized: false })
      : net.connect({ host, port });
    socket.setNoDelay(true);
    let upgraded = false;
    let buffer = Buffer.alloc(0);
    let sentAt = 0n;
    const send = () => {
      sentAt = process.hrtime.bigint();
      socket.write(frame);
    };
    socket.on(secure ? "secureConnect" : "connect", () => {
      const key = crypto.randomBytes(16).toString("base64");
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\n` +
          `Sec-WebSocket-Version: 13\r\nOrigin: https://${host}:${port}\r\n\r\n`,
      );
    });
    socket.on("data", (data) => {
      buffer = buffer.length ? Buffer.concat([buffer, data]) : data;
      if (!upgraded) {
        const end = buffer.indexOf("\r\n\r\n");
        if (end < 0) return;
        const status = buffer.subarray(0, buffer.indexOf("\r\n")).toString();
        if (!/ 101 /.test(status)) {
          console.error(`no WebSocket upgrade: ${status}`);
          process.exit(1);
        }
        upgraded = true;
        buffer = buffer.subarray(end + 4);
        send();
      }
      for (;;) {
        const length = frameLength(buffer);
        if (length < 0 || buffer.length < length) break;
        buffer = buffer.subarray(length);
        const now = process.hrtime.bigint();
        latencies.push(Number(now - sentAt) / 1e6);
        if (now < deadline) {
          send();
        } else {
          socket.destroy();
          break;
        }
      }
    });
    socket.on("error", (err) => {
      console.error(`connection ${i}: ${err.message}`);
      process.exit(1);
    });
    socket.on("close", () => {
      if (--open === 0) report(latencies, started);
    });
  }
}

function maskedFrame(payload) {
  if (payload.length > 125) throw new Error("payloads up to 125 bytes");
  const mask = crypto.randomBytes(4);
  const out = Buffer.alloc(6 + payload.length);
  out[0] = 0x81; // FIN, text
  out[1] = 0x80 | payload.length;
  mask.copy(out, 2);
  for (let i = 0; i < payload.length; i++) out[6 + i] = payload[i] ^ mask[i % 4];
  return out;
}

// The whole length of the unmasked frame at the start of buf, or -1 if its header
// is incomplete.
function frameLength(buf) {
  if (buf.length < 2) return -1;
  const len = buf[1] & 0x7f;
  if (len < 126) return 2 + len;
  if (len === 126) return buf.length < 4 ? -1 : 4 + buf.readUInt16BE(2);
  return buf.length < 10 ? -1 : 10 + Number(buf.readBigUInt64BE(2));
}

function report(latencies, started) {
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  const n = latencies.length;
  console.log(
    JSON.stringify({
      rate: n / elapsed,
      p50_ms: n ? latencies[Math.floor(n / 2)] : 0,
      p99_ms: n ? latencies[Math.min(n - 1, Math.floor(n * 0.99))] : 0,
      count: n,
    }),
  );
}

main();

import { describe, expect, it } from "vitest";
import { highlight, initialLogs, logsReducer, parseLogLine, reduceLogs, searchLines } from "./logs";

const l = (line: string, pod = "p") => ({ pod, time: "t", line });

describe("logs reducer", () => {
  it("appends lines with increasing sequence numbers", () => {
    const s = logsReducer(logsReducer(initialLogs, { type: "lines", lines: [l("a"), l("b")] }), {
      type: "lines",
      lines: [l("c")],
    });
    expect(s.lines.map((x) => [x.seq, x.text])).toEqual([
      [0, "a"],
      [1, "b"],
      [2, "c"],
    ]);
  });

  it("keeps at most `max` lines and counts what it dropped", () => {
    let s = initialLogs;
    for (let i = 0; i < 5; i++) s = reduceLogs(s, { type: "lines", lines: [l(`l${i}`), l(`m${i}`)] }, 4);
    expect(s.lines.map((x) => x.text)).toEqual(["l3", "m3", "l4", "m4"]);
    expect(s.dropped).toBe(6);
  });

  it("clear keeps the sequence going and the pod list", () => {
    let s = logsReducer(initialLogs, { type: "pods", pods: ["p1"] });
    s = logsReducer(s, { type: "lines", lines: [l("a")] });
    s = logsReducer(s, { type: "clear" });
    expect(s.lines).toEqual([]);
    expect(s.pods).toEqual(["p1"]);
    s = logsReducer(s, { type: "lines", lines: [l("b")] });
    expect(s.lines[0]!.seq).toBe(1);
  });

  it("records the end and un-ends on resume", () => {
    let s = logsReducer(initialLogs, { type: "end", reason: "deleted" });
    expect(s.ended).toBe("deleted");
    s = logsReducer(s, { type: "resumed" });
    expect(s.ended).toBeNull();
  });

  it("keeps the last five notices", () => {
    let s = initialLogs;
    for (let i = 0; i < 7; i++) s = logsReducer(s, { type: "notice", message: `n${i}` });
    expect(s.notices).toEqual(["n2", "n3", "n4", "n5", "n6"]);
  });
});

describe("search", () => {
  const s = logsReducer(initialLogs, { type: "lines", lines: [l("Server started"), l("GET /healthz"), l("ERROR boom")] });
  it("finds lines case-insensitively", () => {
    expect(searchLines(s.lines, "error").map((x) => x.text)).toEqual(["ERROR boom"]);
    expect(searchLines(s.lines, "")).toHaveLength(3);
  });
  it("splits text around matches", () => {
    expect(highlight("a-ERR-b-err", "err")).toEqual([
      { text: "a-", match: false },
      { text: "ERR", match: true },
      { text: "-b-", match: false },
      { text: "err", match: true },
    ]);
    expect(highlight("abc", "")).toEqual([{ text: "abc", match: false }]);
  });
  it("parses /sse/logs payloads", () => {
    expect(parseLogLine({ pod: "p", time: "t", line: "x" })).toEqual({ pod: "p", time: "t", line: "x" });
    expect(parseLogLine({ pod: "p" })).toBeNull();
    expect(parseLogLine("x")).toBeNull();
  });
});

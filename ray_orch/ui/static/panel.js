"use strict";
// The task panel: what a task was asked and answered, its attempts, tool calls, tokens,
// cost, timings, decision and approval. Everything is text.

const panel = {};
(function () {
  const el = ui.el;

  function section(title, ...children) {
    return el("section", {class: "part"}, el("h3", {text: title}), ...children);
  }

  function pre(text, cls) {
    return el("pre", {class: cls || "text", text: text === null || text === undefined ? "" : String(text)});
  }

  function facts(pairs) {
    const dl = el("dl", {class: "facts"});
    for (const [key, value] of pairs) {
      if (value === null || value === undefined || value === "") continue;
      dl.append(el("dt", {text: key}), el("dd", {text: value}));
    }
    return dl;
  }

  function toolCalls(calls) {
    const table = el("table", {class: "calls"});
    table.append(el("tr", {}, ...["tool", "arguments", "ok", "result / error", "where", "time", "replayed"].map((h) => el("th", {text: h}))));
    for (const c of calls) {
      table.append(el("tr", {class: c.ok ? "ok" : "bad"},
        el("td", {text: c.name || c.tool || ""}),
        el("td", {}, pre(ui.json(c.arguments), "small")),
        el("td", {text: c.ok ? "yes" : "no"}),
        el("td", {}, pre(c.ok ? c.result : (c.error || c.result), "small")),
        el("td", {text: [c.where, c.node, c.pid].filter((v) => v !== null && v !== undefined).join(" ")}),
        el("td", {text: c.duration !== undefined ? ui.duration(c.duration) : ""}),
        el("td", {text: c.replayed ? "yes" : ""})));
    }
    return table;
  }

  function decision(value) {
    if (value === null || value === undefined) return null;
    if (typeof value !== "object") return facts([["route", value]]);
    const parts = [facts([["route", value.route || value.key || ""]])];
    if (value.scores) parts.push(pre(ui.json(value.scores), "small"));
    return el("div", {}, ...parts);
  }

  function output(out, label) {
    const meta = out.metadata || {};
    const known = new Set(["tool_calls", "decision", "approval", "execution_time", "tokens_used", "cost_usd", "retry_count", "model", "queue_s", "started_at"]);
    const rest = Object.fromEntries(Object.entries(meta).filter(([k]) => !known.has(k)));
    const parts = [
      facts([["agent", out.agent], ["model", meta.model], ["time", ui.duration(meta.execution_time)],
             ["queued", meta.queue_s !== undefined ? ui.duration(meta.queue_s) : null],
             ["started", ui.time(meta.started_at)], ["tokens", meta.tokens_used],
             ["cost (USD)", meta.cost_usd], ["retries", meta.retry_count]]),
      el("h4", {text: "Output (raw)"}), pre(out.raw, "text output-raw"),
    ];
    if (out.json_dict || out.pydantic) parts.push(el("h4", {text: "Output (structured)"}), pre(ui.json(out.json_dict || out.pydantic)));
    if (meta.decision !== undefined) parts.push(el("h4", {text: "Decision"}), decision(meta.decision));
    if (meta.approval) parts.push(el("h4", {text: "Approval"}), facts(Object.entries(meta.approval).map(([k, v]) => [k, typeof v === "object" ? ui.json(v) : (k === "at" ? ui.time(v) : v)])));
    if (meta.tool_calls && meta.tool_calls.length) parts.push(el("h4", {text: `Tool calls (${meta.tool_calls.length})`}), toolCalls(meta.tool_calls));
    if (out.iterations_count) {
      const list = el("ol", {class: "iterations", start: 0});
      for (const it of out.iterations) list.append(el("li", {text: ui.oneLine(it.raw, 160)}));
      parts.push(el("h4", {text: `Iterations (${out.iterations_count}${out.iterations_count > out.iterations.length ? ", first " + out.iterations.length + " shown" : ""})`}), list);
    }
    if (Object.keys(rest).length) parts.push(el("h4", {text: "More"}), pre(ui.json(rest), "small"));
    return section(label, ...parts);
  }

  panel.render = function (box, data, status) {
    ui.clear(box);
    box.append(el("h2", {}, el("span", {text: data.name}), " ", ui.stateBadge(status || "")));
    const d = data.definition;
    if (d) {
      box.append(section("Task",
        facts([["type", d.type], ["agent", d.agent], ["asks a person", d.human_input ? "yes" : null]]),
        el("h4", {text: "Description"}), pre(d.description),
        d.expected_output ? el("h4", {text: "Expected output"}) : null,
        d.expected_output ? pre(d.expected_output) : null,
        d.schema ? el("h4", {text: "Output schema"}) : null,
        d.schema ? pre(ui.json(d.schema), "small") : null));
    }
    box.append(section("Prompt as sent",
      data.prompt ? pre(ui.json(data.prompt)) : el("p", {class: "note", text: "This store does not keep the messages sent; the task's description and its context make the prompt."})));
    if (data.tokens) box.append(section("Live text", pre(data.tokens, "text live-text")));
    data.outputs.forEach((out, i) => box.append(output(out, data.outputs.length > 1 ? `Visit ${i + 1}` : "Result")));
    if (data.iterations && data.iterations_count) {
      const list = el("ol", {class: "iterations", start: 0});
      for (const it of data.iterations) list.append(el("li", {text: ui.oneLine(it.raw, 160)}));
      box.append(section(`Iterations done (${data.iterations_count})`, list));
    }
    if (data.events && data.events.length) {
      const list = el("ol", {class: "events"});
      for (const e of data.events) {
        list.append(el("li", {text: `${ui.time(e.ts)}  ${e.kind}${e.iteration !== undefined ? " #" + e.iteration : ""}${e.tool ? " " + e.tool + " " + ui.oneLine(ui.json(e.arguments), 80) : ""}${e.route ? " → " + e.route : ""}${e.error ? "  " + e.error : ""}`}));
      }
      box.append(section("Events", list));
    }
  };
})();

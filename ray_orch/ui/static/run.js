"use strict";
// The run page: the graph with each task's status (live, from server-sent events), the
// requests waiting for a person, Cancel / Resume, and the task panel.

(function () {
  const el = ui.el;
  const runId = ui.runId();
  const base = `/api/runs/${ui.enc(runId)}`;
  const $ = (id) => document.getElementById(id);
  let drawn = null, graphKey = "", latest = null, selected = null, framed = false;
  let panelVersion = -1, panelBusy = false, requestsKey = "";

  $("run-id").textContent = runId;
  document.title = `ray-orch run ${runId}`;

  function say(text) { $("message").textContent = text; }

  async function act(path, body, what) {
    try {
      await ui.post(`${base}${path}`, body);
      say(what);
      return true;
    } catch (error) {
      say(error.message);
      return false;
    }
  }

  $("cancel").addEventListener("click", async () => {
    $("cancel").disabled = true;
    await act("/cancel", {}, "cancelling…");
  });
  $("resume").addEventListener("click", async () => {
    $("resume").disabled = true;
    await act("/resume", {}, "resuming…");
  });

  function editorValue(request) {
    if (request.tool) return ui.json(request.arguments || {});
    const out = request.output || {};
    return out.json_dict ? ui.json(out.json_dict) : (out.raw || "");
  }

  function requestCard(request) {
    const card = el("div", {class: "request", "data-request": request.id});
    const error = el("p", {class: "error", role: "alert"});
    const answer = async (body, button) => {
      for (const b of card.querySelectorAll("button")) b.disabled = true;
      error.textContent = "";
      try {
        await ui.post(`${base}/requests/${ui.enc(request.id)}`, body);
        say(`${body.answer} sent for ${request.task}; the run continues`);
      } catch (e) {
        error.textContent = e.message;
        for (const b of card.querySelectorAll("button")) b.disabled = false;
      }
    };
    const what = request.tool ? `tool call ${request.tool}` : `output of task ${request.task}`;
    card.append(el("h3", {}, el("span", {text: what}), el("span", {class: "id", text: ` (request ${request.id})`})));
    if (request.tool) card.append(el("pre", {class: "text", text: ui.json(request.arguments)}));
    else card.append(el("pre", {class: "text output-raw", text: (request.output || {}).raw || ""}));
    if (request.schema) card.append(el("p", {class: "note", text: `An edit must fit the schema ${request.schema.title || ""} (JSON).`}));
    const approve = el("button", {type: "button", class: "approve", text: "Approve"});
    const edit = el("button", {type: "button", class: "edit", text: "Edit"});
    const reject = el("button", {type: "button", class: "reject", text: "Reject"});
    const editor = el("div", {class: "editor", hidden: true});
    const area = el("textarea", {rows: 6, "aria-label": "edited value"});
    area.value = editorValue(request);
    const saveEdit = el("button", {type: "button", class: "save-edit", text: "Save edit"});
    editor.append(area, saveEdit);
    const rejecter = el("div", {class: "editor", hidden: true});
    const reason = el("input", {type: "text", placeholder: "why (the model hears it)", "aria-label": "reason"});
    const sendReject = el("button", {type: "button", class: "send-reject", text: "Send rejection"});
    rejecter.append(reason, sendReject);
    approve.addEventListener("click", () => answer({answer: "approve"}));
    edit.addEventListener("click", () => { editor.hidden = !editor.hidden; rejecter.hidden = true; });
    reject.addEventListener("click", () => { rejecter.hidden = !rejecter.hidden; editor.hidden = true; });
    saveEdit.addEventListener("click", () => answer({answer: "edit", value: area.value}));
    sendReject.addEventListener("click", () => answer({answer: "reject", reason: reason.value}));
    card.append(el("div", {class: "buttons"}, approve, edit, reject), editor, rejecter, error);
    return card;
  }

  function renderRequests(snap) {
    const key = snap.state + "|" + snap.pending.map((r) => r.id).join(",");
    if (key === requestsKey) return;  // keep what a person is typing
    requestsKey = key;
    const box = $("requests");
    ui.clear(box);
    const open = snap.state === "paused" ? snap.pending : [];
    for (const request of open) box.append(requestCard(request));
    $("approvals").hidden = open.length === 0;
  }

  function renderSummary(snap) {
    $("workflow").textContent = snap.workflow;
    const badge = $("state");
    badge.textContent = snap.state;
    badge.className = `state state-${snap.state}`;
    document.body.dataset.state = snap.state;
    const tasks = Object.values(snap.tasks);
    const done = tasks.filter((t) => t.status === "completed").length;
    const end = snap.ended || Date.now() / 1000;
    const cost = tasks.reduce((s, t) => s + (t.cost || 0), 0);
    const tokens = tasks.reduce((s, t) => s + (t.tokens || 0), 0);
    $("facts").textContent = `started ${ui.time(snap.started)} · ${ui.duration(end - snap.started)} · ` +
      `tasks ${done}/${tasks.length}` + (tokens ? ` · ${tokens} tokens` : "") +
      (cost ? ` · $${cost.toFixed(4)}` : "") + (snap.error ? ` · ${ui.oneLine(snap.error, 200)}` : "");
    $("cancel").hidden = !snap.actions.cancel;
    $("cancel").disabled = false;
    $("resume").hidden = !snap.actions.resume;
    $("resume").disabled = false;
    $("graph-note").hidden = snap.graph.known;
  }

  function renderEvents(snap) {
    const list = ui.clear($("events"));
    for (const e of snap.events.slice(-30).reverse()) {
      list.append(el("li", {text: `${ui.time(e.ts)}  ${e.kind}${e.task ? " " + e.task : ""}${e.iteration !== undefined ? " #" + e.iteration : ""}${e.route ? " → " + e.route : ""}${e.error ? "  " + ui.oneLine(e.error, 120) : ""}`}));
    }
  }

  async function showTask(name, force) {
    const t = latest && latest.tasks[name];
    const version = t ? t.version + ":" + t.status : "";
    if (!force && (panelBusy || version === panelVersion)) return;
    panelBusy = true;
    panelVersion = version;
    try {
      const data = await ui.get(`${base}/tasks/${ui.enc(name)}`);
      if (selected === name) panel.render($("panel"), data, t ? t.status : "");
    } catch (error) {
      ui.clear($("panel")).append(el("p", {class: "error", text: error.message}));
    } finally {
      panelBusy = false;
    }
  }

  function select(name) {
    selected = name;
    if (drawn && latest) graphView.update(drawn, latest, selected);
    showTask(name, true);
  }

  // At most one render per animation frame, whatever the rate of updates.
  function render() {
    framed = false;
    const snap = latest;
    const key = JSON.stringify([snap.graph.nodes.map((n) => n.id), snap.graph.edges.length]);
    if (key !== graphKey) {
      drawn = graphView.draw($("graph"), snap.graph, select);
      graphKey = key;
    }
    graphView.update(drawn, snap, selected);
    renderSummary(snap);
    renderRequests(snap);
    renderEvents(snap);
    if (selected) showTask(selected, false);
    document.body.dataset.ready = "1";
  }

  function accept(snap) {
    latest = snap;
    if (!framed) {
      framed = true;
      requestAnimationFrame(render);
    }
  }

  async function start() {
    try {
      accept(await ui.get(base));
    } catch (error) {
      say(error.message.startsWith("404") ? `no run ${runId}` : error.message);
      return;
    }
    const events = new EventSource(`${base}/events`);
    events.onmessage = (message) => accept(JSON.parse(message.data));
  }
  start();
})();

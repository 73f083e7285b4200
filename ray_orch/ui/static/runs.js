"use strict";
// The runs page: every run, newest first, refreshed every two seconds.

(function () {
  const body = document.querySelector("#runs tbody");
  const filter = document.getElementById("state-filter");
  const message = document.getElementById("message");
  const empty = document.getElementById("empty");
  const params = new URLSearchParams(location.search);
  if (params.get("state")) filter.value = params.get("state");

  async function approve(run, request, button) {
    button.disabled = true;
    try {
      await ui.post(`/api/runs/${ui.enc(run)}/requests/${ui.enc(request)}`, {answer: "approve"});
      message.textContent = `approved ${request}; run ${run} continues`;
    } catch (error) {
      message.textContent = error.message;
      button.disabled = false;
    }
    refresh();
  }

  function pendingCell(row) {
    const cell = ui.el("td", {class: "pending"});
    if (!row.pending) return cell;
    cell.append(ui.el("span", {class: "count", text: `${row.pending} waiting`}));
    for (const request of row.requests || []) {
      const button = ui.el("button", {type: "button", "data-request": request.id, text: "Approve"});
      button.addEventListener("click", () => approve(row.run_id, request.id, button));
      cell.append(ui.el("div", {class: "request"},
        ui.el("span", {class: "task", text: request.task}), " ",
        ui.el("span", {class: "preview", text: ui.oneLine(request.preview, 60)}), " ", button));
    }
    return cell;
  }

  function render(rows) {
    ui.clear(body);
    const now = Date.now() / 1000;
    for (const row of rows) {
      const link = ui.el("a", {href: `/runs/${ui.enc(row.run_id)}`, text: row.run_id});
      const ended = row.ended || (row.state === "running" ? now : null);
      const tasks = row.total === null ? `${row.done}` : `${row.done}/${row.total}`;
      body.append(ui.el("tr", {"data-run": row.run_id, "data-state": row.state},
        ui.el("td", {}, link, row.live ? ui.el("span", {class: "live", text: " live"}) : null),
        ui.el("td", {text: row.workflow}),
        ui.el("td", {}, ui.stateBadge(row.state)),
        ui.el("td", {text: ui.time(row.started)}),
        ui.el("td", {text: ended ? ui.duration(ended - row.started) : ""}),
        ui.el("td", {class: "num", text: tasks}),
        pendingCell(row)));
    }
    empty.hidden = rows.length > 0;
  }

  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const state = filter.value;
      render(await ui.get(`/api/runs${state ? "?state=" + ui.enc(state) : ""}`));
      document.body.dataset.ready = "1";
    } catch (error) {
      message.textContent = error.message;
    } finally {
      busy = false;
    }
  }

  filter.addEventListener("change", () => {
    const url = new URL(location.href);
    if (filter.value) url.searchParams.set("state", filter.value);
    else url.searchParams.delete("state");
    history.replaceState(null, "", url);
    refresh();
  });
  refresh();
  setInterval(refresh, 2000);
})();

"use strict";
// The workflow graph as SVG: a layered layout of the graph the server sends (the same
// nodes and edges as the Mermaid and PNG pictures), nodes coloured by status, the edges
// the run followed highlighted. Labels are SVG text nodes (textContent).

const graphView = {};
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 168, H = 50, GX = 36, GY = 64, PAD = 24;

  function svg(tag, attrs) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    }
    return node;
  }

  // Layers by longest path over forward edges (an edge back up the order is a loop).
  function layout(graph) {
    const index = new Map(graph.nodes.map((n, i) => [n.id, i]));
    const layer = new Map(graph.nodes.map((n) => [n.id, 0]));
    const parents = new Map(graph.nodes.map((n) => [n.id, []]));
    for (const e of graph.edges) {
      if (!index.has(e.src) || !index.has(e.dst)) continue;
      if (index.get(e.src) < index.get(e.dst)) parents.get(e.dst).push(e.src);
    }
    for (const n of graph.nodes) {
      for (const p of parents.get(n.id)) layer.set(n.id, Math.max(layer.get(n.id), layer.get(p) + 1));
    }
    const rows = [];
    for (const n of graph.nodes) {
      const l = layer.get(n.id);
      (rows[l] = rows[l] || []).push(n.id);
    }
    const x = new Map();
    let widest = 0;
    rows.forEach((row, l) => {
      if (l > 0) {  // one pass of barycentres keeps children under their parents
        const centre = (id) => {
          const ps = parents.get(id);
          return ps.length ? ps.reduce((s, p) => s + x.get(p), 0) / ps.length : 1e9;
        };
        row.sort((a, b) => centre(a) - centre(b) || index.get(a) - index.get(b));
      }
      row.forEach((id, i) => x.set(id, i));
      widest = Math.max(widest, row.length);
    });
    const pos = new Map();
    rows.forEach((row, l) => {
      const offset = (widest - row.length) * (W + GX) / 2;
      row.forEach((id, i) => pos.set(id, {x: PAD + offset + i * (W + GX), y: PAD + l * (H + GY)}));
    });
    return {pos, width: PAD * 2 + widest * (W + GX) - GX, height: PAD * 2 + rows.length * (H + GY) - GY, index};
  }

  function shape(node, p) {
    if (node.type === "decision") {
      const cx = p.x + W / 2, cy = p.y + H / 2;
      return svg("polygon", {points: `${p.x},${cy} ${cx},${p.y - 6} ${p.x + W},${cy} ${cx},${p.y + H + 6}`, class: "shape"});
    }
    return svg("rect", {x: p.x, y: p.y, width: W, height: H, rx: node.type === "loop" ? 2 : 8, class: "shape"});
  }

  function edgePath(a, b, back) {
    const x1 = a.x + W / 2, y1 = a.y + H, x2 = b.x + W / 2, y2 = b.y;
    if (back) {  // around the right side, upwards
      const side = Math.max(a.x, b.x) + W + 24;
      return `M${a.x + W},${a.y + H / 2} C${side},${a.y + H / 2} ${side},${b.y + H / 2} ${b.x + W},${b.y + H / 2}`;
    }
    const my = (y1 + y2) / 2;
    return `M${x1},${y1} C${x1},${my} ${x2},${my} ${x2},${y2 - 4}`;
  }

  // Draw the graph into `box`; returns an object that updates statuses in place.
  graphView.draw = function (box, graph, onSelect) {
    while (box.firstChild) box.removeChild(box.firstChild);
    const {pos, width, height, index} = layout(graph);
    const root = svg("svg", {width: width + 40, height, viewBox: `0 0 ${width + 40} ${height}`, role: "img", "aria-label": "workflow graph"});
    const defs = svg("defs");
    const marker = svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse"});
    marker.append(svg("path", {d: "M0,0 L10,5 L0,10 z", class: "arrow"}));
    defs.append(marker);
    root.append(defs);
    const edges = [];
    for (const e of graph.edges) {
      const a = pos.get(e.src), b = pos.get(e.dst);
      if (!a || !b) continue;
      const back = index.get(e.src) >= index.get(e.dst);
      const group = svg("g", {class: `edge edge-${e.kind}`});
      group.append(svg("path", {d: edgePath(a, b, back), "marker-end": "url(#arrow)"}));
      if (e.label) {
        const t = svg("text", {x: (a.x + b.x) / 2 + W / 2 + 4, y: (a.y + H + b.y) / 2, class: "edge-label"});
        t.textContent = e.label;
        group.append(t);
      }
      root.append(group);
      edges.push({edge: e, group});
    }
    const nodes = new Map();
    for (const n of graph.nodes) {
      const p = pos.get(n.id);
      const group = svg("g", {class: "node status-pending", "data-task": n.id, "data-status": "pending", tabindex: 0});
      const title = svg("title");
      title.textContent = n.description ? `${n.id}: ${n.description}` : n.id;
      group.append(title, shape(n, p));
      const name = svg("text", {x: p.x + W / 2, y: p.y + 20, class: "name"});
      name.textContent = n.id.length > 22 ? n.id.slice(0, 21) + "…" : n.id;
      const line = svg("text", {x: p.x + W / 2, y: p.y + 38, class: "line"});
      line.textContent = n.note || n.role || n.type;
      group.append(name, line);
      group.addEventListener("click", () => onSelect(n.id));
      group.addEventListener("keydown", (ev) => { if (ev.key === "Enter") onSelect(n.id); });
      root.append(group);
      nodes.set(n.id, {group, line, node: n});
    }
    box.append(root);
    return {nodes, edges};
  };

  function taken(edge, statuses, routes) {
    const ran = (s) => s === "completed" || s === "failed" || s === "running" || s === "paused";
    if (edge.kind === "route") return routes.has(`${edge.src}\u0000${edge.key || ""}`);
    if (edge.kind === "failure") return statuses[edge.src] === "failed" && ran(statuses[edge.dst]);
    return statuses[edge.src] === "completed" && ran(statuses[edge.dst]);
  }

  // Statuses and the path taken, applied to a drawn graph.
  graphView.update = function (drawn, snapshot, selected) {
    const statuses = {};
    for (const [name, t] of Object.entries(snapshot.tasks)) statuses[name] = t.status;
    const routes = new Set(snapshot.routes.map(([task, route]) => `${task}\u0000${route}`));
    for (const [name, item] of drawn.nodes) {
      const t = snapshot.tasks[name] || {status: "pending"};
      const cls = `node status-${t.status}${name === selected ? " selected" : ""}`;
      if (item.group.getAttribute("class") !== cls) item.group.setAttribute("class", cls);
      if (item.group.dataset.status !== t.status) item.group.dataset.status = t.status;
      let text = t.status;
      if (t.iterations !== null && t.iterations !== undefined) text += ` · ${t.iterations} items`;
      if (t.seconds !== null && t.seconds !== undefined) text += ` · ${ui.duration(t.seconds)}`;
      if (item.line.textContent !== text) item.line.textContent = text;
    }
    for (const {edge, group} of drawn.edges) {
      const followed = taken(edge, statuses, routes);
      const faded = !followed && edge.kind === "route" && statuses[edge.src] === "completed";
      const cls = `edge edge-${edge.kind}${followed ? " taken" : ""}${faded ? " faded" : ""}`;
      if (group.getAttribute("class") !== cls) group.setAttribute("class", cls);
    }
  };
})();

"use strict";
// Shared helpers of the viewer's pages. Everything a run holds is put in the page as
// text (textContent), never as markup.

const ui = {};

// An element with attributes and children (strings become text nodes).
ui.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
};

ui.clear = function (node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
};

ui.get = async function (path) {
  const response = await fetch(path, {credentials: "same-origin"});
  if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
  return response.json();
};

ui.post = async function (path, body) {
  const response = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify(body || {}),
  });
  let data = {};
  try { data = await response.json(); } catch (e) { data = {error: response.statusText}; }
  if (!response.ok) {
    const error = new Error(data.error || response.statusText);
    error.data = data;
    throw error;
  }
  return data;
};

ui.time = function (ts) {
  if (!ts) return "";
  const d = new Date(ts * 1000);
  return d.toLocaleString(undefined, {hour12: false});
};

ui.duration = function (seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
};

ui.oneLine = function (text, width) {
  const flat = String(text === null || text === undefined ? "" : text).split(/\s+/).join(" ").trim();
  return flat.length <= width ? flat : flat.slice(0, width - 1) + "…";
};

ui.json = function (value) {
  try { return JSON.stringify(value, null, 2); } catch (e) { return String(value); }
};

ui.stateBadge = function (state) {
  return ui.el("span", {class: `state state-${state}`, text: state});
};

ui.runId = function () {
  const parts = location.pathname.split("/");
  return decodeURIComponent(parts[parts.length - 1]);
};

ui.enc = encodeURIComponent;

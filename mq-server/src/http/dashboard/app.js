// The mq dashboard: reads the JSON API every second and draws what it finds. No libraries,
// nothing fetched from elsewhere.
"use strict";

const HISTORY = 300; // one sample per second: the last five minutes
const state = { last: null, history: [], selected: null };

// On a server with credentials the browser asked for them when the page loaded (HTTP
// Basic, the token as the password) and sends them with these requests too.
async function api(path) {
  const reply = await fetch(path);
  if (reply.status === 401 || reply.status === 403) {
    throw new Error((await reply.text()).trim());
  }
  if (!reply.ok) throw new Error(path + ": " + reply.status);
  return reply.json();
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function duration(ms) {
  let s = Math.floor(ms / 1000);
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (s >= size) { parts.push(Math.floor(s / size) + unit); s %= size; }
  }
  parts.push(s + "s");
  return parts.join(" ");
}

function rate(now, before, seconds) {
  if (before === undefined || seconds <= 0) return 0;
  return Math.max(0, (now - before) / seconds);
}

function fill(id, pairs) {
  const dl = document.getElementById(id);
  dl.replaceChildren();
  for (const [k, v] of pairs) { dl.append(el("dt", k), el("dd", String(v))); }
}

function rows(id, list, make) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...list.map(make));
}

function drawChart() {
  const canvas = document.getElementById("chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const peak = Math.max(1, ...state.history.map(p => Math.max(p.in, p.out)));
  ctx.fillStyle = "#5b6473";
  ctx.font = "11px sans-serif";
  ctx.fillText(Math.round(peak) + "/s", 4, 12);
  for (const [key, color] of [["in", "#2f6fde"], ["out", "#d9822b"]]) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    state.history.forEach((p, i) => {
      const x = w - (state.history.length - 1 - i) * (w / HISTORY);
      const y = h - 4 - (p[key] / peak) * (h - 20);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

async function showGroup(topic, group) {
  state.selected = { topic, group };
  const report = await api("/api/v1/topics/" + encodeURIComponent(topic) + "/groups/" + encodeURIComponent(group));
  document.getElementById("group-detail").hidden = false;
  document.getElementById("detail-name").textContent = topic + " / " + group;
  document.getElementById("diagnosis").textContent = report.diagnosis;
  const now = Date.now();
  rows("consumers", report.group.consumers, c => {
    const conn = report.connections.find(k => k.consumer === c.id) || {};
    const oldest = c.oldest_unacked && c.oldest_unacked[0];
    const tr = el("tr");
    tr.append(el("td", c.id), el("td", conn.connection ?? "-"), el("td", conn.peer ?? "-"),
      el("td", conn.client ?? "-"), el("td", c.prefetch), el("td", c.in_flight),
      el("td", oldest ? oldest.offset + " (" + duration(now - oldest.since) + " ago)" : "-"));
    return tr;
  });
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [stats, topics, settings] = await Promise.all([
      api("/api/v1/stats"), api("/api/v1/topics"), api("/api/v1/settings"),
    ]);
    const now = Date.now();
    const seconds = state.last ? (now - state.last.at) / 1000 : 0;
    const before = state.last || { topics: {}, groups: {}, in: undefined, out: undefined };
    const sample = { at: now, topics: {}, groups: {}, in: stats.messages_in, out: stats.messages_out };
    document.getElementById("server").textContent = settings.server;
    document.getElementById("uptime").textContent = "up " + duration(stats.uptime_ms);
    fill("broker", [
      ["connections", stats.connections], ["topics", stats.topics],
      ["messages in", stats.messages_in], ["messages out", stats.messages_out],
      ["memory", bytes(stats.memory_bytes) + (stats.memory_limit ? " of " + bytes(stats.memory_limit) : "")],
    ]);
    const groups = [];
    rows("topics", topics, t => {
      sample.topics[t.topic] = t.published;
      const tr = el("tr");
      tr.dataset.topic = t.topic;
      tr.append(el("td", t.topic), el("td", rate(t.published, before.topics[t.topic], seconds).toFixed(0), "rate-in"),
        el("td", t.retained), el("td", bytes(t.retained_bytes)),
        el("td", t.first_offset + "–" + t.next_offset + " (next)"));
      for (const g of t.groups) groups.push([t.topic, g]);
      return tr;
    });
    rows("groups", groups, ([topic, g]) => {
      const key = topic + "/" + g.name;
      sample.groups[key] = g.delivered;
      const tr = el("tr", undefined, "clickable");
      tr.dataset.group = key;
      tr.append(el("td", topic), el("td", g.name),
        el("td", rate(g.delivered, before.groups[key], seconds).toFixed(0), "rate-out"),
        el("td", g.lag), el("td", g.pending), el("td", g.in_flight), el("td", g.consumers));
      tr.addEventListener("click", () => showGroup(topic, g.name));
      return tr;
    });
    fill("settings", Object.entries(settings).filter(([k]) => k !== "server")
      .map(([k, v]) => [k.replaceAll("_", " "), v === null ? "none" : v]));
    if (state.last) {
      state.history.push({ in: rate(sample.in, before.in, seconds), out: rate(sample.out, before.out, seconds) });
      if (state.history.length > HISTORY) state.history.shift();
    }
    state.last = sample;
    drawChart();
    if (state.selected) await showGroup(state.selected.topic, state.selected.group);
    status.textContent = "live";
    status.className = "status";
  } catch (e) {
    status.textContent = e.message;
    status.className = "status error";
  }
}

const wanted = new URLSearchParams(location.search).get("group");
if (wanted && wanted.includes("/")) {
  const [topic, group] = wanted.split("/");
  state.selected = { topic, group };
}
refresh();
setInterval(refresh, 1000);

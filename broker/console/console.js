// The Sluice web console: plain JavaScript, no dependencies, served by the broker at /.
// Every value from the broker goes into the page as text (textContent), never as HTML, so
// topic names, keys and values cannot inject markup. Binary keys and values (the admin API
// sends them as base64) are shown as a hex dump.
"use strict";

const HISTORY = 120;          // chart points kept (one per poll)
const POLL_MS = 1000;         // /v1/stats poll interval
const stats = { last: null, history: [], topicRates: new Map() };

// el("td", {class: "num"}, "text", childNode, ...): strings become text nodes.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// Replaces the children of `parent`, skipping null and undefined (replaceChildren would
// print them).
function show(parent, ...children) {
  parent.replaceChildren(...children.flat().filter(c => c !== null && c !== undefined));
}

async function api(path) {
  const r = await fetch(path, { cache: "no-store" });
  let body = null;
  try { body = await r.json(); } catch (e) { body = { error: "not JSON (" + r.status + ")" }; }
  if (!r.ok) throw new Error(path + ": " + (body && body.error ? body.error : r.status));
  return body;
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}
function fmtRate(n) {
  if (!isFinite(n)) return "–";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + "k";
  return n.toFixed(n < 10 && n > 0 ? 1 : 0);
}
function ids(list) { return list === null || list === undefined ? "–" : "[" + list.join(", ") + "]"; }

function table(id, headers, rows) {
  const head = el("tr", {}, headers.map(h =>
    el("th", { class: h.endsWith("#") ? "num" : "" }, h.replace(/#$/, ""))));
  return el("table", { id }, el("thead", {}, head), el("tbody", {}, rows));
}
function td(v, cls) { return el("td", { class: cls }, v); }
function num(v) { return td(v === null || v === undefined ? "–" : v, "num"); }

// A key or value: {"size", "text"|"base64", "truncated"} or null.
function bytesCell(b, cls) {
  if (b === null || b === undefined) return el("td", { class: cls }, el("span", { class: "muted" }, "null"));
  const cell = el("td", { class: cls, "data-size": String(b.size) });
  if (b.text !== undefined) {
    cell.append(el("pre", { class: "bytes text" }, b.text));
  } else {
    const raw = atob(b.base64);
    const lines = [];
    for (let i = 0; i < raw.length && i < 512; i += 16) {
      const chunk = raw.slice(i, i + 16);
      const hex = Array.from(chunk, c => c.charCodeAt(0).toString(16).padStart(2, "0")).join(" ");
      const ascii = Array.from(chunk, c => (c >= " " && c <= "~") ? c : ".").join("");
      lines.push(i.toString(16).padStart(4, "0") + "  " + hex.padEnd(48) + "  " + ascii);
    }
    cell.append(el("span", { class: "tag" }, "binary · " + b.size + " bytes"),
                el("pre", { class: "bytes hex" }, lines.join("\n")));
  }
  if (b.truncated) cell.append(el("span", { class: "tag" }, "first " + fmtBytes(4096) + " shown"));
  return cell;
}

// ---- live stats (shared by the overview's charts and rate table) ----

async function poll() {
  try {
    const s = await api("/v1/stats");
    const prev = stats.last;
    if (prev && s.time_ms > prev.time_ms) {
      const dt = (s.time_ms - prev.time_ms) / 1000;
      const before = new Map(prev.topics.map(t => [t.name, t]));
      const sum = { t: s.time_ms, recIn: 0, recOut: 0, bytesIn: 0, bytesOut: 0 };
      for (const t of s.topics) {
        const p = before.get(t.name) || t;
        const r = {
          recIn: Math.max(0, t.records_in - p.records_in) / dt,
          recOut: Math.max(0, t.records_out - p.records_out) / dt,
          bytesIn: Math.max(0, t.bytes_in - p.bytes_in) / dt,
          bytesOut: Math.max(0, t.bytes_out - p.bytes_out) / dt,
        };
        stats.topicRates.set(t.name, r);
        for (const k of Object.keys(r)) sum[k] += r[k];
      }
      stats.history.push(sum);
      if (stats.history.length > HISTORY) stats.history.shift();
    }
    stats.last = s;
    if (current === "overview") drawLive();
  } catch (e) {
    // The next poll tries again; the overview shows the error.
    const box = document.getElementById("live-error");
    if (box) box.textContent = String(e.message || e);
  }
}

function drawChart(canvas, series) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 52, bottom = 18, top = 8;
  ctx.clearRect(0, 0, w, h);
  let max = 1;
  for (const s of series) for (const p of stats.history) max = Math.max(max, p[s.key]);
  ctx.strokeStyle = "#dde1ea"; ctx.fillStyle = "#6b7385"; ctx.font = "11px sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = top + (h - top - bottom) * i / 4;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w - 4, y); ctx.stroke();
    ctx.fillText(fmtRate(max * (4 - i) / 4), 4, y + 4);
  }
  ctx.fillText("last " + HISTORY + " s", left, h - 4);
  const n = stats.history.length;
  for (const s of series) {
    ctx.strokeStyle = s.color; ctx.lineWidth = 2; ctx.beginPath();
    stats.history.forEach((p, i) => {
      const x = left + (w - 4 - left) * (HISTORY - n + i) / (HISTORY - 1);
      const y = top + (h - top - bottom) * (1 - p[s.key] / max);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
  ctx.lineWidth = 1;
}

function chartBox(id, title, series) {
  const canvas = el("canvas", { id, width: 520, height: 180 });
  const legend = el("div", { class: "legend" }, series.map(s =>
    el("span", {}, el("span", { class: "swatch", style: "background:" + s.color }), s.label)));
  return el("div", { class: "chart" }, el("div", { class: "title" }, title), canvas, legend);
}

const RECORD_SERIES = [{ key: "recIn", label: "produced records/s", color: "#1565c0" },
                       { key: "recOut", label: "fetched records/s", color: "#ef6c00" }];
const BYTE_SERIES = [{ key: "bytesIn", label: "produced bytes/s", color: "#2e7d32" },
                     { key: "bytesOut", label: "fetched bytes/s", color: "#8e24aa" }];

function drawLive() {
  const a = document.getElementById("chart-records"), b = document.getElementById("chart-bytes");
  if (a) drawChart(a, RECORD_SERIES);
  if (b) drawChart(b, BYTE_SERIES);
  const body = document.querySelector("#rates tbody");
  if (body && stats.last) {
    body.replaceChildren(...stats.last.topics.map(t => {
      const r = stats.topicRates.get(t.name) || {};
      return el("tr", { "data-topic": t.name }, td(el("a", { href: topicHref(t.name) }, t.name)),
                num(fmtRate(r.recIn)), num(fmtRate(r.recOut)), num(fmtBytes(Math.round(r.bytesIn || 0)) + "/s"),
                num(fmtBytes(Math.round(r.bytesOut || 0)) + "/s"), num(t.records_in), num(t.records_out));
    }));
  }
}

// ---- pages ----

function topicHref(name) { return "#/topic/" + encodeURIComponent(name); }
let current = "";

async function overview(view) {
  const [health, version, brokers, topics, groups] = await Promise.all([
    fetch("/v1/health").then(r => r.json()), api("/v1/version"), api("/v1/brokers"),
    api("/v1/topics"), api("/v1/groups")]);
  const card = (label, value, id, cls) => el("div", { class: "card" },
    el("div", { class: "label" }, label), el("div", { class: "value " + (cls || ""), id }, value));
  const lag = groups.groups.reduce((a, g) => a + g.lag, 0);
  show(view,
    el("h1", {}, "Cluster overview"),
    el("div", { class: "cards" },
      card("Health", health.ready ? "ready" : "not ready", "health", health.ready ? "ok" : "bad"),
      card("Brokers", brokers.brokers.length, "broker-count"),
      card("Controller leader", brokers.controller_leader, "controller"),
      card("Topics", topics.topics.filter(t => !t.internal).length, "topic-count"),
      card("Partitions", topics.topics.filter(t => !t.internal).reduce((a, t) => a + t.partitions, 0), "partition-count"),
      card("Consumer groups", groups.groups.length, "group-count"),
      card("Total group lag", lag, "total-lag")),
    health.ready ? null : el("p", { class: "bad" }, "Not ready: " + health.reasons.join("; ")),
    el("h2", {}, "Throughput (live, from the counters /metrics serves)"),
    el("div", { class: "charts" }, chartBox("chart-records", "Records per second", RECORD_SERIES),
       chartBox("chart-bytes", "Bytes per second", BYTE_SERIES)),
    el("p", { id: "live-error", class: "bad" }),
    table("rates", ["Topic", "Produced/s#", "Fetched/s#", "In#", "Out#", "Records in#", "Records out#"], []),
    el("h2", {}, "Brokers"),
    table("brokers", ["Id", "Address", "Rack", "Fenced", "Controller voter"], brokers.brokers.map(b =>
      el("tr", { "data-broker": String(b.id) }, num(b.id), td(b.address), td(b.rack || "–"),
         td(b.fenced ? "fenced" : "no", b.fenced ? "bad" : ""), td(b.voter ? "yes" : "no")))),
    el("p", { class: "muted" }, "Cluster " + brokers.cluster_id + " · sluiced " + version.version));
  drawLive();
}

async function topicsPage(view) {
  const [topics, live] = await Promise.all([api("/v1/topics"), api("/v1/stats")]);
  const local = new Map(live.topics.map(t => [t.name, t]));
  show(view, el("h1", {}, "Topics"),
    table("topics", ["Name", "Partitions#", "Replication#", "Without leader#", "Size here#", "Records in#"],
      topics.topics.map(t => {
        const l = local.get(t.name);
        return el("tr", { "data-topic": t.name },
          td([el("a", { href: topicHref(t.name) }, t.name), t.internal ? el("span", { class: "tag" }, "internal") : null]),
          num(t.partitions), num(t.replication_factor),
          el("td", { class: "num " + (t.partitions_without_leader ? "bad" : "") }, t.partitions_without_leader),
          num(l ? fmtBytes(l.local_size_bytes) : "–"), num(l ? l.records_in : "–"));
      })));
}

async function topicPage(view, name) {
  const t = await api("/v1/topics/" + encodeURIComponent(name));
  show(view,
    el("h1", {}, "Topic ", el("span", { id: "topic-name" }, t.name)),
    el("p", { class: "muted" }, t.partitions + " partitions, replication factor " + t.replication_factor +
       ". Offsets and sizes are this broker's replica's; the ISR is known where the leader is."),
    table("partitions", ["Partition#", "Leader#", "Replicas", "ISR", "Log start#", "High watermark#",
                         "Log end#", "Size#", "Segments#", "Messages"],
      t.partition_list.map(p => {
        const l = p.local || {};
        return el("tr", { "data-partition": String(p.partition) },
          num(p.partition), num(p.leader), td(ids(p.replicas)), td(ids(p.isr)),
          num(l.log_start_offset), num(l.high_watermark), num(l.log_end_offset),
          num(p.local ? fmtBytes(l.size_bytes) : "–"), num(l.segments),
          td(p.local ? el("a", { href: topicHref(t.name) + "/partition/" + p.partition }, "last records")
                     : el("span", { class: "muted" }, "no replica here")));
      })),
    el("h2", {}, "Configs"),
    table("configs", ["Name", "Value"], Object.entries(t.configs).map(([k, v]) =>
      el("tr", {}, td(k), td(v)))));
}

async function recordsPage(view, name, partition, limit) {
  const r = await api("/v1/topics/" + encodeURIComponent(name) + "/partitions/" + partition +
                      "/records?limit=" + limit);
  const form = el("form", { class: "inline" }, "Show the last ",
    el("input", { id: "limit", type: "number", min: 1, max: 1000, value: limit, style: "width:6em" }),
    " records ", el("button", { type: "submit" }, "Reload"));
  form.onsubmit = (e) => {
    e.preventDefault();
    location.hash = topicHref(name) + "/partition/" + partition + "?limit=" + document.getElementById("limit").value;
  };
  show(view,
    el("h1", {}, el("a", { href: topicHref(name) }, name), " · partition " + partition),
    el("p", { class: "muted" }, "Offsets " + r.log_start_offset + " to " + (r.high_watermark - 1) +
       " committed (on broker " + r.broker + "); newest last."),
    form,
    r.error ? el("p", { class: "bad" }, "Stopped reading: " + r.error) : null,
    table("records", ["Offset#", "Timestamp", "Key", "Value", "Headers"], r.records.map(rec =>
      el("tr", { "data-offset": String(rec.offset) }, num(rec.offset),
         td(new Date(rec.timestamp).toISOString()), bytesCell(rec.key, "key"), bytesCell(rec.value, "value"),
         td(rec.headers.map(h => el("div", {}, el("span", { class: "tag" }, h.key),
            h.value === null ? "null" : (h.value.text !== undefined ? h.value.text : "binary · " + h.value.size + " bytes"))))))),
    r.records.length ? null : el("p", { class: "muted", id: "no-records" }, "No committed records."));
}

async function groupsPage(view) {
  const g = await api("/v1/groups");
  const rows = [];
  for (const grp of g.groups) {
    rows.push(el("tr", { "data-group": grp.group, class: "group" }, td(grp.group), td(grp.state),
      num(grp.members), num(grp.generation), num(grp.lag)));
    for (const o of grp.offsets) {
      rows.push(el("tr", { "data-group": grp.group, "data-topic": o.topic, "data-partition": String(o.partition), class: "offset" },
        td(""), td(el("span", { class: "muted" }, o.topic + " / " + o.partition)),
        num(""), num("committed " + o.committed),
        num(o.lag === null ? "? (no replica here)" : o.lag)));
    }
  }
  show(view, el("h1", {}, "Consumer groups"),
    table("groups", ["Group", "State", "Members#", "Generation#", "Lag (records)#"], rows),
    g.groups.length ? null : el("p", { class: "muted" }, "No consumer groups."));
}

async function route() {
  const view = document.getElementById("view");
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  current = parts[0] || "overview";
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("active", a.id === "nav-" + (current === "topic" ? "topics" : current));
  }
  try {
    if (current === "overview") await overview(view);
    else if (current === "topics") await topicsPage(view);
    else if (current === "topic" && parts.length === 2) await topicPage(view, parts[1]);
    else if (current === "topic" && parts[2] === "partition") {
      await recordsPage(view, parts[1], parseInt(parts[3], 10), parseInt(params.get("limit") || "20", 10));
    } else if (current === "groups") await groupsPage(view);
    else show(view, el("p", { class: "bad" }, "No page " + hash));
    view.setAttribute("data-loaded", hash);
  } catch (e) {
    show(view, el("p", { class: "bad", id: "error" }, String(e.message || e)));
    view.setAttribute("data-loaded", hash);
  }
}

window.addEventListener("hashchange", route);
api("/v1/version").then(v => {
  document.getElementById("node").textContent = "broker " + v.node_id + " · sluiced " + v.version;
}).catch(() => {});
route();
poll();
setInterval(poll, POLL_MS);

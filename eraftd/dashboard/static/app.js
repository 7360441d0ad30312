// eraftd dashboard: fetch /api/cluster, draw it, again every interval. No libraries.
"use strict";
const $ = (sel) => document.querySelector(sel);

function esc(v) {
  return String(v).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function show(v) { return v === null || v === undefined ? "–" : esc(v); }
function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
function duration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 10) return (+s).toFixed(1) + " s";
  if (s < 60) return Math.round(s) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
}
function roleName(r) { return r === "down" ? "down" : r.toLowerCase(); }

function card(key, value) {
  return `<div class="card"><div class="v">${value}</div><div class="k">${esc(key)}</div></div>`;
}

function drawMetrics(d) {
  const m = d.metrics;
  const per = Object.entries(m.ops_per_s_by_group).map(([g, r]) => `${g}: ${show(r)}`).join(", ");
  $("#metrics").innerHTML = [
    card("configuration", `<span id="config-num">${m.config_num}</span>`),
    card("nodes up", `<span id="nodes-healthy">${m.nodes_healthy}</span> / ${m.nodes_total}`
         + `<div class="sub">${esc(m.nodes_summary || "")}</div>`),
    card("storage used (total)", bytes(m.storage_bytes_total)),
    card("ops/s in total", `<span id="ops-total">${show(m.ops_per_s_total)}</span>`),
    card("load: ops/s per group, average", show(m.ops_per_s_avg)),
    card("ops/s by group", per || "–"),
    card("leader changes (counted)", m.leader_changes_total),
    card("shards migrating", m.migrating_shards),
  ].join("");
}

function memberRow(m, storage) {
  const role = roleName(m.role);
  return `<tr class="member ${role === "down" ? "down" : ""}" data-gid="${m.gid}" data-address="${esc(m.address)}" data-role="${role}">
    <td>${esc(m.address)}</td><td><span class="role role-${role}">${esc(role)}</span>${m.learner ? ' <span class="learner muted">learner</span>' : ""}</td>
    <td class="num">${show(m.term)}</td><td class="num">${show(m.applied)}</td><td class="num">${show(m.commit)}</td>
    <td class="num">${bytes(m.storage_bytes)}</td><td class="muted">${esc(m.problem || "")}</td></tr>`;
}

function drawTopology(d) {
  const parts = [];
  for (const g of d.groups) {
    const members = g.gid === 0 ? d.controllers : d.replicas.filter((m) => m.gid === g.gid);
    const extra = g.gid === 0 ? "" : ` · shards ${g.shards.join(", ") || "none"} · ${show(g.ops_per_s)} ops/s · p50 ${show(g.p50_ms)} ms, p99 ${show(g.p99_ms)} ms`;
    parts.push(`<div class="group" data-gid="${g.gid}"><h3>${esc(g.name)} <span class="muted">${g.up}/${g.replicas} up${extra}</span></h3>
      <table><thead><tr><th>address</th><th>role</th><th>term</th><th>applied</th><th>commit</th><th>storage</th><th></th></tr></thead>
      <tbody>${members.map((m) => memberRow(m)).join("")}</tbody></table></div>`);
  }
  $("#topology").innerHTML = parts.join("");
}

function drawShards(d) {
  $("#shards tbody").innerHTML = d.shards.map((s) =>
    `<tr class="shard" data-shard="${s.shard}" data-gid="${s.gid}" data-status="${esc(s.status)}">
      <td class="num">${s.shard}</td><td>${s.gid || "–"}</td><td class="st-${esc(s.status)}">${esc(s.status)}</td>
      <td class="num">${show(s.keys)}</td><td class="num">${bytes(s.bytes)}</td></tr>`).join("");
}

function drawProblems(d) {
  const ps = d.problems || [];
  $("#problems-section").hidden = !ps.length;
  $("#problems").innerHTML = ps.map((p) => `<li class="problem">${esc(p)}</li>`).join("");
}

function drawEvents(d) {
  const ev = d.metrics.recent_leader_changes;
  $("#events").innerHTML = ev.length ? ev.map((e) =>
    `<li class="event" data-gid="${e.gid}" data-leader="${esc(e.leader)}" data-previous="${esc(e.previous || "")}">` +
    `${new Date(e.time * 1000).toLocaleTimeString()} · ${e.gid === 0 ? "controller" : "group " + e.gid}: ` +
    `${esc(e.previous || "none")} → ${esc(e.leader)}</li>`).join("")
    : `<li class="muted">none since the dashboard started</li>`;
}

function drawAlerts(d) {
  const al = d.alerts || [];
  $("#alerts").innerHTML = al.length ? al.map((a) =>
    `<div class="alert alert-${esc(a.severity)}" data-kind="${esc(a.kind)}" data-target="${esc(a.target)}">` +
    `<b>${esc(a.text)}</b><div class="fix">what to do: <code>${esc(a.fix)}</code></div></div>`).join("")
    : `<div class="all-good">no alerts: every group has a leader and a quorum</div>`;
}

function drawNodes(d) {
  $("#nodes tbody").innerHTML = d.nodes.map((n) =>
    `<tr class="node ${n.up ? "" : "down"}" data-address="${esc(n.address)}" data-up="${n.up ? 1 : 0}"
      data-cpu="${show(n.cpu_percent)}" data-rss="${show(n.rss_bytes)}" data-files="${show(n.open_files)}" data-uptime="${show(n.uptime_s)}">
      <td>${esc(n.address)}</td><td>${n.up ? esc(n.roles.join(", ")) : '<span class="role role-down">down</span>'}</td>
      <td class="num">${n.cpu_percent === null ? "–" : n.cpu_percent + " %"}</td><td class="num">${bytes(n.rss_bytes)}</td>
      <td class="num">${show(n.open_files)}</td><td class="num">${duration(n.uptime_s)}</td>
      <td class="num">${bytes(n.storage_bytes)}</td><td class="num">${show(n.ops_per_s)}</td></tr>`).join("");
}

function ofTotal(moved, total, fmt) {
  if (total === null || total === undefined) return `${fmt(moved)} of ?`;
  const pct = total > 0 ? Math.min(100, Math.round(100 * moved / total)) : 100;
  return `<span class="bar"><b style="width:${pct}%"></b></span>${fmt(moved)} of ${fmt(total)} (${pct} %)`;
}

function drawMigrations(d) {
  const ms = d.migrations || [];
  $("#migrations-section").hidden = !ms.length;
  const n = (v) => show(v);
  $("#migrations tbody").innerHTML = ms.map((m) =>
    `<tr class="migration" data-shard="${m.shard}" data-from="${show(m.from)}" data-to="${m.to}" data-state="${esc(m.state)}"
      data-keys="${m.keys}" data-total-keys="${show(m.total_keys)}" data-bytes="${m.bytes}" data-total-bytes="${show(m.total_bytes)}">
      <td class="num">${m.shard}</td><td>${show(m.from)} → ${m.to}</td><td class="st-${esc(m.state)}">${esc(m.state)}</td>
      <td>${ofTotal(m.keys, m.total_keys, n)}</td><td>${ofTotal(m.bytes, m.total_bytes, bytes)}</td>
      <td class="num">${show(m.keys_per_s)} keys/s, ${bytes(m.bytes_per_s)}/s</td>
      <td class="num">${duration(m.age_s)}</td><td class="num">${m.chunks}</td></tr>`).join("");
}

// ---------------------------------------------------------------- charts: inline SVG, no library
const COLORS = ["#2c5fa8", "#1f7a3a", "#b7791f", "#8e44ad", "#c53030", "#16a085", "#d35400", "#34495e"];
const W = 560, H = 160, PL = 48, PR = 10, PT = 8, PB = 20;

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
function fmtNum(v) { return v >= 100 ? Math.round(v) : +v.toPrecision(2); }

// lines: [{name, cls, color, points: [[t, v|null]]}]; markers: [{t, kind, gid, text}]
function chart(id, title, unit, lines, markers, t0, t1) {
  const vals = lines.flatMap((l) => l.points.map((p) => p[1]).filter((v) => v !== null && v !== undefined));
  const ymax = niceMax(Math.max(0, ...vals));
  const x = (t) => PL + (W - PL - PR) * (t1 > t0 ? (t - t0) / (t1 - t0) : 1);
  const y = (v) => PT + (H - PT - PB) * (1 - v / ymax);
  const out = [`<svg id="${id}" class="chart-svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" data-ymax="${ymax}">`];
  for (const f of [0, 0.5, 1]) {
    out.push(`<line class="${f ? "grid" : "axis"}" x1="${PL}" x2="${W - PR}" y1="${y(f * ymax)}" y2="${y(f * ymax)}"/>`,
             `<text x="${PL - 4}" y="${y(f * ymax) + 3}" text-anchor="end">${fmtNum(f * ymax)}</text>`);
  }
  const mins = Math.round((t1 - t0) / 60);
  out.push(`<text x="${PL}" y="${H - 5}">${mins ? "−" + mins + " min" : ""}</text>`,
           `<text x="${W - PR}" y="${H - 5}" text-anchor="end">now</text>`);
  for (const m of markers) {
    if (m.t < t0) continue;
    out.push(`<line class="marker marker-${esc(m.kind)}" data-kind="${esc(m.kind)}" data-gid="${m.gid}" x1="${x(m.t)}" x2="${x(m.t)}" y1="${PT}" y2="${H - PB}"><title>${esc(m.text)}</title></line>`);
  }
  for (const l of lines) {
    let d = "", pen = "M", n = 0, max = 0, last = null;
    for (const [t, v] of l.points) {
      if (v === null || v === undefined) { pen = "M"; continue; }
      d += `${pen}${x(t).toFixed(1)},${y(v).toFixed(1)} `;
      pen = "L"; n++; max = Math.max(max, v); last = v;
    }
    out.push(`<path class="series ${l.cls || ""}" stroke="${l.color}" data-series="${esc(l.name)}" data-points="${n}" ` +
             `data-max="${max}" data-last="${last === null ? "" : last}" d="${d.trim() || "M0,0"}"><title>${esc(l.name)}</title></path>`);
  }
  out.push("</svg>");
  const legend = lines.filter((l) => !l.hideLegend).map((l) =>
    `<span><i style="background:${l.color}"></i>${esc(l.name)}</span>`).join("");
  return `<div class="chart"><h3>${esc(title)} <span class="muted">${esc(unit)}</span></h3>${out.join("")}` +
         `<div class="legend">${legend}<span><i style="background:#d35400"></i>leader change</span>` +
         `<span><i style="background:#9aa1ad"></i>election</span></div></div>`;
}

function drawCharts(s) {
  const pts = s.points || [];
  if (!pts.length) { $("#charts").innerHTML = `<div class="muted">no points yet</div>`; return; }
  const t1 = pts[pts.length - 1].t, t0 = Math.max(pts[0].t, t1 - s.span_s);
  const gids = [...new Set(pts.flatMap((p) => Object.keys(p.ops).concat(Object.keys(p.p99_ms))))]
    .sort((a, b) => a - b);
  const color = (g) => COLORS[(gids.indexOf(g) + 1) % COLORS.length];
  const ops = [{name: "total", color: COLORS[0], points: pts.map((p) => [p.t, p.ops_total])}]
    .concat(gids.map((g) => ({name: "group " + g, color: color(g), points: pts.map((p) => [p.t, p.ops[g] ?? null])})));
  const lat = gids.flatMap((g) => [
    {name: "group " + g + " p99", cls: "p99", color: color(g), points: pts.map((p) => [p.t, p.p99_ms[g] ?? null])},
    {name: "group " + g + " p50", cls: "p50", color: color(g), points: pts.map((p) => [p.t, p.p50_ms[g] ?? null])}]);
  const mk = s.markers || [];
  $("#charts").innerHTML = chart("chart-ops", "Throughput", "ops/s, per group and in total", ops, mk, t0, t1) +
    chart("chart-latency", "Request latency", "ms, p99 solid, p50 dashed", lat, mk, t0, t1);
}

let timer = null;
async function refresh() {
  let interval = 5000;
  try {
    const [r, rs] = await Promise.all([fetch("/api/cluster", {cache: "no-store"}),
                                       fetch("/api/series", {cache: "no-store"})]);
    const d = await r.json();
    const series = await rs.json();
    interval = d.interval_ms || interval;
    $("#interval").textContent = (interval / 1000) + "s";
    $("#error").textContent = d.error || "";
    if (d.ready) {
      $("#summary").textContent = `configuration ${d.config.num} · controller leader ${d.controller_leader || "unknown"} · ` +
        `updated ${new Date(d.time * 1000).toLocaleTimeString()}`;
      drawAlerts(d); drawMetrics(d); drawCharts(series); drawMigrations(d); drawProblems(d);
      drawTopology(d); drawNodes(d); drawShards(d); drawEvents(d);
      document.body.dataset.ready = "1";
    }
  } catch (e) {
    $("#error").textContent = "dashboard unreachable: " + e;
  }
  timer = setTimeout(refresh, interval);
}
refresh();

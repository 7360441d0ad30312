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
    const extra = g.gid === 0 ? "" : ` · shards ${g.shards.join(", ") || "none"} · ${show(g.ops_per_s)} ops/s`;
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
    `<li>${new Date(e.time * 1000).toLocaleTimeString()} · ${e.gid === 0 ? "controller" : "group " + e.gid}: ` +
    `${esc(e.leader)}${e.previous ? " (was " + esc(e.previous) + ")" : ""}</li>`).join("")
    : `<li class="muted">none seen</li>`;
}

let timer = null;
async function refresh() {
  let interval = 5000;
  try {
    const r = await fetch("/api/cluster", {cache: "no-store"});
    const d = await r.json();
    interval = d.interval_ms || interval;
    $("#interval").textContent = (interval / 1000) + "s";
    $("#error").textContent = d.error || "";
    if (d.ready) {
      $("#summary").textContent = `configuration ${d.config.num} · controller leader ${d.controller_leader || "unknown"} · ` +
        `updated ${new Date(d.time * 1000).toLocaleTimeString()}`;
      drawMetrics(d); drawProblems(d); drawTopology(d); drawShards(d); drawEvents(d);
      document.body.dataset.ready = "1";
    }
  } catch (e) {
    $("#error").textContent = "dashboard unreachable: " + e;
  }
  timer = setTimeout(refresh, interval);
}
refresh();

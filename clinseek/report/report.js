// The report's behaviour. Every text from the run goes through textContent, never innerHTML: observations
// are model- and database-controlled strings.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const $ = (id) => document.getElementById(id);
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  const pct = (x) => (x === null || x === undefined) ? "–" : (100 * x).toFixed(1);
  const num = (x, d) => (x === null || x === undefined) ? "–" : Number(x).toFixed(d === undefined ? 2 : d);
  function card(k, v) { return el("div", { class: "card" }, el("div", { class: "v", text: v }), el("div", { class: "k", text: k })); }
  function table(t, head, rows, numeric) {
    t.replaceChildren();
    t.append(el("tr", {}, ...head.map((h, i) => el("th", { class: numeric.includes(i) ? "num" : "", text: h }))));
    for (const r of rows) t.append(el("tr", {}, ...r.map((c, i) => el("td", { class: numeric.includes(i) ? "num" : "", text: c }))));
  }

  // Header
  const run = data.run;
  $("title").textContent = "clinseek report: " + run.name;
  const host = [run.host.provider, run.host.model].filter(Boolean).join(" / ");
  $("meta").textContent = [host && "host " + host, run.recipe_sha256 && "recipe sha256 " + run.recipe_sha256.slice(0, 12),
    run.started && "started " + run.started, run.ended ? "ended " + run.ended : "not ended (running, or killed)",
    run.interrupted && "interrupted", run.clinseek_version && "clinseek " + run.clinseek_version, run.path]
    .filter(Boolean).join(" · ");

  // Banner: no score is not a score of 0; failures and reading problems are said before any number.
  const pr = data.problems || {};
  const banner = $("banner");
  const lines = [];
  if (!pr.episodes) lines.push(["bad", "This run has no episodes: there is no score."]);
  else if (!pr.scorable) lines.push(["bad", "All " + pr.episodes + " episodes ended in error: there is no score."]);
  else if (pr.errors) lines.push(["warn", pr.errors + " of " + pr.episodes + " episodes ended in error and score 0 below."]);
  if (pr.errors) {
    const ul = el("ul", { class: "reasons" });
    for (const [reason, n] of Object.entries(pr.reasons || {})) ul.append(el("li", {}, el("b", { text: n + " × " }), reason));
    lines.push(["reasons", ul]);
    if (pr.retry_command) lines.push(["hint", el("span", {}, "Once the cause is fixed, run them again: ", el("code", { text: pr.retry_command }))]);
  }
  for (const w of pr.warnings || []) lines.push(["warn", "warning: " + w]);
  for (const [kind, content] of lines) banner.append(el("div", { class: "banner-" + kind }, content));
  banner.hidden = !lines.length;
  if (!pr.scorable) banner.classList.add("failed");

  // Scores
  const s = data.scores, o = s.overall || {};
  $("overall").append(card("F1 (macro over tasks)", pct(o.f1)), card("F1 (micro over questions)", pct(o.f1_micro)),
    card("exact match", pct(o.exact_match)), card("yes/no accuracy", pct(o.yes_no_accuracy)),
    card("questions / runs", (o.questions || 0) + " / " + (o.runs || 0)), card("completed runs", String(o.completed || 0)));
  const scoreRows = (m) => Object.entries(m || {}).map(([k, a]) => [k, a.questions, a.runs, a.completed,
    pct(a.precision), pct(a.recall), pct(a.f1), pct(a.exact_match), pct(a.yes_no_accuracy)]);
  const scoreHead = ["", "questions", "runs", "completed", "P", "R", "F1", "EM", "yes/no acc"];
  table($("per-task"), ["task"].concat(scoreHead.slice(1)), scoreRows(s.per_task), [1, 2, 3, 4, 5, 6, 7, 8]);
  table($("per-type"), ["task type"].concat(scoreHead.slice(1)), scoreRows(s.per_task_type), [1, 2, 3, 4, 5, 6, 7, 8]);

  // Usage, cost, latency
  const u = data.usage;
  $("usage-cards").append(card("input tokens", String(u.input_tokens || 0)), card("output tokens", String(u.output_tokens || 0)),
    card("cached tokens", String(u.cached_tokens || 0)),
    card("cost (USD)", data.cost.total === null ? "not priced" : "$" + num(data.cost.total, 4)),
    card("cost per run (USD)", data.cost.mean === null ? "–" : "$" + num(data.cost.mean, 5)));
  table($("latency"), ["seconds per run", "mean", "p50", "p95", "max"],
    Object.entries(data.timing).map(([k, t]) => [k, num(t.mean), num(t.p50), num(t.p95), num(t.max)]), [1, 2, 3, 4]);
  $("status").textContent = "status: " + Object.entries(data.status).map(([k, v]) => k + " " + v).join(", ");

  // Tools
  const tmax = Math.max(1, ...Object.values(data.tools));
  for (const [name, n] of Object.entries(data.tools)) {
    $("tool-bars").append(el("div", { class: "bar" }, el("span", { class: "name", text: name }),
      el("span", { class: "fill", style: "width:" + Math.max(2, 400 * n / tmax) + "px" }), el("span", { text: String(n) })));
  }
  if (!Object.keys(data.tools).length) $("tool-bars").append(el("p", { class: "muted", text: "no tool calls" }));
  const toolNames = Object.keys(data.tools);
  table($("tools-by-task"), ["task"].concat(toolNames),
    Object.entries(data.tools_by_task).map(([t, c]) => [t].concat(toolNames.map((n) => c[n] || 0))),
    toolNames.map((_, i) => i + 1));

  // Episode list
  const eps = data.episodes;
  $("episodes-note").textContent = data.episodes_shown < data.episodes_total
    ? "showing " + data.episodes_shown + " of " + data.episodes_total + " episodes (the report holds at most " + data.limits.max_episodes + ")"
    : data.episodes_total + " episodes";
  function listEpisodes(filter) {
    const t = $("episode-list");
    t.replaceChildren(el("tr", {}, ...["qid", "run", "task", "status", "F1", "turns", "tool calls", "answer", "label"]
      .map((h) => el("th", { text: h }))));
    eps.forEach((e, i) => {
      const hay = [e.qid, e.task, e.status, e.task_type].join(" ").toLowerCase();
      if (filter && !hay.includes(filter.toLowerCase())) return;
      const tr = el("tr", { class: "ep", "data-index": String(i), tabindex: "0" },
        el("td", { text: e.qid }), el("td", { text: String(e.run_index) }), el("td", { text: e.task || "" }),
        el("td", { class: "status-" + e.status, text: e.status }), el("td", { class: "num", text: pct(e.f1) }),
        el("td", { class: "num", text: e.turns === null || e.turns === undefined ? "" : String(e.turns) }),
        el("td", { class: "num", text: e.tool_calls === null || e.tool_calls === undefined ? "" : String(e.tool_calls) }),
        el("td", { text: (e.answer || []).join("; ") }), el("td", { text: (e.label || []).join("; ") }));
      tr.addEventListener("click", () => openEpisode(i));
      tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") openEpisode(i); });
      t.append(tr);
    });
  }
  $("episode-filter").addEventListener("input", (ev) => listEpisodes(ev.target.value));
  listEpisodes("");

  // Viewer
  function openEpisode(i) {
    const e = eps[i];
    const cited = new Set(e.cited || []);
    $("viewer-title").textContent = e.qid + " · run " + e.run_index + " · " + (e.task || "");
    const sum = $("viewer-summary");
    sum.replaceChildren(
      el("div", {}, el("b", { text: "status: " }), el("span", { class: "status-" + e.status, text: e.status + (e.reason ? " (" + e.reason + ")" : "") })),
      el("div", {}, el("b", { text: "answer: " }), (e.answer || []).join("; ") || "–"),
      el("div", {}, el("b", { text: "label: " }), (e.label || []).join("; ") || "–", el("span", { class: "muted", text: "  F1 " + pct(e.f1) })),
      el("div", { id: "viewer-cited" }, el("b", { text: "cited evidence: " }),
        ...(e.cited.length ? e.cited.map((id) => el("span", { class: "eid cited", text: id + " " + ((e.evidence[id] || {}).tool || "?") })) : ["none"])));
    if (e.observations_cut) sum.append(el("div", { class: "muted", text: e.observations_cut + " observation(s) cut to " + data.limits.max_observation_chars + " characters in this report" }));
    const list = $("viewer-messages");
    list.replaceChildren();
    for (const m of e.messages) {
      const li = el("li", { class: "msg " + m.role });
      li.append(el("div", { class: "role", text: m.role + (m.name ? " · " + m.name : "") }));
      if (m.role === "tool") {
        if (m.evidence_id) li.prepend(el("span", { class: "eid" + (cited.has(m.evidence_id) ? " cited" : ""), text: m.evidence_id }));
        if (m.evidence_id && cited.has(m.evidence_id)) li.classList.add("cited");
        if (m.is_error) { li.classList.add("error"); li.append(el("span", { class: "flag", text: "error" })); }
        if (m.truncated) li.append(el("span", { class: "flag", text: "truncated by the tool" }));
      }
      if (m.content) li.append(el("pre", { text: m.content }));
      for (const c of m.tool_calls || []) {
        li.append(el("div", { class: "call", text: "→ " + c.name + "(" + JSON.stringify(c.arguments) + ")" }));
      }
      list.append(li);
    }
    $("viewer").hidden = false;
    $("viewer").scrollTop = 0;
  }
  $("viewer-close").addEventListener("click", () => { $("viewer").hidden = true; });
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") $("viewer").hidden = true; });
  window.clinseekReport = { open: openEpisode, data: data };
})();

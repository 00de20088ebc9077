// shadow report: the worst-pairs table and the pair view.
// Untrusted text (prompts, answers, segment tags, ids) reaches the page only through textContent and
// text nodes: no HTML parsing of data, no code built from strings, no URLs built from data.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const PAIRS = DATA.pairs;
  const ROW_LIMIT = 500; // rows in the DOM at once; filters narrow the rest
  const INVISIBLE = /[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/u;
  const HAN = /\p{Script=Han}/u;
  const TOKEN = /\p{Script=Han}|(?:(?!\p{Script=Han})[\p{L}\p{N}_])+|\s+|[^]/gu;
  const MAX_EDIT_DISTANCE = 1500; // tokens; beyond it the middle of the texts is marked as changed whole

  const state = { sort: "badness", descending: true, selected: null };
  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) appendVisible(node, String(text));
    return node;
  }

  // Text with invisible format characters (bidi overrides, zero-width) replaced by visible markers.
  function appendVisible(parent, text) {
    if (!INVISIBLE.test(text)) {
      parent.appendChild(document.createTextNode(text));
      return;
    }
    let plain = "";
    for (const ch of text) {
      if (INVISIBLE.test(ch)) {
        if (plain) parent.appendChild(document.createTextNode(plain));
        plain = "";
        const marker = document.createElement("span");
        marker.className = "ctl";
        marker.title = "invisible character";
        marker.textContent = "‹U+" + ch.codePointAt(0).toString(16).toUpperCase().padStart(4, "0") + "›";
        parent.appendChild(marker);
      } else {
        plain += ch;
      }
    }
    if (plain) parent.appendChild(document.createTextNode(plain));
  }

  // --- derived fields -----------------------------------------------------------------------------------
  for (const p of PAIRS) {
    p.abs_log_ratio = p.log_ratio === null ? null : Math.abs(p.log_ratio);
    p.coherence_drop =
      p.coherence_candidate === null || p.coherence_baseline === null
        ? null
        : p.coherence_baseline - p.coherence_candidate;
    p.segment_keys = p.segment.map(([k, v]) => k + "=" + v);
    p.haystack = (p.id + "\n" + p.texts.prompt + "\n" + p.texts.baseline + "\n" + p.texts.candidate).toLowerCase();
  }

  function fillSelect(select, values) {
    for (const value of [...new Set(values)].sort()) {
      const option = document.createElement("option");
      option.value = value;
      appendVisible(option, value);
      select.appendChild(option);
    }
  }
  fillSelect($("f-language"), PAIRS.map((p) => p.language));
  fillSelect($("f-length"), PAIRS.map((p) => p.answer_length).filter((v) => v));
  fillSelect($("f-segment"), PAIRS.flatMap((p) => p.segment_keys));

  // --- table --------------------------------------------------------------------------------------------
  function filtered() {
    const flag = $("f-flag").value;
    const language = $("f-language").value;
    const length = $("f-length").value;
    const segment = $("f-segment").value;
    const search = $("f-search").value.trim().toLowerCase();
    const rows = PAIRS.filter(
      (p) =>
        (!flag || (flag === "none" ? p.flags.length === 0 : p.flags.includes(flag))) &&
        (!language || p.language === language) &&
        (!length || p.answer_length === length) &&
        (!segment || p.segment_keys.includes(segment)) &&
        (!search || p.haystack.includes(search)),
    );
    const key = state.sort;
    const sign = state.descending ? -1 : 1;
    rows.sort((a, b) => {
      const x = a[key];
      const y = b[key];
      if (x === y) return 0;
      if (x === null || x === undefined) return 1; // missing values last, either direction
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * sign;
    });
    return rows;
  }

  function fmt(value, digits) {
    return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
  }

  function cell(row, text, className) {
    const td = el("td", className, text);
    row.appendChild(td);
    return td;
  }

  function renderTable() {
    const rows = filtered();
    const body = $("pairs-body");
    body.replaceChildren();
    for (const p of rows.slice(0, ROW_LIMIT)) {
      const tr = document.createElement("tr");
      tr.dataset.index = String(PAIRS.indexOf(p));
      if (state.selected === p) tr.className = "selected";
      cell(tr, fmt(p.badness, 2), "num");
      cell(tr, p.language);
      cell(tr, p.answer_length || "–");
      const seg = cell(tr, null, "segs");
      for (const key of p.segment_keys) seg.appendChild(el("span", "seg", key));
      cell(tr, fmt(p.divergence, 3), "num" + (p.divergence > 0.25 ? " bad-num" : ""));
      cell(tr, fmt(p.log_ratio, 2), "num" + (p.abs_log_ratio > 0.4 ? " bad-num" : ""));
      cell(tr, fmt(p.loop_candidate, 2), "num" + (p.flags.includes("loop") ? " bad-num" : ""));
      cell(tr, fmt(p.coherence_candidate, 2) + " / " + fmt(p.coherence_baseline, 2), "num" + (p.coherence_drop > 0.1 ? " bad-num" : ""));
      cell(tr, p.latency_candidate === null ? "–" : Math.round(p.latency_candidate) + " ms", "num");
      const flags = cell(tr, null);
      for (const f of p.flags) flags.appendChild(el("span", "flag flag-" + f, f));
      cell(tr, p.texts.prompt.slice(0, 160), "prompt");
      body.appendChild(tr);
    }
    $("f-count").textContent = rows.length + " of " + PAIRS.length + " pairs in the table" +
      (DATA.total_pairs > PAIRS.length ? " (" + DATA.total_pairs + " in all)" : "");
    $("table-more").textContent =
      rows.length > ROW_LIMIT ? "Showing the first " + ROW_LIMIT + " rows; narrow the filters to see others." : "";
    for (const th of document.querySelectorAll("#pairs-table th[data-key]")) {
      th.setAttribute("aria-sort", th.dataset.key === state.sort ? (state.descending ? "descending" : "ascending") : "none");
    }
  }

  for (const id of ["f-flag", "f-language", "f-length", "f-segment"]) $(id).addEventListener("change", renderTable);
  $("f-search").addEventListener("input", renderTable);
  $("f-sort").addEventListener("change", () => {
    state.sort = $("f-sort").value;
    state.descending = true;
    renderTable();
  });
  for (const th of document.querySelectorAll("#pairs-table th[data-key]")) {
    th.querySelector("button").addEventListener("click", () => {
      state.descending = state.sort === th.dataset.key ? !state.descending : true;
      state.sort = th.dataset.key;
      if ([...$("f-sort").options].some((o) => o.value === state.sort)) $("f-sort").value = state.sort;
      renderTable();
    });
  }
  $("pairs-body").addEventListener("click", (event) => {
    const tr = event.target.closest("tr");
    if (!tr || tr.dataset.index === undefined) return;
    showPair(PAIRS[Number(tr.dataset.index)]);
    for (const other of $("pairs-body").querySelectorAll("tr.selected")) other.className = "";
    tr.className = "selected";
  });

  // --- character diff (Myers, over tokens: one Han character, or one run of letters/digits, or one
  // run of whitespace, or any other single character). Offsets are in code points, as Python counts them.
  function tokenize(text) {
    const tokens = [];
    const starts = [];
    let offset = 0;
    for (const match of text.matchAll(TOKEN)) {
      tokens.push(match[0]);
      starts.push(offset);
      offset += HAN.test(match[0]) ? 1 : [...match[0]].length;
    }
    starts.push(offset);
    return { tokens, starts };
  }

  // Marks changed tokens: returns [changedInA, changedInB] as Uint8Arrays.
  function diffTokens(a, b) {
    const changedA = new Uint8Array(a.length);
    const changedB = new Uint8Array(b.length);
    let lo = 0;
    while (lo < a.length && lo < b.length && a[lo] === b[lo]) lo++;
    let hiA = a.length;
    let hiB = b.length;
    while (hiA > lo && hiB > lo && a[hiA - 1] === b[hiB - 1]) {
      hiA--;
      hiB--;
    }
    const n = hiA - lo;
    const m = hiB - lo;
    const markAll = () => {
      changedA.fill(1, lo, hiA);
      changedB.fill(1, lo, hiB);
      return [changedA, changedB];
    };
    if (n === 0 || m === 0) return markAll();
    const max = n + m;
    const offset = max + 1;
    const v = new Int32Array(2 * max + 3);
    const trace = [];
    let found = -1;
    for (let d = 0; d <= Math.min(max, MAX_EDIT_DISTANCE) && found < 0; d++) {
      for (let k = -d; k <= d; k += 2) {
        let x = k === -d || (k !== d && v[offset + k - 1] < v[offset + k + 1]) ? v[offset + k + 1] : v[offset + k - 1] + 1;
        let y = x - k;
        while (x < n && y < m && a[lo + x] === b[lo + y]) {
          x++;
          y++;
        }
        v[offset + k] = x;
        if (x >= n && y >= m) {
          found = d;
          break;
        }
      }
      trace.push(v.slice(offset - d, offset + d + 1));
    }
    if (found < 0) return markAll();
    let x = n;
    let y = m;
    for (let d = found; d > 0; d--) {
      const prev = trace[d - 1]; // indices -(d-1)..(d-1)
      const at = (k) => prev[k + d - 1];
      const k = x - y;
      const down = k === -d || (k !== d && at(k - 1) < at(k + 1));
      const prevK = down ? k + 1 : k - 1;
      const prevX = at(prevK);
      const prevY = prevX - prevK;
      if (down) changedB[lo + prevY] = 1;
      else changedA[lo + prevX] = 1;
      x = prevX;
      y = prevY;
    }
    return [changedA, changedB];
  }

  function changedRanges(tokenized, changed) {
    const ranges = [];
    for (let i = 0; i < changed.length; i++) {
      if (!changed[i]) continue;
      const start = tokenized.starts[i];
      const end = tokenized.starts[i + 1];
      if (ranges.length && ranges[ranges.length - 1][1] === start) ranges[ranges.length - 1][1] = end;
      else ranges.push([start, end]);
    }
    return ranges;
  }

  function characterDiff(left, right) {
    const a = tokenize(left);
    const b = tokenize(right);
    const [changedA, changedB] = diffTokens(a.tokens, b.tokens);
    return [changedRanges(a, changedA), changedRanges(b, changedB)];
  }

  // Renders `text` into `container` with diff ranges, the loop span (one element around its pieces)
  // and coherence-break markers.
  function renderMarked(container, text, changes, diffClass, marks, fullLength) {
    container.replaceChildren();
    const chars = [...text];
    const breaks = new Set(marks ? marks.breaks.filter((b) => b < chars.length) : []);
    const bounds = new Set([0, chars.length, ...breaks]);
    for (const [s, e] of changes) bounds.add(s).add(e);
    let loop = marks && marks.loop ? marks.loop.map((b) => Math.max(0, Math.min(b, chars.length))) : null;
    if (loop && loop[0] >= loop[1]) loop = null;
    if (loop) bounds.add(loop[0]).add(loop[1]);
    const points = [...bounds].filter((b) => b >= 0 && b <= chars.length).sort((x, y) => x - y);
    let changeIndex = 0;
    let loopSpan = null;
    for (let i = 0; i + 1 < points.length; i++) {
      const start = points[i];
      const end = points[i + 1];
      if (loop && start === loop[0]) {
        loopSpan = el("span", "loop-span");
        loopSpan.title = "looping span";
        container.appendChild(loopSpan);
      }
      if (loop && start === loop[1]) loopSpan = null;
      const target = loopSpan || container;
      if (breaks.has(start)) target.appendChild(el("span", "brk", "break"));
      while (changeIndex < changes.length && changes[changeIndex][1] <= start) changeIndex++;
      const inChange = changeIndex < changes.length && changes[changeIndex][0] <= start;
      const piece = chars.slice(start, end).join("");
      if (inChange) target.appendChild(el("span", diffClass, piece));
      else appendVisible(target, piece);
    }
    if (fullLength > chars.length) {
      container.appendChild(el("span", "trunc", "[cut here: " + (fullLength - chars.length) + " more characters not embedded]"));
    }
  }

  function showPair(p) {
    state.selected = p;
    const show = (v) => (typeof v === "boolean" ? (v ? "yes" : "no") : typeof v === "number" ? fmt(v, 3) : "–");
    const view = $("pair-view");
    view.hidden = false;
    $("pv-id").textContent = p.id;
    const meta = $("pv-meta");
    meta.replaceChildren();
    const facts = [
      ["language", p.language],
      ["answer", p.answer_length],
      // Every declared evaluator output: [label, candidate, reference, reference's name].
      ...p.scores.map(([label, value, reference, against]) => [
        label,
        show(value) + (reference === null || reference === undefined ? "" : " (" + against + " " + show(reference) + ")"),
      ]),
      ["created", p.created_at],
    ];
    for (const [label, value] of facts) {
      meta.appendChild(document.createTextNode(label + " "));
      meta.appendChild(el("b", null, value === null ? "–" : value));
      meta.appendChild(document.createTextNode(" · "));
    }
    for (const key of p.segment_keys) meta.appendChild(el("span", "seg", key));
    renderMarked($("pv-prompt"), p.texts.prompt, [], "", null, p.text_lengths.prompt);
    // A failed candidate has no answer to compare with: show the primary's unmarked.
    const [del, ins] = p.candidate_error ? [[], []] : characterDiff(p.texts.baseline, p.texts.candidate);
    renderMarked($("pv-baseline"), p.texts.baseline, del, "d-del", p.marks.baseline, p.text_lengths.baseline);
    if (p.candidate_error) {
      $("pv-candidate").replaceChildren(el("span", "err", "candidate failed: " + p.candidate_error));
    } else {
      renderMarked($("pv-candidate"), p.texts.candidate, ins, "d-ins", p.marks.candidate, p.text_lengths.candidate);
    }
    renderAgent(p);
    view.scrollIntoView({ block: "start" });
  }

  // Tool calls side by side, matched by function name in order; each argument shown as key = value, the
  // values that differ (compared as canonical JSON) marked on both sides.
  function canonical(value) {
    if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
    if (value && typeof value === "object") {
      return "{" + Object.keys(value).sort().map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
    }
    return JSON.stringify(value);
  }
  function parseArgs(text) {
    try {
      const value = JSON.parse(text);
      return value && typeof value === "object" && !Array.isArray(value) ? value : null;
    } catch (e) {
      return null;
    }
  }
  function argumentCell(call, other) {
    const td = el("td", "args");
    if (!call) {
      td.appendChild(el("span", "none", "–"));
      return td;
    }
    td.appendChild(el("b", null, call[0]));
    const args = parseArgs(call[1]);
    const otherArgs = other ? parseArgs(other[1]) : null;
    if (args === null) {
      td.appendChild(el("div", "err", "arguments not a JSON object: " + call[1]));
      return td;
    }
    for (const key of Object.keys(args).sort()) {
      const differs = !otherArgs || other[0] !== call[0] || canonical(args[key]) !== canonical(otherArgs[key]);
      const line = el("div", null);
      line.appendChild(document.createTextNode(key + " = "));
      line.appendChild(el("span", differs ? "d-del" : null, canonical(args[key])));
      td.appendChild(line);
    }
    return td;
  }
  function renderAgent(p) {
    const sides = p.agent || {};
    const base = sides.baseline || { tool_calls: [] };
    const cand = sides.candidate || { tool_calls: [] };
    const body = $("pv-tools");
    body.replaceChildren();
    const used = new Set();
    const pairs = base.tool_calls.map((call) => {
      const i = cand.tool_calls.findIndex((c, j) => !used.has(j) && c[0] === call[0]);
      if (i >= 0) used.add(i);
      return [call, i >= 0 ? cand.tool_calls[i] : null];
    });
    cand.tool_calls.forEach((call, j) => { if (!used.has(j)) pairs.push([null, call]); });
    pairs.forEach(([b, c], n) => {
      const tr = el("tr");
      tr.appendChild(el("th", null, "call " + (n + 1)));
      tr.appendChild(argumentCell(b, c));
      tr.appendChild(argumentCell(c, b));
      body.appendChild(tr);
    });
    for (const [label, key] of [["refusal", "refusal"], ["reasoning (characters)", "reasoning_chars"]]) {
      if (base[key] === null && cand[key] === null) continue;
      const tr = el("tr");
      tr.appendChild(el("th", null, label));
      tr.appendChild(el("td", null, base[key] === null || base[key] === undefined ? "–" : base[key]));
      tr.appendChild(el("td", null, cand[key] === null || cand[key] === undefined ? "–" : cand[key]));
      body.appendChild(tr);
    }
    $("pv-agent").hidden = body.children.length === 0;
  }

  window.shadowReport = { characterDiff, showPair: (i) => showPair(PAIRS[i]), pairs: PAIRS.length };
  renderTable();
  document.documentElement.dataset.ready = "1";
  performance.mark("report-ready");
})();

// dalcore's labeling page: plain JS, no dependencies, talks to the JSON API of `dalcore serve`.
"use strict";

const PAGE = 60;
const S = {
  classes: [], byKey: {}, query: null, items: [], cur: 0, view: "batch", offset: 0, total: 0,
  undo: [], polling: null, busy: false,
};
const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = { error: r.statusText }; }
  if (!r.ok) throw new Error((data && data.error) || r.statusText);
  return data;
}

function say(text, isError) {
  const m = $("message");
  m.textContent = text || "";
  m.className = isError ? "error" : "";
}

function className(id) {
  return id === null || id === undefined ? null : S.classes[id].name;
}

// ------------------------------------------------------------------ rendering

function card(it, i) {
  const el = document.createElement("div");
  el.className = "card";
  el.dataset.index = i;
  el.dataset.imageId = it.image_id;
  const img = document.createElement("img");
  img.src = "api/image/" + it.image_id;
  img.alt = it.path;
  img.loading = "lazy";
  const path = document.createElement("div");
  path.className = "path";
  path.textContent = it.path;
  path.title = it.path;
  const guess = document.createElement("div");
  guess.className = "guess";
  if (it.predicted !== null && it.predicted !== undefined) {
    guess.innerHTML = "guess: <b></b> <span class=conf></span>";
    guess.querySelector("b").textContent = className(it.predicted);
    guess.querySelector(".conf").textContent = (100 * it.confidence).toFixed(0) + "%";
  } else {
    guess.textContent = "no model yet";
  }
  const label = document.createElement("div");
  label.className = "label";
  el.append(img, path, guess, label);
  el.addEventListener("click", () => setCurrent(i));
  return el;
}

function paintCard(i) {
  const el = $("grid").children[i];
  const it = S.items[i];
  if (!el || !it || !el.classList.contains("card")) return;
  const lab = el.querySelector(".label");
  const name = className(it.label);
  lab.textContent = name === null ? (it.skipped ? "skipped" : "not labeled") : "label: " + name;
  lab.classList.toggle("none", name === null);
  el.classList.toggle("labeled", name !== null);
  el.classList.toggle("skipped", !!it.skipped && name === null);
  el.classList.toggle("current", i === S.cur);
}

function render() {
  const grid = $("grid");
  grid.replaceChildren();
  if (!S.items.length) {
    const e = document.createElement("div");
    e.className = "empty";
    e.textContent = S.view === "batch"
      ? "No batch yet. Choose a size and press “Train & query next batch”."
      : "No predictions yet: train a model first.";
    grid.append(e);
  }
  S.items.forEach((it, i) => grid.append(card(it, i)));
  S.items.forEach((_, i) => paintCard(i));
  updateCounter();
  $("pager").hidden = S.view !== "preds" || S.total <= PAGE;
  $("page-info").textContent = S.total
    ? `${S.offset + 1}–${Math.min(S.offset + PAGE, S.total)} of ${S.total}` : "";
}

function updateCounter() {
  if (S.view === "batch" && S.query) {
    const done = S.items.filter((it) => it.label !== null && it.label !== undefined).length;
    $("counter").textContent = `${done} of ${S.items.length} labeled`;
  } else {
    $("counter").textContent = "";
  }
}

function renderClasses() {
  const box = $("classes");
  box.replaceChildren();
  S.byKey = {};
  for (const c of S.classes) {
    const b = document.createElement("button");
    b.className = "cls";
    b.dataset.classId = c.id;
    b.innerHTML = "<kbd></kbd><span></span>";
    b.querySelector("kbd").textContent = c.key;
    b.querySelector("span").textContent = c.name;
    b.addEventListener("click", () => labelCurrent(c.id));
    box.append(b);
    S.byKey[c.key] = c.id;
  }
}

function renderStats(st) {
  $("project").textContent = st.project + " · " + st.preset;
  const c = st.counts;
  $("total").textContent = `${c.labeled} of ${c.images} images labeled`;
  const m = st.model;
  $("accuracy").textContent = m && m.accuracy_cv !== null && m.accuracy_cv !== undefined
    ? `model accuracy ≈ ${(100 * m.accuracy_cv).toFixed(1)}% (${m.cv_folds}-fold CV)` : "";
}

function setCurrent(i) {
  if (i < 0 || i >= S.items.length) return;
  const old = S.cur;
  S.cur = i;
  paintCard(old);
  paintCard(i);
  const el = $("grid").children[i];
  if (el && el.scrollIntoView) el.scrollIntoView({ block: "nearest" });
}

// ------------------------------------------------------------------ loading

async function loadState(keepCurrent) {
  const st = await api("api/state");
  if (!S.classes.length) {
    S.classes = st.classes;
    renderClasses();
  }
  renderStats(st);
  S.query = st.query;
  if (S.view === "batch") {
    const items = st.query ? st.query.items : [];
    const sameBatch = keepCurrent && S.items.length === items.length &&
      items.every((it, i) => S.items[i].image_id === it.image_id);
    S.items = items;
    if (sameBatch) {
      S.items.forEach((_, i) => paintCard(i));
      updateCounter();
    } else {
      S.cur = Math.max(0, items.findIndex((it) => it.label === null && !it.skipped));
      render();
    }
  }
  showJob(st.job);
  return st;
}

async function loadPredictions() {
  const d = await api(`api/predictions?offset=${S.offset}&limit=${PAGE}`);
  S.items = d.items;
  S.total = d.total;
  S.cur = 0;
  render();
}

async function switchView(view) {
  S.view = view;
  $("view-batch").classList.toggle("active", view === "batch");
  $("view-preds").classList.toggle("active", view === "preds");
  $("skip").disabled = view !== "batch";
  S.offset = 0;
  if (view === "batch") await loadState(false);
  else await loadPredictions();
}

// ------------------------------------------------------------------ labeling

function nextIndex(from) {
  for (let k = from + 1; k < S.items.length; k++) {
    const it = S.items[k];
    if (it.label === null || it.label === undefined) return k;
  }
  return Math.min(from + 1, S.items.length - 1);
}

async function sendLabel(i, classId, isUndo) {
  const it = S.items[i];
  const body = { image_id: it.image_id, class_id: classId, undo: !!isUndo };
  if (S.view === "batch" && S.query) body.query_id = S.query.id;
  const r = await api("api/label", body);
  it.label = classId;
  paintCard(i);
  updateCounter();
  $("total").textContent = `${r.counts.labeled} of ${r.counts.images} images labeled`;
}

async function labelCurrent(classId) {
  if (!S.items.length || S.busy) return;
  const i = S.cur;
  const prev = S.items[i].label;
  S.busy = true;
  try {
    await sendLabel(i, classId, false);
    S.undo.push({ view: S.view, image_id: S.items[i].image_id, prev, index: i });
    say(`saved: ${S.items[i].path} → ${className(classId)}`);
    setCurrent(nextIndex(i));
  } catch (e) {
    say("not saved: " + e.message, true);
  } finally {
    S.busy = false;
  }
}

async function undo() {
  const u = S.undo.pop();
  if (!u) { say("nothing to undo"); return; }
  const i = S.items.findIndex((it) => it.image_id === u.image_id);
  try {
    if (i < 0) {
      await api("api/label", { image_id: u.image_id, class_id: u.prev, undo: true });
    } else {
      await sendLabel(i, u.prev, true);
      setCurrent(i);
    }
    say("undone");
  } catch (e) {
    S.undo.push(u);
    say("undo failed: " + e.message, true);
  }
}

async function skip() {
  if (S.view !== "batch" || !S.query || !S.items.length) return;
  const i = S.cur;
  try {
    await api("api/skip", { query_id: S.query.id, image_id: S.items[i].image_id });
    S.items[i].skipped = true;
    paintCard(i);
    setCurrent(nextIndex(i));
  } catch (e) {
    say("skip failed: " + e.message, true);
  }
}

// ------------------------------------------------------------------ training

function showJob(job) {
  const running = job && job.state === "running";
  $("train").disabled = running;
  $("progress").hidden = !running;
  if (running) {
    $("progress-fill").style.width = `${Math.round(100 * (job.fraction || 0))}%`;
    $("progress-text").textContent = `${job.stage} ${Math.round(100 * (job.fraction || 0))}%`;
    if (!S.polling) S.polling = setInterval(pollJob, 1000);
  }
}

async function pollJob() {
  let job;
  try { job = await api("api/job"); } catch (e) { return; }
  showJob(job);
  if (job.state === "running") return;
  clearInterval(S.polling);
  S.polling = null;
  if (job.state === "done") {
    say(job.lines.join("\n"));
    S.undo = [];
    await switchView("batch");
  } else if (job.state === "failed") {
    say("training failed: " + job.error, true);
  }
}

async function train() {
  const body = {
    budget: parseInt($("budget").value, 10), method: $("method").value,
    semi: $("semi").checked, pretrain: $("pretrain").checked,
  };
  try {
    const r = await api("api/train", body);
    showJob(r.job);
    say("training in the background; keep labeling meanwhile");
  } catch (e) {
    say(e.message, true);
  }
}

// ------------------------------------------------------------------ keys and wiring

function onKey(ev) {
  const tag = (ev.target && ev.target.tagName) || "";
  if (["INPUT", "SELECT", "TEXTAREA"].includes(tag)) return;
  if (ev.key === "Backspace" || (ev.key === "z" && (ev.ctrlKey || ev.metaKey))) {
    ev.preventDefault(); undo(); return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.key === " ") { ev.preventDefault(); skip(); return; }
  if (ev.key === "ArrowRight") { ev.preventDefault(); setCurrent(S.cur + 1); return; }
  if (ev.key === "ArrowLeft") { ev.preventDefault(); setCurrent(S.cur - 1); return; }
  const k = ev.key.toLowerCase();
  if (k in S.byKey) { ev.preventDefault(); labelCurrent(S.byKey[k]); }
}

function wire() {
  document.addEventListener("keydown", onKey);
  $("undo").addEventListener("click", undo);
  $("skip").addEventListener("click", skip);
  $("train").addEventListener("click", train);
  $("view-batch").addEventListener("click", () => switchView("batch"));
  $("view-preds").addEventListener("click", () => switchView("preds"));
  $("prev-page").addEventListener("click", () => {
    S.offset = Math.max(0, S.offset - PAGE); loadPredictions();
  });
  $("next-page").addEventListener("click", () => {
    if (S.offset + PAGE < S.total) { S.offset += PAGE; loadPredictions(); }
  });
  // Another tab may label the same batch: refresh the labels shown every few seconds.
  setInterval(() => { if (S.view === "batch" && !S.busy) loadState(true).catch(() => {}); }, 4000);
}

wire();
loadState(false).then((st) => {
  if (st.query) $("budget").value = st.query.budget;
}).catch((e) => say("cannot reach the dalcore server: " + e.message, true));

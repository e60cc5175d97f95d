// The run picker's table: every run on this server as `aekit runs` shows it (GET /api/runs/table:
// model, dataset, task, epochs, test metrics, training time, status).  Choosing a row loads that
// run through the picker's own <select>, so app.js's one way of switching runs is kept.  Uses
// app.js's `$` and `state` (classic scripts share their globals); its own names stay inside.
"use strict";

(() => {
  const cell = (value, digits) => {
    if (value === null || value === undefined) return "–";
    return typeof value === "number" ? value.toFixed(digits) : String(value);
  };

  const duration = (seconds) => {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const minutes = Math.floor(seconds / 60);
    return minutes < 60 ? `${minutes} min ${String(Math.round(seconds % 60)).padStart(2, "0")} s`
      : `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
  };

  function choose(id) {
    const select = $("run-select");
    if (select.value !== id) {
      select.value = id;
      select.dispatchEvent(new Event("change"));
    }
    $("runs-dialog").close();
  }

  function markCurrent() {
    for (const tr of document.querySelectorAll("#runs-table tbody tr")) {
      tr.classList.toggle("current", tr.dataset.run === state.run);
    }
  }

  function render(answer) {
    const table = document.createElement("table");
    table.id = "runs-table";
    const head = table.createTHead().insertRow();
    const headers = ["run", "model", "dataset", "task", "epochs", ...answer.metrics.map((m) => m.label),
      "time", "status"];
    const textColumns = new Set(["model", "dataset", "task", "status"]); // left-aligned, like their cells
    for (const text of headers) {
      const th = document.createElement("th");
      th.textContent = text;
      if (textColumns.has(text)) th.className = "text";
      head.append(th);
    }
    const body = table.createTBody();
    for (const r of answer.runs) {
      const tr = body.insertRow();
      tr.dataset.run = r.id;
      const broken = r.status === "broken";
      tr.classList.toggle("broken", broken);
      const name = tr.insertCell();
      if (broken) {
        name.textContent = r.name;
      } else {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = r.name;
        button.title = "explore this run";
        name.append(button);
        tr.addEventListener("click", () => choose(r.id));
      }
      const epochs = r.epochs === null ? "–"
        : r.status === "finished" ? String(r.epochs) : `${r.epochs}/${r.epochs_planned}`;
      for (const text of [r.model, r.dataset, r.task]) {
        const td = tr.insertCell();
        td.className = "text";
        td.textContent = text ?? "–";
      }
      tr.insertCell().textContent = epochs;
      for (const m of answer.metrics) tr.insertCell().textContent = cell(r[m.key], m.digits);
      tr.insertCell().textContent = duration(r.time);
      const status = tr.insertCell();
      status.className = "text";
      status.textContent = r.status;
      if (r.reason) status.title = r.reason;
    }
    $("runs-body").replaceChildren(table);
  }

  async function setup() {
    let answer;
    try {
      const res = await fetch("/api/runs/table");
      if (!res.ok) return; // the picker's <select> works without the table
      answer = await res.json();
    } catch (err) {
      return;
    }
    if (!answer.runs || !answer.runs.length) return;
    render(answer);
    const button = $("runs-button");
    button.classList.remove("hidden");
    button.addEventListener("click", () => { markCurrent(); $("runs-dialog").showModal(); });
  }

  document.addEventListener("DOMContentLoaded", setup);
})();

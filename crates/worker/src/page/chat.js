// The chat page: asks /api/chat as Server-Sent Events, shows the sources as
// soon as they arrive, then the answer as it streams; the reader may then rate
// it (/api/feedback). No dependencies.
"use strict";

const $ = (id) => document.getElementById(id);

async function loadCompanies() {
  try {
    const res = await fetch("/api/companies");
    if (!res.ok) return;
    const { companies } = await res.json();
    for (const c of companies) {
      const option = document.createElement("option");
      option.value = c.slug;
      option.textContent = `${c.name} (${c.documents})`;
      $("company").append(option);
    }
  } catch {
    // The filter is optional: the page still works without it.
  }
}

function showSource(source) {
  $("source-title").textContent = `[${source.number}] ${source.title || source.key}`;
  $("source-path").textContent = [source.company, source.key, source.heading_path].filter(Boolean).join(" › ");
  $("source-text").textContent = source.text;
  $("source-view").showModal();
}

function renderSources(sources) {
  const list = $("sources");
  list.replaceChildren();
  for (const source of sources) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "source";
    button.textContent = source.heading_path ? `${source.title} — ${source.heading_path}` : source.title || source.key;
    button.addEventListener("click", () => showSource(source));
    item.append(button);
    list.append(item);
  }
}

/** Calls `onEvent(name, data)` for each SSE event of the response body. */
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

/** The answer on screen, for its rating: id, question and cited keys. */
let answered = null;

function offerRating(answer) {
  answered = answer;
  $("rate-comment").value = "";
  $("rate-status").textContent = "";
  for (const id of ["rate-yes", "rate-no"]) $(id).disabled = false;
  $("rate").hidden = !answer;
}

async function rate(event) {
  if (!answered) return;
  const helpful = event.currentTarget.dataset.helpful === "true";
  for (const id of ["rate-yes", "rate-no"]) $(id).disabled = true;
  const comment = $("rate-comment").value.trim();
  try {
    const response = await fetch("/api/feedback", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...answered, helpful, ...(comment ? { comment } : {}) }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error?.message || `the service answered ${response.status}`);
    }
    $("rate-status").textContent = "Thank you: your rating was recorded.";
  } catch (error) {
    $("rate-status").textContent = `The rating could not be sent: ${error.message}`;
    for (const id of ["rate-yes", "rate-no"]) $(id).disabled = false;
  }
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  const company = $("company").value;
  $("send").disabled = true;
  $("answer").textContent = "";
  $("sources").replaceChildren();
  $("status").textContent = "Searching the documents…";
  offerRating(null);
  try {
    const response = await fetch("/api/chat", {
      method: "POST",
      headers: { "content-type": "application/json", accept: "text/event-stream" },
      body: JSON.stringify({ question, stream: true, ...(company ? { company } : {}) }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      $("status").textContent = body.error?.message || `The service answered ${response.status}.`;
      return;
    }
    const answerId = response.headers.get("x-request-id");
    let cited = [];
    await readEvents(response, (name, data) => {
      if (name === "sources") {
        cited = data.sources.map((source) => source.key);
        renderSources(data.sources);
        $("status").textContent = data.sources.length ? "Writing the answer…" : "No passage matched; answering without sources.";
      } else if (name === "delta") {
        $("answer").textContent += data.text;
      } else if (name === "done") {
        $("status").textContent = `Answered in ${data.timings?.total_ms ?? "?"} ms.`;
        if (answerId) offerRating({ answer_id: answerId, question, sources: cited });
      } else if (name === "error") {
        $("status").textContent = data.message || "The answer could not be completed.";
      }
    });
  } catch (error) {
    $("status").textContent = `The request failed: ${error.message}`;
  } finally {
    $("send").disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("ask").addEventListener("submit", ask);
  for (const id of ["rate-yes", "rate-no"]) $(id).addEventListener("click", rate);
  $("question").addEventListener("keydown", (e) => {
    // Enter asks, Shift+Enter adds a line.
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      $("ask").requestSubmit();
    }
  });
  loadCompanies();
});

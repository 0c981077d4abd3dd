// The drawing page: pointer strokes -> POST /predict while drawing -> top-3 guesses; undo, clear,
// and a Quick, Draw!-style game (a word to draw, 20 seconds, won as soon as the model guesses it).
//
// Strokes are sent as Quick, Draw! raw strokes: [[x...], [y...], [t...]] in canvas pixels, t in ms
// since the drawing's first point. The server applies the model's own preprocessing, so nothing is
// scaled or simplified here.
"use strict";

const GAME_SECONDS = 20;
const REFRESH_MS = 150;     // at most one request per this interval while the pen moves
const TOP_K = 3;

const canvas = document.getElementById("canvas");
const ctx = canvas.getContext("2d");
const guessList = document.getElementById("guesses");
const statusLine = document.getElementById("status");
const result = document.getElementById("result");
const gameBox = document.getElementById("game");
const promptBox = document.getElementById("prompt");
const timerBox = document.getElementById("timer");

let strokes = [];           // finished and current strokes, each [[x...], [y...], [t...]]
let current = null;         // the stroke being drawn
let t0 = null;              // time of the drawing's first point
let classes = [];
let inFlight = false;       // one request at a time; a newer drawing is sent when it returns
let dirty = false;
let lastSent = 0;
let version = 0;            // bumps on every change, so a stale answer never overwrites a newer one
let game = null;            // {target, deadline, timer, over}

// -- drawing ------------------------------------------------------------------------------------
function scaleCanvas() {
  const ratio = window.devicePixelRatio || 1;
  const rect = canvas.getBoundingClientRect();
  canvas.width = Math.round(rect.width * ratio);
  canvas.height = Math.round(rect.height * ratio);
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  redraw();
}

function point(event) {
  const rect = canvas.getBoundingClientRect();
  return [event.clientX - rect.left, event.clientY - rect.top];
}

function redraw() {
  const rect = canvas.getBoundingClientRect();
  ctx.clearRect(0, 0, rect.width, rect.height);
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.lineWidth = 4;
  ctx.strokeStyle = "#1d2433";
  for (const [xs, ys] of strokes) {
    ctx.beginPath();
    ctx.moveTo(xs[0], ys[0]);
    if (xs.length === 1) ctx.lineTo(xs[0] + 0.01, ys[0]);
    for (let i = 1; i < xs.length; i++) ctx.lineTo(xs[i], ys[i]);
    ctx.stroke();
  }
}

function addPoint(event) {
  const [x, y] = point(event);
  const xs = current[0];
  const ys = current[1];
  if (xs.length && xs[xs.length - 1] === x && ys[ys.length - 1] === y) return;
  xs.push(Math.round(x * 100) / 100);
  ys.push(Math.round(y * 100) / 100);
  current[2].push(Math.round(performance.now() - t0));
  changed();
}

canvas.addEventListener("pointerdown", (event) => {
  if (event.button !== 0 || (game && game.over)) return;
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  if (t0 === null) t0 = performance.now();
  current = [[], [], []];
  strokes.push(current);
  addPoint(event);
});

canvas.addEventListener("pointermove", (event) => {
  if (!current) return;
  event.preventDefault();
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) addPoint(e);
});

function endStroke() {
  if (!current) return;
  current = null;
  schedule(true);
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

function changed() {
  version++;
  redraw();
  schedule(false);
}

// -- guesses ------------------------------------------------------------------------------------
let timerPending = false;   // one refresh timer at a time

function schedule(now) {
  dirty = true;
  if (inFlight) return;
  const wait = now ? 0 : Math.max(0, REFRESH_MS - (performance.now() - lastSent));
  if (wait === 0) { send(); return; }
  if (timerPending) return;
  timerPending = true;
  setTimeout(() => { timerPending = false; if (dirty && !inFlight) send(); }, wait);
}

async function send() {
  dirty = false;
  if (!strokes.length) { showGuesses([]); return; }
  inFlight = true;
  lastSent = performance.now();
  const sent = version;
  try {
    const response = await fetch("/predict", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({strokes, top_k: TOP_K}),
    });
    const body = await response.json();
    if (sent === version || !dirty) {
      if (response.ok) {
        showGuesses(body.predictions);
        statusLine.textContent = `${strokes.length} stroke${strokes.length === 1 ? "" : "s"}`;
      } else {
        statusLine.textContent = body.detail || `error ${response.status}`;
      }
    }
  } catch (err) {
    statusLine.textContent = `cannot reach the server: ${err}`;
  } finally {
    inFlight = false;
    if (dirty) schedule(false);
  }
}

function showGuesses(predictions) {
  guessList.replaceChildren(...predictions.map((p) => {
    const li = document.createElement("li");
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${(100 * p.probability).toFixed(1)}%`;
    const word = document.createElement("span");
    word.className = "word";
    word.textContent = p.word;
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = `${Math.round(100 * p.probability)}%`;
    li.append(bar, word, pct);
    if (game && p.word === game.target) li.classList.add("target");
    return li;
  }));
  if (game && !game.over && predictions.length && predictions[0].word === game.target) finishGame(true);
}

// -- buttons ------------------------------------------------------------------------------------
function clearDrawing() {
  strokes = [];
  current = null;
  t0 = null;
  version++;
  redraw();
  showGuesses([]);
  statusLine.textContent = "Waiting for your first stroke.";
}

function undo() {
  if (!strokes.length) return;
  strokes.pop();
  current = null;
  if (!strokes.length) { clearDrawing(); return; }
  changed();
  schedule(true);
}

document.getElementById("clear").addEventListener("click", () => { clearDrawing(); if (game) result.textContent = ""; });
document.getElementById("undo").addEventListener("click", undo);
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "z") { event.preventDefault(); undo(); }
  if (event.key === "Escape") clearDrawing();
});

// -- game ---------------------------------------------------------------------------------------
function startGame() {
  if (!classes.length) return;
  if (game) clearInterval(game.timer);
  clearDrawing();
  const target = classes[Math.floor(Math.random() * classes.length)];
  game = {target, deadline: performance.now() + GAME_SECONDS * 1000, timer: null, over: false};
  gameBox.hidden = false;
  promptBox.innerHTML = "";
  promptBox.append("Draw: ");
  const b = document.createElement("b");
  b.textContent = target;
  promptBox.append(b);
  result.className = "result";
  result.textContent = "";
  document.getElementById("play").textContent = "Next word";
  tick();
  game.timer = setInterval(tick, 100);
}

function tick() {
  const left = Math.max(0, (game.deadline - performance.now()) / 1000);
  timerBox.textContent = `${left.toFixed(1)} s`;
  timerBox.classList.toggle("low", left < 5);
  if (left <= 0) finishGame(false);
}

function finishGame(won) {
  clearInterval(game.timer);
  game.over = true;
  const seconds = GAME_SECONDS - Math.max(0, (game.deadline - performance.now()) / 1000);
  result.className = `result ${won ? "win" : "lose"}`;
  result.textContent = won ? `I know, it's ${game.target}! (${seconds.toFixed(1)} s)`
                           : `Time's up: the model did not see ${game.target}.`;
}

document.getElementById("play").addEventListener("click", startGame);

// -- start --------------------------------------------------------------------------------------
async function loadClasses() {
  try {
    const response = await fetch("/classes");
    classes = (await response.json()).classes;
    document.getElementById("classes").textContent = classes.join(", ");
  } catch (err) {
    statusLine.textContent = `cannot load the classes: ${err}`;
  }
}

window.addEventListener("resize", scaleCanvas);
scaleCanvas();
loadClasses();

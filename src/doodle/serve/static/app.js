// The drawing page: pointer strokes -> POST /predict while drawing -> top-3 guesses; undo, clear,
// and a Quick, Draw!-style game (a word to draw, 20 seconds, won as soon as the model guesses it).
//
// Strokes are sent as Quick, Draw! raw strokes: [[x...], [y...], [t...]] in canvas pixels, t in ms
// since the drawing's first point. The server applies the model's own preprocessing, so nothing is
// scaled or simplified here (the server does not care about the canvas' size either).
//
// The URL may set the game's length: /?game_seconds=5 (the tests use it for a quick time-out).
"use strict";

const params = new URLSearchParams(window.location.search);
const GAME_SECONDS = Math.max(0.5, Number(params.get("game_seconds")) || 20);
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
const playButton = document.getElementById("play");
const giveUpButton = document.getElementById("giveup");
const classList = document.getElementById("classes");

let strokes = [];           // finished and current strokes, each [[x...], [y...], [t...]]
let current = null;         // the stroke being drawn
let t0 = null;              // time of the drawing's first point
let side = 0;               // the canvas' size in CSS pixels when the strokes were last scaled
let classes = [];
let inFlight = false;       // one request at a time; a newer drawing is sent when it returns
let dirty = false;          // the drawing changed since the last request was sent
let problem = null;         // the last request's error, shown until the next answer
let lastSent = 0;
let version = 0;            // bumps on every change, so a stale answer never overwrites a newer one
let game = null;            // the game being played: {target, deadline, timer}; null in free mode
let lastTarget = null;      // the word of the game being played or just ended, marked in the guesses

// -- drawing ------------------------------------------------------------------------------------
function scaleCanvas() {
  const ratio = window.devicePixelRatio || 1;
  const rect = canvas.getBoundingClientRect();
  // the layout may resize the canvas (a phone turned round): the drawing keeps its place on it
  if (side > 0 && rect.width > 0 && rect.width !== side) rescale(rect.width / side);
  side = rect.width;
  canvas.width = Math.round(rect.width * ratio);
  canvas.height = Math.round(rect.height * ratio);
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  redraw();
}

function rescale(factor) {
  for (const stroke of strokes) {
    for (const axis of [0, 1]) stroke[axis] = stroke[axis].map((v) => Math.round(v * factor * 100) / 100);
  }
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
  ctx.lineWidth = Math.max(3, rect.width / 120);
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
  if (event.button !== 0) return;
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
  showStatus();
  if (inFlight) return;
  const wait = now ? 0 : Math.max(0, REFRESH_MS - (performance.now() - lastSent));
  if (wait === 0) { send(); return; }
  if (timerPending) return;
  timerPending = true;
  setTimeout(() => { timerPending = false; if (dirty && !inFlight) send(); }, wait);
}

// "Thinking" whenever a guess is pending: a request in flight, or a change not yet sent.
function showStatus() {
  const thinking = inFlight || (dirty && strokes.length > 0);
  document.body.classList.toggle("thinking", thinking);
  if (thinking) statusLine.textContent = "Thinking\u2026";
  else if (problem) statusLine.textContent = problem;
  else if (!strokes.length) statusLine.textContent = "Waiting for your first stroke.";
  else statusLine.textContent = `${strokes.length} stroke${strokes.length === 1 ? "" : "s"}`;
}

async function send() {
  dirty = false;
  if (!strokes.length) { showGuesses([]); showStatus(); return; }
  inFlight = true;
  showStatus();
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
      problem = response.ok ? null : (body.detail || `error ${response.status}`);
      if (response.ok) showGuesses(body.predictions);
    }
  } catch (err) {
    problem = `cannot reach the server: ${err}`;
  } finally {
    inFlight = false;
    showStatus();
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
    if (p.word === lastTarget) li.classList.add("target");
    return li;
  }));
  if (game && predictions.length && predictions[0].word === game.target) finishGame("won");
}

// -- buttons ------------------------------------------------------------------------------------
function clearDrawing() {
  strokes = [];
  current = null;
  t0 = null;
  problem = null;
  version++;
  redraw();
  showGuesses([]);
  showStatus();
}

function undo() {
  if (!strokes.length) return;
  strokes.pop();
  current = null;
  if (!strokes.length) { clearDrawing(); return; }
  changed();
  schedule(true);
}

// Clear starts again: in a game, the same word with an empty canvas; after one, free drawing.
function clearAll() {
  clearDrawing();
  if (!game) {
    result.className = "result";
    result.textContent = "";
    gameBox.hidden = true;
    lastTarget = null;
    markTarget(null);
  }
}

document.getElementById("clear").addEventListener("click", clearAll);
document.getElementById("undo").addEventListener("click", undo);
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "z") { event.preventDefault(); undo(); }
  if (event.key === "Escape") clearAll();
});

// -- game ---------------------------------------------------------------------------------------
function startGame() {
  if (!classes.length) return;
  if (game) clearInterval(game.timer);
  game = null;
  clearDrawing();
  const target = classes[Math.floor(Math.random() * classes.length)];
  game = {target, deadline: performance.now() + GAME_SECONDS * 1000, timer: null};
  lastTarget = target;
  gameBox.hidden = false;
  gameBox.classList.remove("over");
  promptBox.replaceChildren("Draw: ", Object.assign(document.createElement("b"), {textContent: target}));
  result.className = "result";
  result.textContent = "";
  playButton.textContent = "Next word";
  giveUpButton.hidden = false;
  markTarget(target);
  tick();
  game.timer = setInterval(tick, 100);
}

function tick() {
  if (!game) return;
  const left = Math.max(0, (game.deadline - performance.now()) / 1000);
  timerBox.textContent = `${left.toFixed(1)} s`;
  timerBox.classList.toggle("low", left < 5);
  if (left <= 0) finishGame("timeout");
}

// The game ends (won, timed out or given up) and the page is back in free mode: drawing, Undo and
// Clear work as before, and the result stays until Clear or the next game.
function finishGame(outcome) {
  const {target, deadline, timer} = game;
  clearInterval(timer);
  game = null;
  const seconds = GAME_SECONDS - Math.max(0, (deadline - performance.now()) / 1000);
  const text = {
    won: `I know, it's ${target}! (${seconds.toFixed(1)} s)`,
    timeout: `Time's up: the model did not see ${target}.`,
    lost: `You gave up: the word was ${target}.`,
  }[outcome];
  result.className = `result ${outcome === "won" ? "win" : "lose"}`;
  result.textContent = text;
  gameBox.classList.add("over");
  giveUpButton.hidden = true;
  playButton.textContent = "Play again";
}

playButton.addEventListener("click", startGame);
giveUpButton.addEventListener("click", () => { if (game) finishGame("lost"); });

// -- start --------------------------------------------------------------------------------------
function markTarget(target) {
  for (const li of classList.children) li.classList.toggle("target", li.textContent === target);
}

async function loadClasses() {
  try {
    const response = await fetch("/classes");
    classes = (await response.json()).classes;
    classList.replaceChildren(...classes.map((name) => Object.assign(document.createElement("li"),
                                                                      {textContent: name})));
    document.getElementById("class-count").textContent = `(${classes.length})`;
  } catch (err) {
    problem = `cannot load the classes: ${err}`;
    showStatus();
  }
}

window.addEventListener("resize", scaleCanvas);
scaleCanvas();
loadClasses();

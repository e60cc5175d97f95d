// aekit explorer, melody runs: hear what the map decodes.  Loaded after app.js, whose `state`
// and `postJSON` it uses (classic scripts share one global scope).  Melodies come from the
// server as notes, [[start_step, end_step, midi_pitch], ...] with seconds_per_step; they are
// rendered to an AudioBuffer with an OfflineAudioContext (a soft triangle wave per note) and
// played with an AudioContext.  Nothing is fetched from anywhere but this server.
"use strict";

const aekitMusic = (() => {
  const SAMPLE_RATE = 22050;
  const GAP_STEPS = 8;  // silence between the melodies of an interpolation: half a bar
  const LEVEL = 0.25;
  const music = { lastRender: null, renders: 0, context: null, source: null };

  const $m = (id) => document.getElementById(id);
  const isMelodyRun = () => !!(state.info && state.info.data_kind === "melody");
  const hz = (pitch) => 440 * 2 ** ((pitch - 69) / 12);

  // -- rendering ------------------------------------------------------------------------------

  // melodies: lists of notes; each starts after the one before and a short gap.
  function layout(melodies, steps) {
    const notes = [];
    melodies.forEach((melody, i) => {
      const offset = i * (steps + GAP_STEPS);
      for (const [start, end, pitch] of melody) notes.push([start + offset, end + offset, pitch]);
    });
    return { notes, totalSteps: melodies.length * (steps + GAP_STEPS) - GAP_STEPS };
  }

  // Where the rendered buffer really holds each note: its loudness, and its pitch measured from
  // the zero crossings (a triangle wave crosses zero twice a period).  The page's test reads these.
  function analyse(buffer, notes, secondsPerStep) {
    const data = buffer.getChannelData(0);
    const rate = buffer.sampleRate;
    const perNote = notes.map(([start, end, pitch]) => {
      const from = Math.floor((start * secondsPerStep + 0.02) * rate);
      const to = Math.floor((end * secondsPerStep - 0.03) * rate);
      let sum = 0, first = -1, last = -1, crossings = 0;
      for (let i = from; i < to; i++) {
        sum += data[i] * data[i];
        if (i > from && (data[i - 1] < 0) !== (data[i] < 0)) {
          // the crossing's position between the two samples
          const at = i - 1 + data[i - 1] / (data[i - 1] - data[i]);
          if (first < 0) first = at;
          last = at;
          crossings += 1;
        }
      }
      const rms = to > from ? Math.sqrt(sum / (to - from)) : 0;
      const measured = crossings > 2 ? ((crossings - 1) / 2) / ((last - first) / rate) : null;
      return { start, end, pitch, expectedHz: hz(pitch), measuredHz: measured, rms };
    });
    let quiet = 0, count = 0;  // loudness where no note sounds
    const sounding = new Uint8Array(data.length);
    for (const [start, end] of notes) sounding.fill(1, Math.floor(start * secondsPerStep * rate), Math.ceil(end * secondsPerStep * rate) + 64);
    for (let i = 0; i < data.length; i++) if (!sounding[i]) { quiet += data[i] * data[i]; count += 1; }
    let peak = 0;
    for (let i = 0; i < data.length; i++) peak = Math.max(peak, Math.abs(data[i]));
    return { perNote, silenceRms: count ? Math.sqrt(quiet / count) : 0, peak };
  }

  async function render(melodies, secondsPerStep, steps) {
    const { notes, totalSteps } = layout(melodies, steps);
    const duration = totalSteps * secondsPerStep + 0.3;
    const ctx = new OfflineAudioContext(1, Math.ceil(duration * SAMPLE_RATE), SAMPLE_RATE);
    for (const [start, end, pitch] of notes) {
      const t0 = start * secondsPerStep;
      const t1 = end * secondsPerStep;
      const osc = ctx.createOscillator();
      osc.type = "triangle";
      osc.frequency.value = hz(pitch);
      const gain = ctx.createGain();
      // a short attack and release: no clicks, and repeated notes stay two notes
      gain.gain.setValueAtTime(0, t0);
      gain.gain.linearRampToValueAtTime(LEVEL, t0 + 0.01);
      gain.gain.setValueAtTime(LEVEL, Math.max(t0 + 0.01, t1 - 0.02));
      gain.gain.linearRampToValueAtTime(0, t1);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t0);
      osc.stop(t1 + 0.01);
    }
    const buffer = await ctx.startRendering();
    music.renders += 1;
    music.lastRender = { notes, secondsPerStep, sampleRate: buffer.sampleRate, length: buffer.length,
                         duration: buffer.duration, ...analyse(buffer, notes, secondsPerStep) };
    document.body.dataset.audio = String(music.renders);  // for tests: a new buffer is ready
    return buffer;
  }

  function stop() {
    if (music.source) { try { music.source.stop(); } catch (err) { /* already stopped */ } }
    music.source = null;
  }

  async function play(melodies, secondsPerStep) {
    const steps = state.info.steps;
    const buffer = await render(melodies, secondsPerStep, steps);
    stop();
    try {
      music.context = music.context || new AudioContext();
      if (music.context.state === "suspended") await music.context.resume();
      const source = music.context.createBufferSource();
      source.buffer = buffer;
      source.connect(music.context.destination);
      source.start();
      music.source = source;
    } catch (err) {
      // no audio device: the buffer is still rendered, and says what would have played
    }
    const count = melodies.reduce((n, m) => n + m.length, 0);
    $m("music-status").textContent = `${melodies.length > 1 ? `${melodies.length} melodies, ` : ""}` +
      `${count} notes, ${buffer.duration.toFixed(1)} s`;
  }

  // -- what the buttons play --------------------------------------------------------------------

  async function playDecoded() {
    if (!state.lastDecode) return;
    const generation = state.generation;
    try {
      const res = await postJSON("/api/decode", state.lastDecode);
      if (generation === state.generation) await play([res.notes], res.seconds_per_step);
    } catch (err) { showError(err); }
  }

  async function playInterpolation() {
    if (state.ends.length !== 2) {
      $m("music-status").textContent = "shift-click two places on the map first";
      return;
    }
    const generation = state.generation;
    const steps = Math.max(2, Math.min(32, Math.round(Number($m("steps").value)) || 10));
    try {
      const res = await postJSON("/api/interpolate", { a: state.ends[0].target, b: state.ends[1].target, steps,
                                                       spherical: $m("spherical").checked });
      if (generation === state.generation) await play(res.melodies, res.seconds_per_step);
    } catch (err) { showError(err); }
  }

  // -- the panel --------------------------------------------------------------------------------

  function button(id, text, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.id = id;
    b.textContent = text;
    b.addEventListener("click", onClick);
    return b;
  }

  function buildPanel() {
    const panel = document.createElement("section");
    panel.id = "music-panel";
    panel.className = "panel hidden";
    const title = document.createElement("h2");
    title.textContent = "Listen";
    const row = document.createElement("div");
    row.className = "row";
    const auto = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.id = "play-on-click";
    box.checked = true;
    auto.append(box, " play what I click");
    row.append(button("play-decoded", "Play decoded", playDecoded),
               button("play-interpolation", "Play interpolation", playInterpolation),
               button("stop-audio", "Stop", stop), auto);
    const status = document.createElement("p");
    status.id = "music-status";
    status.className = "muted";
    const hint = document.createElement("p");
    hint.className = "hint";
    hint.textContent = "Each dot is a test melody (hover to see it). Click or drag on the map to decode a melody " +
      "and hear it; shift-click two places to interpolate, then play the way from one to the other.";
    panel.append(title, row, status, hint);
    $m("decode-panel").after(panel);
  }

  function showRunKind() {
    const melody = isMelodyRun();
    document.body.classList.toggle("melody-run", melody);
    $m("music-panel").classList.toggle("hidden", !melody);
    $m("pad-panel").classList.toggle("hidden", melody);
    if (!melody) stop();
  }

  function setup() {
    buildPanel();
    // app.js marks the body ready once a run has loaded; that is when its kind is known.
    new MutationObserver(() => { if (document.body.dataset.ready === "1") showRunKind(); })
      .observe(document.body, { attributes: true, attributeFilter: ["data-ready"] });
    // a click on the map (not a shift-click, which picks an interpolation end) plays what it decoded
    $m("map").addEventListener("pointerup", (ev) => {
      if (isMelodyRun() && !ev.shiftKey && $m("play-on-click").checked) setTimeout(playDecoded, 0);
    });
  }

  document.addEventListener("DOMContentLoaded", setup);
  window.aekitMusic = music;  // what was rendered last, for the curious (and the tests)
  return music;
})();

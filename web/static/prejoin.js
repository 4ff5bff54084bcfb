// The prejoin check: camera and microphone preview, device pickers, a microphone level meter
// (WebAudio AnalyserNode), a network check (one WebSocket round trip) and clear guidance when
// permission is denied, no device exists or the camera is busy.
import { networkCheck } from './signaling.js';
import { t } from './i18n.js';

const STORE_KEY = 'onedoor.devices';

export function savedDevices() {
  try { return JSON.parse(sessionStorage.getItem(STORE_KEY) || '{}'); } catch { return {}; }
}

function constraints(devices) {
  return {
    audio: devices.audio ? { deviceId: { exact: devices.audio }, echoCancellation: true, noiseSuppression: true } : { echoCancellation: true, noiseSuppression: true },
    video: devices.video ? { deviceId: { exact: devices.video }, width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15 } }
      : { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15 } },
  };
}

/** Explain a getUserMedia failure in plain zh-CN. */
export function mediaErrorText(err) {
  switch (err && err.name) {
    case 'NotAllowedError': case 'SecurityError':
      return t('media.denied');
    case 'NotFoundError': case 'OverconstrainedError':
      return t('media.notfound');
    case 'NotReadableError': case 'AbortError':
      return t('media.busy');
    default:
      return t('media.other');
  }
}

/** Open camera + microphone with the saved choice; falls back to any device if it vanished. */
export async function openLocalMedia(devices = savedDevices()) {
  try {
    return await navigator.mediaDevices.getUserMedia(constraints(devices));
  } catch (e) {
    if (e.name === 'OverconstrainedError' || e.name === 'NotFoundError') {
      if (devices.audio || devices.video) return navigator.mediaDevices.getUserMedia(constraints({}));
    }
    throw e;
  }
}

export class LevelMeter {
  constructor(stream, meterEl) {
    this.meterEl = meterEl;
    const AC = window.AudioContext || window.webkitAudioContext;
    this.ctx = new AC();
    const src = this.ctx.createMediaStreamSource(stream);
    this.analyser = this.ctx.createAnalyser();
    this.analyser.fftSize = 512;
    src.connect(this.analyser);
    this.buf = new Float32Array(this.analyser.fftSize);
    this.level = 0;
    const tick = () => {
      this.analyser.getFloatTimeDomainData(this.buf);
      let sum = 0;
      for (const v of this.buf) sum += v * v;
      const rms = Math.sqrt(sum / this.buf.length);
      this.level = Math.min(1, rms * 4);
      if (this.meterEl) { this.meterEl.value = this.level; this.meterEl.dataset.level = this.level.toFixed(2); }
      this.raf = requestAnimationFrame(tick);
    };
    this.raf = requestAnimationFrame(tick);
    this.ctx.resume().catch(() => {});
  }
  stop() { cancelAnimationFrame(this.raf); this.ctx.close().catch(() => {}); }
}

/**
 * Run the prejoin panel inside `root` (templates/_prejoin.html). Resolves when the check is
 * usable; `readyEl` (a button) is enabled once media works. Returns a controller.
 */
export function mountPrejoin(root, { onReady } = {}) {
  const video = root.querySelector('video');
  const camSel = root.querySelector('[name=pj-camera]');
  const micSel = root.querySelector('[name=pj-mic]');
  const meter = root.querySelector('meter');
  const net = root.querySelector('.pj-network');
  const errEl = root.querySelector('.pj-error');
  const retry = root.querySelector('.pj-retry');
  const status = root.querySelector('.pj-status');
  const state = { stream: null, meter: null, ok: false, networkOk: false };

  async function fillDevices() {
    const list = await navigator.mediaDevices.enumerateDevices();
    const saved = savedDevices();
    for (const [sel, kind] of [[camSel, 'videoinput'], [micSel, 'audioinput']]) {
      if (!sel) continue;
      sel.innerHTML = '';
      list.filter((d) => d.kind === kind).forEach((d, i) => {
        const o = document.createElement('option');
        o.value = d.deviceId;
        o.textContent = d.label || `${kind === 'videoinput' ? t('pj.camera') : t('pj.mic')} ${i + 1}`;
        sel.append(o);
      });
      const want = kind === 'videoinput' ? saved.video : saved.audio;
      if (want && [...sel.options].some((o) => o.value === want)) sel.value = want;
    }
  }

  async function open() {
    errEl.textContent = ''; errEl.hidden = true; retry.hidden = true;
    stop();
    const devices = { video: camSel && camSel.value, audio: micSel && micSel.value };
    try {
      state.stream = await openLocalMedia(devices.video || devices.audio ? devices : savedDevices());
    } catch (e) {
      state.ok = false;
      errEl.textContent = mediaErrorText(e);
      errEl.dataset.error = e.name || 'Error';
      errEl.hidden = false; retry.hidden = false;
      status.textContent = t('pj.notready');
      onReady && onReady(null);
      return;
    }
    video.srcObject = state.stream;
    try { state.meter = new LevelMeter(state.stream, meter); } catch { /* no WebAudio: no meter */ }
    await fillDevices();
    const v = state.stream.getVideoTracks()[0]; const a = state.stream.getAudioTracks()[0];
    sessionStorage.setItem(STORE_KEY, JSON.stringify({
      video: v && v.getSettings().deviceId, audio: a && a.getSettings().deviceId,
    }));
    state.ok = true;
    status.textContent = t('pj.ready');
    root.dataset.ready = 'true';
    onReady && onReady(state.stream);
  }

  function stop() {
    if (state.meter) state.meter.stop();
    if (state.stream) state.stream.getTracks().forEach((tr) => tr.stop());
    state.meter = null; state.stream = null; root.dataset.ready = 'false';
  }

  async function checkNetwork() {
    net.textContent = t('pj.net.checking');
    const r = await networkCheck();
    state.networkOk = r.ok;
    net.dataset.ok = String(r.ok);
    net.textContent = r.ok
      ? (r.rttMs < 300 ? t('pj.net.good', { ms: r.rttMs }) : t('pj.net.slow', { ms: r.rttMs }))
      : t('pj.net.bad');
  }

  camSel && camSel.addEventListener('change', open);
  micSel && micSel.addEventListener('change', open);
  retry.addEventListener('click', () => { open(); checkNetwork(); });
  open();
  checkNetwork();
  return {
    state,
    /** Hand the preview stream over (the room uses it) without stopping its tracks. */
    take() { if (state.meter) state.meter.stop(); state.meter = null; const s = state.stream; state.stream = null; return s; },
    stop,
  };
}

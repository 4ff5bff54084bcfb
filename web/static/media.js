// The browser's one RTCPeerConnection to the media server (aiortc SFU, VP8 + Opus).
// The browser offers its own tracks; the server renegotiates with offers of its own when other
// participants' tracks come and go, and the browser (the polite peer) answers them.
// Forwarded track ids are "<publisher peer id>.<kind>.<random>" (media/sfu.py).
//
// Events: track {peerId, kind, track, mid}, quality {quality, rttMs, lossPct},
//         connection {state}, failed {}
import {
  JITTER_HOLD_MS, START_RAMP_MS, cameraBitrate, jitterTarget, linkQuality, peerOfTrackId,
} from './room-model.js';

const GATHER_TIMEOUT_MS = 2500;
// How often, and how many times, a new connection looks for its camera's first encoded frame.
const FIRST_FRAME_POLL_MS = 100;
const FIRST_FRAME_POLLS = 100;
// VP8 temporal scalability, preferred first (the SFU drops upper layers for weak subscribers).
const TEMPORAL_MODES = ['L1T3', 'L1T2'];

function waitGathering(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(finish, GATHER_TIMEOUT_MS);
    function finish() { clearTimeout(t); pc.removeEventListener('icegatheringstatechange', check); resolve(); }
    function check() { if (pc.iceGatheringState === 'complete') finish(); }
    pc.addEventListener('icegatheringstatechange', check);
  });
}

export function peerOfTrack(track) {
  return peerOfTrackId(track.id);
}

export class MediaLink extends EventTarget {
  /**
   * @param {import('./signaling.js').Signaling} sig
   * @param {Array<{urls: string[], username?: string, credential?: string}>} iceServers explicit, from the welcome
   * @param {MediaStream} localStream
   */
  constructor(sig, iceServers, localStream) {
    super();
    this.sig = sig;
    this.iceServers = (iceServers || []).map((s) => {
      const o = { urls: s.urls };
      if (s.username) o.username = s.username;
      if (s.credential) o.credential = s.credential;
      return o;
    });
    this.localStream = localStream;
    this.pc = null;
    this.chain = Promise.resolve(); // every negotiation step runs in order
    this.senders = {};
    /** The camera's scalabilityMode once set; null when none could be. */
    this._scalability = undefined;
    this.screenTransceiver = null;
    this.qualityTimer = null;
    this.lastQuality = 'unknown';
    /** False while the participant chose audio only: the camera's sender carries no track. */
    this.sendVideo = true;
    /** The server's `publish_limit` for the camera, bits/s (null: MAX_VIDEO_BITRATE only). */
    this.videoLimit = null;
    /** Received video streams' freeze counts and hold deadlines, by track id (`_tuneJitter`). */
    this._froze = new Map();
    this._lossyUntil = 0;
    /**
     * When the camera's start ramp began (performance.now(): its first frame encoded on this peer
     * connection; null before, -Infinity once over), and the timer that ends it.
     */
    this._startedAt = null;
    this._rampTimer = null;
    this._onServerOffer = (e) => this._enqueue(() => this._answer(e.detail.sdp));
    sig.addEventListener('offer', this._onServerOffer);
  }

  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }
  _enqueue(step) {
    this.chain = this.chain.then(step).catch((e) => { console.warn('negotiation step failed', e); });
    return this.chain;
  }

  /** A fresh peer connection with our tracks, and our offer. */
  start() {
    return this._enqueue(async () => {
      this._closePc();
      // Never a default configuration: the ICE servers come from the welcome (empty in tests).
      const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: 'max-bundle' });
      this.pc = pc;
      this._startedAt = null; // _closePc() above cleared the last ramp's timer
      for (const track of this.localStream.getTracks()) {
        const tr = pc.addTransceiver(track, { direction: 'sendonly', streams: [this.localStream] });
        this.senders[track.kind] = tr.sender;
        if (track.kind === 'video') {
          if (!this.sendVideo) await tr.sender.replaceTrack(null);
          this._capBitrate(tr.sender);
        }
      }
      pc.ontrack = (ev) => {
        const track = ev.track;
        this._emit('track', { peerId: peerOfTrack(track), kind: track.kind, track, mid: ev.transceiver && ev.transceiver.mid });
      };
      pc.onconnectionstatechange = () => {
        this._emit('connection', { state: pc.connectionState });
        if (pc.connectionState === 'failed') this._emit('failed', {});
      };
      await this._offer();
      this._startQuality();
      this._rampFromFirstFrame(pc).catch(() => {});
    });
  }

  /**
   * Begin the camera's start ramp (room-model.js cameraBitrate) once `pc` has encoded its first
   * video frame. Capped from the start, Chromium's encoder began below the 300 kbit/s it wants
   * for 640x480, dropped its first frames and went to 360p, where it mostly stayed.
   */
  async _rampFromFirstFrame(pc) {
    for (let i = 0; i < FIRST_FRAME_POLLS && this.pc === pc; i++) {
      const sender = this.senders.video;
      let encoded = 0;
      try {
        for (const r of (await sender.getStats()).values()) {
          if (r.type === 'outbound-rtp') encoded += r.framesEncoded || 0;
        }
      } catch { /* no sender yet, or closed */ }
      if (encoded > 0 && this.pc === pc) {
        this._startedAt = performance.now();
        this._rampTimer = setTimeout(() => {
          this._startedAt = -Infinity; // over, whatever the two clocks' rounding says
          if (this.pc === pc && this.senders.video) this._capBitrate(this.senders.video);
        }, START_RAMP_MS);
        await this._capBitrate(sender);
        return;
      }
      await new Promise((resolve) => { setTimeout(resolve, FIRST_FRAME_POLL_MS); });
    }
  }

  async _capBitrate(sender) {
    try {
      const p = sender.getParameters();
      if (!p.encodings || !p.encodings.length) p.encodings = [{}];
      const sinceStart = this._startedAt === null ? null : performance.now() - this._startedAt;
      p.encodings[0].maxBitrate = cameraBitrate(this.videoLimit, sinceStart);
      await sender.setParameters(p);
    } catch { /* not negotiated yet: applied on the next change */ }
    await this._temporalLayers(sender);
  }

  /**
   * VP8 with temporal layers (L1T3, else L1T2), so the SFU can forward fewer frames per second
   * to a weak subscriber instead of pausing its video (docs/media.md, "Temporal layers").
   * Only once VP8 was negotiated: an H.264 room is left as it is.
   */
  async _temporalLayers(sender) {
    if (this._scalability === null) return; // tried: not supported here
    let p;
    try { p = sender.getParameters(); } catch { return; }
    const codec = p.codecs && p.codecs[0];
    if (!codec || !p.encodings || !p.encodings.length) return; // not negotiated yet
    if ((codec.mimeType || '').toLowerCase() !== 'video/vp8') return;
    if (this._scalability && p.encodings[0].scalabilityMode === this._scalability) return;
    let modes = TEMPORAL_MODES;
    const caps = typeof RTCRtpSender.getCapabilities === 'function' && RTCRtpSender.getCapabilities('video');
    const vp8 = caps && caps.codecs.find((c) => (c.mimeType || '').toLowerCase() === 'video/vp8');
    if (vp8 && Array.isArray(vp8.scalabilityModes)) modes = modes.filter((m) => vp8.scalabilityModes.includes(m));
    for (const mode of modes) {
      try {
        const q = sender.getParameters();
        q.encodings[0].scalabilityMode = mode;
        await sender.setParameters(q);
        this._scalability = mode;
        return;
      } catch { /* not this mode: try the next */ }
    }
    this._scalability = null;
  }

  async _offer() {
    const pc = this.pc;
    if (!pc || pc.signalingState !== 'stable') return;
    await pc.setLocalDescription(await pc.createOffer());
    await waitGathering(pc);
    let reply;
    try {
      reply = await this.sig.request({ type: 'offer', sdp: pc.localDescription.sdp });
    } catch (e) {
      // A server offer crossed ours: roll back (polite), answer it, then offer again.
      if (pc.signalingState === 'have-local-offer') await pc.setLocalDescription({ type: 'rollback' });
      this._needOffer = true;
      throw e;
    }
    if (pc !== this.pc || pc.signalingState !== 'have-local-offer') return;
    await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
    if (this.senders.video) this._capBitrate(this.senders.video);
  }

  async _answer(sdp) {
    const pc = this.pc;
    if (!pc) return;
    if (pc.signalingState === 'have-local-offer') {
      await pc.setLocalDescription({ type: 'rollback' });
      this._needOffer = true;
    }
    await pc.setRemoteDescription({ type: 'offer', sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await waitGathering(pc);
    await this.sig.request({ type: 'answer', sdp: pc.localDescription.sdp });
    if (this._needOffer) { this._needOffer = false; this._enqueue(() => this._offer()); }
  }

  /** The signaling socket came back and the connection was kept: an offer of ours that the
   * dropped socket swallowed (rolled back, `_needOffer`) is made again now, not only after the
   * server's next offer. */
  resumed() {
    if (this._needOffer) { this._needOffer = false; this._enqueue(() => this._offer()); }
  }

  /** Switch camera or microphone without renegotiation. */
  async replaceTrack(kind, track) {
    const sender = this.senders[kind];
    if (sender) await sender.replaceTrack(track);
  }

  /**
   * The server's `publish_limit` (docs/signaling.md): someone receiving our camera has a link
   * too weak for more, so the encoder sends at most `kbps` (null: our own cap again).
   */
  async setVideoLimit(kbps) {
    this.videoLimit = kbps ? kbps * 1000 : null;
    if (this.senders.video) await this._capBitrate(this.senders.video);
  }

  /** Audio only: stop sending the camera (no bytes leave; the m-line stays) or send it again. */
  async setSendVideo(on) {
    this.sendVideo = on;
    const camera = this.localStream.getVideoTracks()[0] || null;
    await this.replaceTrack('video', on ? camera : null);
  }

  async startScreen(track) {
    return this._enqueue(async () => {
      if (!this.pc) return;
      if (this.screenTransceiver) {
        await this.screenTransceiver.sender.replaceTrack(track);
        this.screenTransceiver.direction = 'sendonly';
      } else {
        this.screenTransceiver = this.pc.addTransceiver(track, { direction: 'sendonly' });
      }
      await this._offer();
    });
  }

  async stopScreen() {
    return this._enqueue(async () => {
      if (!this.pc || !this.screenTransceiver) return;
      await this.screenTransceiver.sender.replaceTrack(null);
      this.screenTransceiver.direction = 'inactive';
      await this._offer();
    });
  }

  _startQuality() {
    clearInterval(this.qualityTimer);
    let prev = null;
    let lastArrival = Date.now();
    this.qualityTimer = setInterval(async () => {
      const pc = this.pc;
      if (!pc) return;
      let rtt = null; let lost = 0; let received = 0; let streams = 0;
      const freezes = new Map(); // video track id -> freezeCount
      try {
        const stats = await pc.getStats();
        stats.forEach((s) => {
          if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime != null) rtt = s.currentRoundTripTime * 1000;
          if (s.type === 'inbound-rtp') { lost += s.packetsLost || 0; received += s.packetsReceived || 0; streams += 1; }
          if (s.type === 'inbound-rtp' && s.kind === 'video' && s.trackIdentifier) freezes.set(s.trackIdentifier, s.freezeCount || 0);
        });
      } catch { return; }
      let lossPct = 0;
      const now = Date.now();
      if (prev) {
        const dl = lost - prev.lost; const dr = received - prev.received;
        lossPct = dl + dr > 0 ? (100 * Math.max(dl, 0)) / (Math.max(dl, 0) + dr) : 0;
        if (dr > 0) lastArrival = now;
      } else {
        lastArrival = now;
      }
      prev = { lost, received };
      this._tuneJitter(pc, { now, lossPct, rttMs: rtt, freezes });
      // Sampled every second: a link that went down shows "连接中断" within about 2 s.
      const quality = linkQuality({
        state: pc.connectionState, lossPct, rttMs: rtt, stalledMs: now - lastArrival, receiving: streams > 0,
      });
      this._emit('quality', { quality, rttMs: rtt, lossPct });
      if (quality !== this.lastQuality) {
        this.lastQuality = quality;
        if (quality !== 'unknown') this.sig.send({ type: 'presence', quality });
      }
    }, 1000);
  }

  /**
   * Give video streams that froze lately, or every one while our own link loses packets, time
   * for a retransmission before they play (`jitterTarget`); the browser's default otherwise.
   */
  _tuneJitter(pc, { now, lossPct, rttMs, freezes }) {
    if (lossPct >= 0.5) this._lossyUntil = now + JITTER_HOLD_MS;
    for (const [id, count] of freezes) {
      const seen = this._froze.get(id);
      const froze = seen && count > seen.count;
      this._froze.set(id, { count, until: froze ? now + JITTER_HOLD_MS : (seen ? seen.until : 0) });
    }
    for (const receiver of pc.getReceivers()) {
      const track = receiver.track;
      if (!track || track.kind !== 'video' || !('jitterBufferTarget' in receiver)) continue;
      const froze = this._froze.get(track.id);
      const target = jitterTarget({ now, lossyUntil: this._lossyUntil, frozeUntil: froze ? froze.until : 0, rttMs });
      if (receiver.jitterBufferTarget !== target) {
        try { receiver.jitterBufferTarget = target; } catch { /* out of range: leave it */ }
      }
    }
  }

  _closePc() {
    if (this.pc) { try { this.pc.close(); } catch {} }
    this.pc = null;
    clearTimeout(this._rampTimer);
    this.senders = {};
    this.screenTransceiver = null;
    this._froze = new Map();
    this._lossyUntil = 0;
    this._scalability = undefined; // a new connection's sender: set again once negotiated
  }

  close() {
    clearInterval(this.qualityTimer);
    this._closePc();
  }

  destroy() {
    this.close();
    this.sig.removeEventListener('offer', this._onServerOffer);
  }
}

// The browser's one RTCPeerConnection to the media server (aiortc SFU, VP8 + Opus).
// The browser offers its own tracks; the server renegotiates with offers of its own when other
// participants' tracks come and go, and the browser (the polite peer) answers them.
// Forwarded track ids are "<publisher peer id>.<kind>.<random>" (media/sfu.py).
//
// Events: track {peerId, kind, track, mid}, quality {quality, rttMs, lossPct},
//         connection {state}, failed {}

const MAX_VIDEO_BITRATE = 600_000;
const GATHER_TIMEOUT_MS = 2500;

function waitGathering(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(finish, GATHER_TIMEOUT_MS);
    function finish() { clearTimeout(t); pc.removeEventListener('icegatheringstatechange', check); resolve(); }
    function check() { if (pc.iceGatheringState === 'complete') finish(); }
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** The browser's own RTP header extension ids (uri → id) from an SDP. */
export function extmapIds(sdp) {
  const ids = new Map();
  for (const m of sdp.matchAll(/^a=extmap:(\d+)(?:\/\w+)? (\S+)/gm)) ids.set(m[2], Number(m[1]));
  return ids;
}

/**
 * aiortc 1.16 renumbers header extensions in its renegotiation offers (its defaults instead of
 * the ids already negotiated), which Chrome refuses ("RTP extension ID reassignment not
 * supported"). Rewrite the server's offer to the ids this browser uses; aiortc adopts the ids
 * of the answer, so both sides then agree. Unknown uris get ids that do not collide.
 */
export function fixExtmap(sdp, ids) {
  if (!ids || !ids.size) return sdp;
  const used = new Set(ids.values());
  const extra = new Map();
  let next = 1;
  const free = () => { while (used.has(next) || next === 15) next += 1; used.add(next); return next; };
  return sdp.replace(/^a=extmap:(\d+)((?:\/\w+)?) (\S+)(.*)$/gm, (line, id, dir, uri, rest) => {
    let nid = ids.get(uri);
    if (nid === undefined) { if (!extra.has(uri)) extra.set(uri, free()); nid = extra.get(uri); }
    return `a=extmap:${nid}${dir} ${uri}${rest}`;
  });
}

/** aiortc's fixed header extension ids (aiortc/codecs/__init__.py HEADER_EXTENSIONS). */
const SERVER_EXTMAP = new Map([
  ['urn:ietf:params:rtp-hdrext:sdes:mid', 1],
  ['urn:ietf:params:rtp-hdrext:ssrc-audio-level', 2],
  ['http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time', 3],
]);

/**
 * Offer only the header extensions the server knows, with the ids the server will use in its
 * own renegotiation offers: aiortc renumbers them there, and a mismatch both makes Chrome reject
 * the offer and crashes aiortc's RTP parser on the bundled transport.
 */
export function alignOfferExtmap(sdp) {
  return sdp.replace(/^a=extmap:(\d+)((?:\/\w+)?) (\S+)(.*)\r?\n/gm, (line, id, dir, uri, rest) => {
    const nid = SERVER_EXTMAP.get(uri);
    return nid === undefined ? '' : `a=extmap:${nid}${dir} ${uri}${rest}\r\n`;
  });
}

export function peerOfTrack(track) {
  const [peer] = String(track.id).split('.');
  return peer;
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
    this.screenTransceiver = null;
    this.qualityTimer = null;
    this.lastQuality = 'unknown';
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
      this.extIds = null;
      // Never a default configuration: the ICE servers come from the welcome (empty in tests).
      const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: 'max-bundle' });
      this.pc = pc;
      for (const track of this.localStream.getTracks()) {
        const tr = pc.addTransceiver(track, { direction: 'sendonly', streams: [this.localStream] });
        this.senders[track.kind] = tr.sender;
        if (track.kind === 'video') this._capBitrate(tr.sender);
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
    });
  }

  async _capBitrate(sender) {
    try {
      const p = sender.getParameters();
      if (!p.encodings || !p.encodings.length) p.encodings = [{}];
      p.encodings[0].maxBitrate = MAX_VIDEO_BITRATE;
      await sender.setParameters(p);
    } catch { /* not negotiated yet: applied on the next change */ }
  }

  async _offer() {
    const pc = this.pc;
    if (!pc || pc.signalingState !== 'stable') return;
    const created = await pc.createOffer();
    const offer = { type: 'offer', sdp: this.extIds ? created.sdp : alignOfferExtmap(created.sdp) };
    try {
      await pc.setLocalDescription(offer);
    } catch (e) {
      console.warn('munged offer refused, sending it unchanged', e);
      offer.sdp = created.sdp;
      await pc.setLocalDescription(created);
    }
    if (!this.extIds) this.extIds = extmapIds(offer.sdp);
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
    await pc.setRemoteDescription({ type: 'offer', sdp: fixExtmap(sdp, this.extIds) });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await waitGathering(pc);
    await this.sig.request({ type: 'answer', sdp: pc.localDescription.sdp });
    if (this._needOffer) { this._needOffer = false; this._enqueue(() => this._offer()); }
  }

  /** Switch camera or microphone without renegotiation. */
  async replaceTrack(kind, track) {
    const sender = this.senders[kind];
    if (sender) await sender.replaceTrack(track);
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
    this.qualityTimer = setInterval(async () => {
      const pc = this.pc;
      if (!pc) return;
      let rtt = null; let lost = 0; let received = 0;
      try {
        const stats = await pc.getStats();
        stats.forEach((s) => {
          if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime != null) rtt = s.currentRoundTripTime * 1000;
          if (s.type === 'inbound-rtp') { lost += s.packetsLost || 0; received += s.packetsReceived || 0; }
        });
      } catch { return; }
      let lossPct = 0;
      if (prev) {
        const dl = lost - prev.lost; const dr = received - prev.received;
        lossPct = dl + dr > 0 ? (100 * dl) / (dl + dr) : 0;
      }
      prev = { lost, received };
      let quality = 'good';
      if (pc.connectionState === 'failed' || pc.connectionState === 'disconnected') quality = 'lost';
      else if (pc.connectionState !== 'connected') quality = 'unknown';
      else if (lossPct > 8 || (rtt ?? 0) > 600) quality = 'poor';
      else if (lossPct > 2 || (rtt ?? 0) > 250) quality = 'fair';
      this._emit('quality', { quality, rttMs: rtt, lossPct });
      if (quality !== this.lastQuality) {
        this.lastQuality = quality;
        if (quality !== 'unknown') this.sig.send({ type: 'presence', quality });
      }
    }, 2000);
  }

  _closePc() {
    if (this.pc) { try { this.pc.close(); } catch {} }
    this.pc = null;
    this.senders = {};
    this.screenTransceiver = null;
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

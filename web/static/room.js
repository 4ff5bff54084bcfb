// The room UI shared by the community call, the reception desk, the mediation room and the
// resident's join page: video grid (2-8), active speaker, names with roles and sites, own
// mute/camera/screen, chat, the host's lobby panel and controls, recording consent and
// indicator, connection quality, and a visible reconnect state.
//
// The room's state lives in RoomModel (room-model.js, no DOM): it applies the signaling
// messages and emits change events. This file renders those events, owns the local devices
// and the media connection (media.js), and turns clicks into the model's actions.
import { Signaling } from './signaling.js';
import { MediaLink } from './media.js';
import { RoomModel, shownQuality } from './room-model.js';
import { openLocalMedia } from './prejoin.js';
import { t } from './i18n.js';

const $ = (root, sel) => root.querySelector(sel);
const el = (tag, attrs = {}, text = '') => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'role') e.setAttribute(k, v); else e[k] = v;
  }
  if (text) e.textContent = text;
  return e;
};

/** The final line for each way the room ends; any other code shows the server's message. */
const FINAL_TEXT = { denied: 'room.denied', removed: 'room.removed', ended: 'room.ended', left: 'room.left' };

function fmtWait(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

export class RoomUI {
  /**
   * @param {HTMLElement} root  the #room section (templates/_room.html)
   * @param {{roomId: string, token?: string, role?: string, localStream?: MediaStream}} opts
   */
  constructor(root, { roomId, token = null, role = null, localStream = null }) {
    this.root = root;
    this.sig = new Signaling({ roomId, token, role });
    this.model = new RoomModel(this.sig);
    this.localStream = localStream;
    this.media = null;
    this.streams = new Map(); // peer_id → the MediaStream of their camera tile
    this.screenTrack = null;
    this.grid = $(root, '.grid');
    this.banner = $(root, '.room-banner');
    this.waitText = $(root, '.room-wait').textContent;
    window.onedoorRoom = this; // tests and the page scripts read state from here
    this._subscribe();
    this._wire();
  }

  /** 'new' | 'lobby' | 'joined' | 'ended' (the model's). */
  get status() { return this.model.status; }

  // ------------------------------------------------------------------ lifecycle

  async start() {
    if (!this.localStream) this.localStream = await openLocalMedia();
    this._addTile('self', { display_name: t('room.me'), role: '', site_name: '' }, this.localStream, true);
    this._setBanner(t('room.connecting'), 'info');
    try {
      await this.sig.connect();
    } catch (e) {
      this.model.failed(e.code, e.message_zh || e.message);
    }
  }

  leave() { return this.model.leave(); }

  _startMedia() {
    if (this.media) this.media.destroy();
    this.media = new MediaLink(this.sig, this.model.iceServers, this.localStream);
    this.media.sendVideo = !this.model.audioOnly;
    this.media.addEventListener('track', (e) => this.model.trackReceived(e.detail.track));
    this.media.addEventListener('quality', (e) => this._quality('self', e.detail.quality));
    this.media.addEventListener('failed', () => {
      // ICE failed (network change): a fresh connection and offer.
      if (this.model.connection.state === 'joined' && this.model.status === 'joined') setTimeout(() => this._startMedia(), 1000);
    });
    this.media.start();
    this._tellSending();
  }

  /**
   * Tell the room whether we send any media at all: with no microphone and no camera (or audio
   * only and no microphone) the media server hears nothing from us on purpose, and our tile
   * should say so rather than 连接中断 (docs/signaling.md, `presence.sending`).
   */
  _tellSending() {
    const live = (tr) => !!tr && tr.readyState === 'live';
    const audio = this.localStream && this.localStream.getAudioTracks()[0];
    const video = this.localStream && this.localStream.getVideoTracks()[0];
    const sending = live(audio) || (live(video) && !this.model.audioOnly);
    this.model.setPresence({ sending }).catch(() => {});
  }

  _stopMedia() {
    if (this.media) this.media.destroy();
    this.media = null;
  }

  _final({ code, message_zh: messageZh }) {
    if (this.localStream) this.localStream.getTracks().forEach((tr) => tr.stop());
    if (this.screenTrack) this.screenTrack.stop();
    this.root.dataset.status = 'ended';
    this.root.dataset.final = code;
    const fin = $(this.root, '.room-final');
    fin.textContent = FINAL_TEXT[code] ? t(FINAL_TEXT[code]) : messageZh || t('room.closed');
    fin.hidden = false;
    $(this.root, '.room-wait').hidden = true;
    this._setBanner('', '');
    this.root.dispatchEvent(new CustomEvent('room-final', { detail: { code }, bubbles: true }));
  }

  _setBanner(text, kind) {
    this.banner.textContent = text;
    this.banner.dataset.kind = kind;
    this.banner.hidden = !text;
  }

  // ------------------------------------------------------------------ rendering the model

  _subscribe() {
    const m = this.model;
    const on = (type, fn) => m.addEventListener(type, (e) => fn(e.detail));
    on('connection', ({ state, attempt, reconnected }) => {
      this.root.dataset.conn = state;
      if (state === 'reconnecting') this._setBanner(t('room.reconnecting', { n: attempt }), 'warn');
      else if (state === 'joined') {
        if (reconnected) { this._setBanner(t('room.reconnected'), 'ok'); setTimeout(() => { if (m.connection.state === 'joined') this._setBanner('', ''); }, 2500); }
        else this._setBanner('', '');
      }
    });
    on('self', ({ peerId, role, permissions }) => {
      const can = new Set(permissions);
      this.root.dataset.role = role;
      this.root.dataset.peer = peerId;
      this.root.classList.toggle('can-moderate', can.has('moderate'));
      this.root.classList.toggle('can-admit', can.has('admit'));
      this.root.classList.toggle('can-record', can.has('record'));
      this.root.classList.toggle('can-screen', can.has('screen') && !!navigator.mediaDevices.getDisplayMedia);
      const selfTile = this.grid.querySelector('[data-peer=self]');
      if (selfTile) selfTile.dataset.me = peerId;
    });
    on('status', ({ status, paused, final }) => {
      if (status === 'ended') { this._final(final); return; }
      this.root.dataset.status = status;
      const wait = $(this.root, '.room-wait');
      wait.hidden = status !== 'lobby';
      wait.textContent = paused ? t('room.paused') : this.waitText;
    });
    on('media', ({ action }) => {
      if (action === 'stop') { this._stopMedia(); return; }
      const pcState = this.media && this.media.pc && this.media.pc.connectionState;
      if (action === 'start' || !this.media || ['failed', 'closed'].includes(pcState)) this._startMedia();
      else this.media.resumed();
    });
    on('participants', () => this._renderParticipants());
    on('lobby', ({ waiting }) => this._renderLobby(waiting));
    on('room', ({ room }) => this._roomInfo(room));
    on('recording', ({ active }) => this._recording(active));
    on('chat', ({ message, mine }) => this._chat(message, mine));
    on('consent_prompt', ({ prompt }) => {
      const d = $(this.root, '.consent-dialog');
      if (prompt && !d.open) d.showModal();
      else if (!prompt && d.open) d.close();
    });
    on('consent', (c) => this._consentState(c));
    on('track', (tr) => this._onTrack(tr));
    on('track_removed', ({ peerId, slot }) => {
      if (slot === 'screen') { this._removeTile(`${peerId}:screen`); return; }
      this.streams.delete(peerId);
      this._removeTile(peerId);
      this._removeTile(`${peerId}:screen`);
    });
    on('forced_mute', (f) => this._forced(f));
    on('video_paused', ({ peers }) => this._videoPaused(new Set(peers)));
    on('publish_limit', ({ maxKbps }) => { if (this.media) this.media.setVideoLimit(maxKbps).catch(() => {}); });
    on('audio_only', ({ on: audioOnly }) => {
      this.root.classList.toggle('audio-only', audioOnly);
      const b = $(this.root, '[data-act=audio-only]');
      if (b) { b.setAttribute('aria-pressed', String(audioOnly)); b.textContent = audioOnly ? t('room.audioonlyoff') : t('room.audioonly'); }
      if (this.media) { this.media.setSendVideo(!audioOnly).catch(() => {}); this._tellSending(); }
    });
    on('unmute_request', ({ kind }) => { if (kind === 'audio' && confirm(t('room.askunmute'))) this._setMic(true); });
    on('notice', ({ message_zh: text }) => this._toast(text || t('err.generic')));
  }

  // ------------------------------------------------------------------ user input

  _wire() {
    this.root.addEventListener('click', (e) => {
      const btn = e.target.closest('button[data-act]');
      if (!btn) return;
      this._action(btn.dataset.act, btn.dataset.peer, btn);
    });
    const form = $(this.root, '.chat-form');
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const input = form.querySelector('[name=text]');
      const text = input.value.trim();
      if (!text) return;
      this.model.sendChat(text).then(() => { input.value = ''; }).catch((err) => this._toast(err.message || t('err.generic')));
    });
    const dialog = $(this.root, '.consent-dialog');
    dialog.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-consent]');
      if (!b) return;
      this.model.answerConsent(b.dataset.consent === 'yes'); // the dialog closes on its event
    });
  }

  _action(act, peer, btn) {
    const m = this.model;
    switch (act) {
      case 'mic': this._setMic(!this._micOn()); break;
      case 'cam': this._setCam(!this._camOn()); break;
      case 'screen': this._toggleScreen(); break;
      case 'audio-only': m.setAudioOnly(!m.audioOnly); break;
      case 'leave': this.leave(); break;
      case 'lock': m.toggleLock(); break;
      // A booked session before its window: session_not_open, shown (nothing else changes).
      case 'end': if (confirm(btn.dataset.confirm || '')) m.endSession().catch((e) => this._toast(e.message || t('err.generic'))); break;
      case 'consent': m.requestConsent(); break;
      case 'rec-start': m.startRecording().catch((e) => this._toast(e.message)); break;
      case 'rec-stop': m.stopRecording(); break;
      case 'admit': m.admit(peer); break;
      case 'deny': m.deny(peer); break;
      case 'force-mute': m.toggleForceMute(peer); break;
      case 'remove': m.remove(peer); break;
      case 'unmute-audio': this.grid.querySelectorAll('video').forEach((v) => { if (v.dataset.self !== 'true') { v.muted = false; v.play().catch(() => {}); } }); btn.hidden = true; break;
      default: break;
    }
  }

  // ------------------------------------------------------------------ own devices

  _micOn() { const a = this.localStream && this.localStream.getAudioTracks()[0]; return !!(a && a.enabled); }
  _camOn() { const v = this.localStream && this.localStream.getVideoTracks()[0]; return !!(v && v.enabled); }

  _setMic(on) {
    this.localStream.getAudioTracks().forEach((tr) => { tr.enabled = on; });
    const b = $(this.root, '[data-act=mic]');
    b.setAttribute('aria-pressed', String(!on)); b.textContent = on ? t('room.mute') : t('room.unmute');
    this.model.setPresence({ muted_audio: !on });
  }

  _setCam(on) {
    this.localStream.getVideoTracks().forEach((tr) => { tr.enabled = on; });
    const b = $(this.root, '[data-act=cam]');
    b.setAttribute('aria-pressed', String(!on)); b.textContent = on ? t('room.camoff') : t('room.camon');
    this.model.setPresence({ muted_video: !on });
  }

  async _toggleScreen() {
    const b = $(this.root, '[data-act=screen]');
    if (this.screenTrack) {
      this.screenTrack.stop(); this.screenTrack = null;
      await this.media.stopScreen();
      b.textContent = t('room.screen'); b.setAttribute('aria-pressed', 'false');
      return;
    }
    try {
      const s = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 5 }, audio: false });
      this.screenTrack = s.getVideoTracks()[0];
      this.screenTrack.addEventListener('ended', () => { if (this.screenTrack) this._toggleScreen(); });
      await this.media.startScreen(this.screenTrack);
      b.textContent = t('room.screenstop'); b.setAttribute('aria-pressed', 'true');
    } catch { /* the user cancelled the picker */ }
  }

  _forced({ kind, muted }) {
    if (kind === 'audio' && muted) { this._setMic(false); this._toast(t('room.forced')); }
  }

  // ------------------------------------------------------------------ tiles

  /** A received track, placed by the model: the participant's camera tile, or their screen. */
  _onTrack({ peerId, kind, slot, track, participant }) {
    const info = participant || {};
    if (slot === 'screen') {
      this._addTile(`${peerId}:screen`, info, new MediaStream([track]), false, true);
      // Its tile goes when the share stops (the server mutes or ends the forwarded track).
      const gone = () => this.model.trackEnded(track);
      track.addEventListener('ended', gone);
      track.addEventListener('mute', gone);
      return;
    }
    let stream = this.streams.get(peerId);
    if (!stream) { stream = new MediaStream(); this.streams.set(peerId, stream); }
    stream.getTracks().filter((x) => x.kind === kind).forEach((x) => stream.removeTrack(x));
    stream.addTrack(track);
    this._addTile(peerId, info, stream, false);
  }

  _addTile(key, info, stream, self = false, screen = false) {
    let tile = this.grid.querySelector(`[data-peer="${CSS.escape(key)}"]`);
    if (!tile) {
      tile = el('figure', { class: `tile${self ? ' self' : ''}${screen ? ' screen' : ''}`, 'data-peer': key });
      const v = el('video', { autoplay: true, playsInline: true });
      v.setAttribute('playsinline', '');
      if (self) { v.muted = true; v.dataset.self = 'true'; }
      const cap = el('figcaption');
      cap.append(el('span', { class: 'tile-name' }), el('span', { class: 'tile-meta' }), el('span', { class: 'tile-icons' }), el('span', { class: 'q-dot', 'data-q': 'unknown', role: 'img' }));
      tile.append(v, cap);
      this.grid.append(tile);
    }
    const v = tile.querySelector('video');
    if (v.srcObject !== stream) v.srcObject = stream;
    const p = v.play();
    if (p && p.catch) {
      p.catch(() => {
        // Autoplay with sound blocked: play muted and offer a button to turn sound on.
        v.muted = true; v.play().catch(() => {});
        const b = $(this.root, '[data-act=unmute-audio]'); if (b) b.hidden = false;
      });
    }
    this._fillTile(tile, key, info);
    this._layout();
    if (!self) this._videoPaused(this.model.videoPaused);
  }

  _fillTile(tile, key, info) {
    const name = key === 'self' ? t('room.me') : (info.display_name || '');
    tile.querySelector('.tile-name').textContent = name;
    const role = info.role ? t(`role.${info.role}`) : '';
    tile.querySelector('.tile-meta').textContent = [role, info.site_name].filter(Boolean).join(' · ');
    tile.querySelector('.tile-icons').textContent = info.muted_audio || info.forced_audio ? `🔇 ${t('room.muted')}` : '';
    tile.classList.toggle('speaking', !!info.speaking);
    const q = shownQuality(info);
    const dot = tile.querySelector('.q-dot');
    dot.dataset.q = q; dot.title = t(`q.${q}`); dot.setAttribute('aria-label', t(`q.${q}`));
  }

  /** "视频已暂停（网络较差）" on the tiles (camera and screen) of the senders in `peers`. */
  _videoPaused(peers) {
    this.grid.querySelectorAll('.tile:not(.self)').forEach((tile) => {
      const paused = peers.has(tile.dataset.peer.replace(/:screen$/, ''));
      tile.classList.toggle('video-paused', paused);
      let note = tile.querySelector('.tile-paused');
      if (paused && !note) { note = el('p', { class: 'tile-paused', 'aria-live': 'polite' }, t('room.videopaused')); tile.append(note); }
      if (!paused && note) note.remove();
    });
  }

  _removeTile(key) {
    const tile = this.grid.querySelector(`[data-peer="${CSS.escape(key)}"]`);
    if (tile) { tile.querySelector('video').srcObject = null; tile.remove(); this._layout(); }
  }

  _layout() {
    const n = this.grid.children.length;
    this.grid.dataset.count = String(n);
    const cols = n <= 1 ? 1 : n <= 4 ? 2 : n <= 9 ? 3 : 4;
    this.grid.style.setProperty('--cols', String(cols));
  }

  _quality(key, q) {
    const tile = this.grid.querySelector(`[data-peer="${key}"] .q-dot`);
    if (tile) { tile.dataset.q = q; tile.title = t(`q.${q}`); tile.setAttribute('aria-label', t(`q.${q}`)); }
    const ind = $(this.root, '.my-quality');
    if (ind) { ind.dataset.q = q; ind.textContent = t(`q.${q}`); }
  }

  // ------------------------------------------------------------------ panels

  _renderParticipants() {
    const ul = $(this.root, '.participants');
    ul.innerHTML = '';
    const { me, participants } = this.model;
    const canModerate = this.model.can('moderate');
    for (const p of participants.values()) {
      const li = el('li', { 'data-peer': p.peer_id });
      const label = `${p.display_name}${p.peer_id === me ? `（${t('room.me')}）` : ''}`;
      li.append(el('span', { class: 'p-name' }, label), el('span', { class: 'p-meta' }, [t(`role.${p.role}`), p.site_name].filter(Boolean).join(' · ')));
      if (p.muted_audio || p.forced_audio) li.append(el('span', { class: 'tag' }, t('room.muted')));
      if (!p.connected) li.append(el('span', { class: 'tag warn' }, t('q.lost')));
      if (canModerate && p.peer_id !== me) {
        li.append(el('button', { type: 'button', 'data-act': 'force-mute', 'data-peer': p.peer_id, class: 'small' }, p.forced_audio ? t('room.unmute') : t('room.forcemute')));
        li.append(el('button', { type: 'button', 'data-act': 'remove', 'data-peer': p.peer_id, class: 'small danger' }, t('room.remove')));
      }
      ul.append(li);
      const tile = this.grid.querySelector(`[data-peer="${CSS.escape(p.peer_id)}"]`);
      if (tile) this._fillTile(tile, p.peer_id, p);
      if (p.peer_id === me) {
        const self = this.grid.querySelector('[data-peer=self]');
        if (self) { self.classList.toggle('speaking', !!p.speaking); self.querySelector('.tile-meta').textContent = [t(`role.${p.role}`), p.site_name].filter(Boolean).join(' · '); }
      }
    }
    $(this.root, '.p-count').textContent = String(participants.size);
  }

  _renderLobby(waiting) {
    const ul = $(this.root, '.lobby-list');
    ul.innerHTML = '';
    for (const w of waiting) {
      const li = el('li', { 'data-peer': w.peer_id });
      li.append(el('span', { class: 'p-name' }, w.display_name), el('span', { class: 'p-meta' }, [t(`role.${w.role}`), w.site_name, t('room.waiting', { s: fmtWait(w.waiting_since) })].filter(Boolean).join(' · ')));
      li.append(el('button', { type: 'button', 'data-act': 'admit', 'data-peer': w.peer_id, class: 'small primary' }, t('room.admit')));
      li.append(el('button', { type: 'button', 'data-act': 'deny', 'data-peer': w.peer_id, class: 'small' }, t('room.deny')));
      ul.append(li);
    }
    $(this.root, '.lobby-count').textContent = String(waiting.length);
    $(this.root, '.lobby-panel').classList.toggle('has-waiting', waiting.length > 0);
  }

  _roomInfo(room) {
    const b = $(this.root, '[data-act=lock]');
    if (b) { b.textContent = room.locked ? t('room.unlock') : t('room.lock'); b.setAttribute('aria-pressed', String(room.locked)); }
    this.root.dataset.locked = String(room.locked);
    this.root.dataset.recordingAllowed = String(room.recording_allowed);
  }

  _chat(m, mine) {
    const log = $(this.root, '.chat-log');
    const li = el('li', { class: mine ? 'mine' : '' });
    const timeZone = document.documentElement.dataset.tz || undefined; // the district's zone
    const time = new Date(m.at).toLocaleTimeString('zh-CN', { hour: '2-digit', minute: '2-digit', timeZone });
    li.append(el('b', {}, m.display_name), el('time', {}, time), el('p', {}, m.text));
    log.append(li);
    log.scrollTop = log.scrollHeight;
  }

  _consentState(s) {
    const out = $(this.root, '.consent-state');
    out.hidden = false;
    out.textContent = t('room.consent.state', { c: s.consented.length, r: s.refused.length, p: s.pending.length })
      + (s.minutesRequired ? ` ${t('room.consent.minutes')}` : '');
    out.dataset.pending = String(s.pending.length);
    out.dataset.refused = String(s.refused.length);
  }

  _recording(active) {
    $(this.root, '.rec-indicator').hidden = !active;
    this.root.dataset.recording = String(!!active);
  }

  _toast(text) {
    const box = $(this.root, '.room-toast');
    box.textContent = text; box.hidden = false;
    clearTimeout(this._toastTimer);
    this._toastTimer = setTimeout(() => { box.hidden = true; }, 5000);
  }
}

/** Mount from data attributes: <section id="room" data-room-id data-token data-role>. */
export function mountRoom(root, localStream = null) {
  const ui = new RoomUI(root, {
    roomId: root.dataset.roomId,
    token: root.dataset.token || null,
    role: root.dataset.joinRole || null,
    localStream,
  });
  root.hidden = false;
  ui.start();
  return ui;
}

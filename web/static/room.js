// The room UI shared by the community call, the reception desk, the mediation room and the
// resident's join page: video grid (2-8), active speaker, names with roles and sites, own
// mute/camera/screen, chat, the host's lobby panel and controls, recording consent and
// indicator, connection quality, and a visible reconnect state.
import { Signaling } from './signaling.js';
import { MediaLink } from './media.js';
import { openLocalMedia } from './prejoin.js';
import { t } from './i18n.js';

const $ = (root, sel) => root.querySelector(sel);
const el = (tag, attrs = {}, text = '') => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k.startsWith('data-') || k.startsWith('aria-')) e.setAttribute(k, v); else e[k] = v;
  }
  if (text) e.textContent = text;
  return e;
};

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
    this.localStream = localStream;
    this.media = null;
    this.me = null;
    this.permissions = new Set();
    this.participants = new Map(); // peer_id → info
    this.remote = new Map(); // peer_id → {stream, screen}
    this.iceServers = [];
    this.status = 'new';
    this.screenTrack = null;
    this.grid = $(root, '.grid');
    this.banner = $(root, '.room-banner');
    window.onedoorRoom = this; // tests and the page scripts read state from here
    this._wire();
  }

  // ------------------------------------------------------------------ lifecycle

  async start() {
    if (!this.localStream) this.localStream = await openLocalMedia();
    this._addTile('self', { display_name: t('room.me'), role: this.role || '', site_name: '' }, this.localStream, true);
    this._setBanner(t('room.connecting'), 'info');
    try {
      await this.sig.connect();
    } catch (e) {
      this._final(e.message_zh || e.message || t('room.closed'), e.code);
    }
  }

  async leave() {
    await this.sig.leave();
    this._final(t('room.left'), 'left');
  }

  _onWelcome(w) {
    this.me = w.peer_id;
    this.role = w.role;
    this.permissions = new Set(w.permissions);
    this.iceServers = w.ice_servers;
    this.root.dataset.role = w.role;
    this.root.dataset.peer = w.peer_id;
    this.root.classList.toggle('can-moderate', this.permissions.has('moderate'));
    this.root.classList.toggle('can-admit', this.permissions.has('admit'));
    this.root.classList.toggle('can-record', this.permissions.has('record'));
    this.root.classList.toggle('can-screen', this.permissions.has('screen') && !!navigator.mediaDevices.getDisplayMedia);
    const selfTile = this.grid.querySelector('[data-peer=self]');
    if (selfTile) selfTile.dataset.me = w.peer_id;
    this._roomInfo(w.room);
    this.participants.clear();
    for (const p of w.participants) this.participants.set(p.peer_id, p);
    this._renderParticipants();
    this._renderLobby(w.lobby || []);
    this._setStatus(w.status);
    if (w.status === 'joined') {
      // A resume keeps the media connection unless it is gone (new owner node, failed ICE).
      const pcState = this.media && this.media.pc && this.media.pc.connectionState;
      if (!this.media || w.media_reset || !w.resumed || ['failed', 'closed'].includes(pcState)) this._startMedia();
      else this.media.resumed();
    }
  }

  _setStatus(status) {
    this.status = status;
    this.root.dataset.status = status;
    $(this.root, '.room-wait').hidden = status !== 'lobby';
  }

  _startMedia() {
    if (this.media) this.media.destroy();
    this.media = new MediaLink(this.sig, this.iceServers, this.localStream);
    this.media.addEventListener('track', (e) => this._onTrack(e.detail));
    this.media.addEventListener('quality', (e) => this._quality('self', e.detail.quality));
    this.media.addEventListener('failed', () => {
      // ICE failed (network change): a fresh connection and offer.
      if (this.sig.state === 'joined' && this.status === 'joined') setTimeout(() => this._startMedia(), 1000);
    });
    this.media.start();
  }

  _stopMedia() {
    if (this.media) this.media.destroy();
    this.media = null;
    for (const peer of [...this.remote.keys()]) this._removeRemote(peer);
  }

  _final(text, code) {
    this._stopMedia();
    if (this.localStream) this.localStream.getTracks().forEach((tr) => tr.stop());
    if (this.screenTrack) this.screenTrack.stop();
    this.root.dataset.status = 'ended';
    this.root.dataset.final = code || 'closed';
    const fin = $(this.root, '.room-final');
    fin.textContent = text; fin.hidden = false;
    $(this.root, '.room-wait').hidden = true;
    this._setBanner('', '');
    this.root.dispatchEvent(new CustomEvent('room-final', { detail: { code }, bubbles: true }));
  }

  _setBanner(text, kind) {
    this.banner.textContent = text;
    this.banner.dataset.kind = kind;
    this.banner.hidden = !text;
  }

  // ------------------------------------------------------------------ wiring

  _wire() {
    const s = this.sig;
    s.addEventListener('state', (e) => {
      const d = e.detail;
      this.root.dataset.conn = d.state;
      if (d.state === 'reconnecting') this._setBanner(t('room.reconnecting', { n: d.attempt }), 'warn');
      else if (d.state === 'joined') {
        if (d.reconnected) { this._setBanner(t('room.reconnected'), 'ok'); setTimeout(() => { if (this.sig.state === 'joined') this._setBanner('', ''); }, 2500); }
        else this._setBanner('', '');
      } else if (d.state === 'closed' && !this.root.dataset.final) this._final(d.message_zh || t('room.closed'), String(d.reason));
    });
    s.addEventListener('welcome', (e) => this._onWelcome(e.detail));
    s.addEventListener('admitted', (e) => {
      this.participants.clear();
      for (const p of e.detail.participants) this.participants.set(p.peer_id, p);
      this._renderParticipants();
      this._setStatus('joined');
      this._startMedia();
    });
    s.addEventListener('paused', () => { this._stopMedia(); this._setStatus('lobby'); $(this.root, '.room-wait').textContent = t('room.paused'); });
    s.addEventListener('denied', () => this._final(t('room.denied'), 'denied'));
    s.addEventListener('removed', () => this._final(t('room.removed'), 'removed'));
    s.addEventListener('session_ended', () => this._final(t('room.ended'), 'ended'));
    s.addEventListener('participant_joined', (e) => { this.participants.set(e.detail.participant.peer_id, e.detail.participant); this._renderParticipants(); });
    s.addEventListener('participant_update', (e) => { this.participants.set(e.detail.participant.peer_id, e.detail.participant); this._renderParticipants(); });
    s.addEventListener('participant_left', (e) => { this.participants.delete(e.detail.peer_id); this._removeRemote(e.detail.peer_id); this._renderParticipants(); });
    s.addEventListener('lobby_update', (e) => this._renderLobby(e.detail.waiting));
    s.addEventListener('room_update', (e) => this._roomInfo(e.detail.room));
    s.addEventListener('chat_message', (e) => this._chat(e.detail));
    s.addEventListener('consent_request', () => this._askConsent());
    s.addEventListener('consent_state', (e) => this._consentState(e.detail));
    s.addEventListener('recording_state', (e) => this._recording(e.detail.active));
    s.addEventListener('forced_mute', (e) => this._forced(e.detail));
    s.addEventListener('unmute_request', (e) => {
      if (e.detail.kind === 'audio' && confirm(t('room.askunmute'))) this._setMic(true);
    });
    s.addEventListener('error', (e) => { if (!e.detail.re) this._toast(e.detail.message_zh || t('err.generic')); });

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
      this.sig.request({ type: 'chat', text }).then(() => { input.value = ''; }).catch((err) => this._toast(err.message || t('err.generic')));
    });
    const dialog = $(this.root, '.consent-dialog');
    dialog.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-consent]');
      if (!b) return;
      this.sig.send({ type: 'recording_consent', consent: b.dataset.consent === 'yes' });
      dialog.close();
    });
  }

  _action(act, peer, btn) {
    const s = this.sig;
    switch (act) {
      case 'mic': this._setMic(!this._micOn()); break;
      case 'cam': this._setCam(!this._camOn()); break;
      case 'screen': this._toggleScreen(); break;
      case 'leave': this.leave(); break;
      case 'lock': s.send({ type: 'lock', locked: !this.locked }); break;
      case 'end': if (confirm(btn.dataset.confirm || '')) s.send({ type: 'end_session' }); break;
      case 'consent': s.send({ type: 'request_consent' }); break;
      case 'rec-start': s.request({ type: 'recording_start' }).catch((e) => this._toast(e.message)); break;
      case 'rec-stop': s.send({ type: 'recording_stop' }); break;
      case 'admit': s.send({ type: 'admit', peer_id: peer }); break;
      case 'deny': s.send({ type: 'deny', peer_id: peer }); break;
      case 'force-mute': {
        const p = this.participants.get(peer);
        s.send({ type: 'force_mute', peer_id: peer, kind: 'audio', muted: !(p && p.forced_audio) });
        break;
      }
      case 'remove': s.send({ type: 'remove', peer_id: peer }); break;
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
    this.sig.send({ type: 'presence', muted_audio: !on });
  }

  _setCam(on) {
    this.localStream.getVideoTracks().forEach((tr) => { tr.enabled = on; });
    const b = $(this.root, '[data-act=cam]');
    b.setAttribute('aria-pressed', String(!on)); b.textContent = on ? t('room.camoff') : t('room.camon');
    this.sig.send({ type: 'presence', muted_video: !on });
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

  _onTrack({ peerId, kind, track }) {
    let r = this.remote.get(peerId);
    if (!r) { r = { stream: new MediaStream(), screen: null }; this.remote.set(peerId, r); }
    if (kind === 'video' && r.stream.getVideoTracks().some((v) => v.readyState === 'live' && v.id !== track.id)) {
      // A second video track from the same participant: the screen share, in its own tile.
      r.screen = new MediaStream([track]);
      this._addTile(`${peerId}:screen`, this.participants.get(peerId) || {}, r.screen, false, true);
      track.addEventListener('ended', () => this._removeTile(`${peerId}:screen`));
      track.addEventListener('mute', () => this._removeTile(`${peerId}:screen`));
      return;
    }
    r.stream.getTracks().filter((x) => x.kind === kind).forEach((x) => r.stream.removeTrack(x));
    r.stream.addTrack(track);
    this._addTile(peerId, this.participants.get(peerId) || {}, r.stream, false);
  }

  _removeRemote(peerId) {
    this.remote.delete(peerId);
    this._removeTile(peerId);
    this._removeTile(`${peerId}:screen`);
  }

  _addTile(key, info, stream, self = false, screen = false) {
    let tile = this.grid.querySelector(`[data-peer="${CSS.escape(key)}"]`);
    if (!tile) {
      tile = el('figure', { class: `tile${self ? ' self' : ''}${screen ? ' screen' : ''}`, 'data-peer': key });
      const v = el('video', { autoplay: true, playsInline: true });
      v.setAttribute('playsinline', '');
      if (self) { v.muted = true; v.dataset.self = 'true'; }
      const cap = el('figcaption');
      cap.append(el('span', { class: 'tile-name' }), el('span', { class: 'tile-meta' }), el('span', { class: 'tile-icons' }), el('span', { class: 'q-dot', 'data-q': 'unknown' }));
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
  }

  _fillTile(tile, key, info) {
    const name = key === 'self' ? t('room.me') : (info.display_name || '');
    tile.querySelector('.tile-name').textContent = name;
    const role = info.role ? t(`role.${info.role}`) : '';
    tile.querySelector('.tile-meta').textContent = [role, info.site_name].filter(Boolean).join(' · ');
    tile.querySelector('.tile-icons').textContent = info.muted_audio || info.forced_audio ? `🔇 ${t('room.muted')}` : '';
    tile.classList.toggle('speaking', !!info.speaking);
    const q = info.quality || 'unknown';
    const dot = tile.querySelector('.q-dot');
    dot.dataset.q = q; dot.title = t(`q.${q}`); dot.setAttribute('aria-label', t(`q.${q}`));
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
    const canModerate = this.permissions.has('moderate');
    for (const p of this.participants.values()) {
      const li = el('li', { 'data-peer': p.peer_id });
      const label = `${p.display_name}${p.peer_id === this.me ? `（${t('room.me')}）` : ''}`;
      li.append(el('span', { class: 'p-name' }, label), el('span', { class: 'p-meta' }, [t(`role.${p.role}`), p.site_name].filter(Boolean).join(' · ')));
      if (p.muted_audio || p.forced_audio) li.append(el('span', { class: 'tag' }, t('room.muted')));
      if (!p.connected) li.append(el('span', { class: 'tag warn' }, t('q.lost')));
      if (canModerate && p.peer_id !== this.me) {
        li.append(el('button', { type: 'button', 'data-act': 'force-mute', 'data-peer': p.peer_id, class: 'small' }, p.forced_audio ? t('room.unmute') : t('room.forcemute')));
        li.append(el('button', { type: 'button', 'data-act': 'remove', 'data-peer': p.peer_id, class: 'small danger' }, t('room.remove')));
      }
      ul.append(li);
      const tile = this.grid.querySelector(`[data-peer="${CSS.escape(p.peer_id)}"]`);
      if (tile) this._fillTile(tile, p.peer_id, p);
      if (p.peer_id === this.me) {
        const self = this.grid.querySelector('[data-peer=self]');
        if (self) { self.classList.toggle('speaking', !!p.speaking); self.querySelector('.tile-meta').textContent = [t(`role.${p.role}`), p.site_name].filter(Boolean).join(' · '); }
      }
    }
    $(this.root, '.p-count').textContent = String(this.participants.size);
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
    this.locked = room.locked;
    const b = $(this.root, '[data-act=lock]');
    if (b) { b.textContent = room.locked ? t('room.unlock') : t('room.lock'); b.setAttribute('aria-pressed', String(room.locked)); }
    this.root.dataset.locked = String(room.locked);
    this.root.dataset.recordingAllowed = String(room.recording_allowed);
    this._recording(room.recording);
  }

  _chat(m) {
    const log = $(this.root, '.chat-log');
    const li = el('li', { class: m.from_peer === this.me ? 'mine' : '' });
    const timeZone = document.documentElement.dataset.tz || undefined; // the district's zone
    const time = new Date(m.at).toLocaleTimeString('zh-CN', { hour: '2-digit', minute: '2-digit', timeZone });
    li.append(el('b', {}, m.display_name), el('time', {}, time), el('p', {}, m.text));
    log.append(li);
    log.scrollTop = log.scrollHeight;
  }

  _askConsent() {
    const d = $(this.root, '.consent-dialog');
    if (!d.open) d.showModal();
  }

  _consentState(s) {
    const out = $(this.root, '.consent-state');
    out.hidden = false;
    out.textContent = t('room.consent.state', { c: s.consented.length, r: s.refused.length, p: s.pending.length })
      + (s.minutes_required ? ` ${t('room.consent.minutes')}` : '');
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

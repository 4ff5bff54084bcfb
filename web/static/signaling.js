// onedoor.v1 signaling client (docs: signaling/protocol.py): join or resume a room over
// `GET /ws`, request/response by message id, automatic reconnect with the resume token.
//
// Events (CustomEvent, detail = the server message unless noted):
//   state      detail: {state: 'connecting'|'joined'|'reconnecting'|'closed', attempt, reason}
//   message    every server message (after the built-in handling below)
//   <type>     one event per server message type, e.g. 'participant_joined', 'offer'

export const PROTOCOL = 'onedoor.v1';
const FINAL_CLOSE_CODES = new Set([4403, 4404, 4409, 4410]); // denied, removed, replaced, ended
const RESUME_FALLBACK_CODES = new Set(['token_expired', 'token_invalid', 'resume_failed',
  'peer_not_found', 'not_authenticated']);

export function wsUrl(path = '/ws') {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}${path}`;
}

/** Measure one WebSocket round trip (hello → ping → pong). Resolves {ok, rttMs} within timeoutMs. */
export function networkCheck(timeoutMs = 5000) {
  return new Promise((resolve) => {
    let ws;
    const done = (result) => { clearTimeout(timer); try { ws && ws.close(); } catch {} resolve(result); };
    const timer = setTimeout(() => done({ ok: false, reason: 'timeout' }), timeoutMs);
    try { ws = new WebSocket(wsUrl(), PROTOCOL); } catch (e) { done({ ok: false, reason: 'error' }); return; }
    let sentAt = 0;
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === 'hello') { sentAt = performance.now(); ws.send(JSON.stringify({ type: 'ping', id: 'nc' })); }
      else if (msg.type === 'pong') done({ ok: true, rttMs: Math.round(performance.now() - sentAt) });
    };
    ws.onerror = () => done({ ok: false, reason: 'error' });
    ws.onclose = () => done({ ok: false, reason: 'closed' });
  });
}

export class Signaling extends EventTarget {
  /** @param {{roomId: string, token?: string|null, role?: string|null}} opts */
  constructor({ roomId, token = null, role = null }) {
    super();
    this.roomId = roomId;
    this.token = token;
    this.role = role;
    this.ws = null;
    this.seq = 0;
    this.pending = new Map(); // id → {resolve, reject, timer}
    this.resumeToken = null;
    this.welcome = null;
    this.state = 'new';
    this.attempt = 0;
    this.final = false;
    this.pingTimer = null;
    this.lastPong = 0;
  }

  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit('state', { state, attempt: this.attempt, ...extra });
  }

  /** Connect and join (or resume); resolves with the first welcome. */
  connect() {
    return new Promise((resolve, reject) => {
      this._firstWelcome = { resolve, reject };
      this._open();
    });
  }

  _open() {
    this._setState(this.attempt ? 'reconnecting' : 'connecting');
    let ws;
    try { ws = new WebSocket(wsUrl(), PROTOCOL); } catch (e) { this._scheduleReconnect(); return; }
    this.ws = ws;
    ws.onmessage = (ev) => { if (ws === this.ws) this._onMessage(ev.data); };
    ws.onclose = (ev) => { if (ws === this.ws) this._onClose(ev); };
    ws.onerror = () => {};
  }

  _sendRaw(obj) {
    if (window.ONEDOOR_DEBUG) console.debug('sig>', JSON.stringify(obj).slice(0, 160));
    if (this.ws && this.ws.readyState === WebSocket.OPEN) { this.ws.send(JSON.stringify(obj)); return true; }
    return false;
  }

  /** Send a client message; resolves with its ack/answer/welcome, rejects with the typed error. */
  request(msg, timeoutMs = 15000) {
    const id = String(++this.seq);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(Object.assign(new Error('timeout'), { code: 'timeout' })); }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, type: msg.type });
      if (!this._sendRaw({ ...msg, id })) {
        clearTimeout(timer); this.pending.delete(id);
        reject(Object.assign(new Error('not connected'), { code: 'not_connected' }));
      }
    });
  }

  /** Fire and forget (errors still arrive as 'error' events). */
  send(msg) { return this.request(msg).catch((e) => { this._emit('request_failed', { msg, error: e }); }); }

  _settle(re, ok, value) {
    const p = this.pending.get(re);
    if (!p) return false;
    clearTimeout(p.timer); this.pending.delete(re);
    ok ? p.resolve(value) : p.reject(Object.assign(new Error(value.message_zh || value.message), value));
    return true;
  }

  _joinMessage() {
    if (this.resumeToken) return { type: 'resume', resume_token: this.resumeToken };
    const m = { type: 'join', room_id: this.roomId };
    if (this.token) m.token = this.token;
    if (this.role) m.role = this.role;
    return m;
  }

  _onMessage(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return; }
    if (window.ONEDOOR_DEBUG) console.debug('sig<', text.slice(0, 160));
    // welcome and admitted carry the current resume token: it records where we are (lobby or
    // joined), so a resume after a server restart puts us back in the room, not in the lobby.
    if (msg.resume_token) this.resumeToken = msg.resume_token;
    switch (msg.type) {
      case 'hello': {
        const join = this._joinMessage();
        const id = `j${++this.seq}`;
        this._joinId = id;
        this._sendRaw({ ...join, id });
        this._startPing(msg.heartbeat_s || 20);
        break;
      }
      case 'welcome': {
        this.welcome = msg;
        this.resumeToken = msg.resume_token;
        const reconnected = this.attempt > 0;
        this.attempt = 0;
        this._setState('joined', { reconnected, resumed: msg.resumed });
        if (this._firstWelcome) { this._firstWelcome.resolve(msg); this._firstWelcome = null; }
        break;
      }
      case 'ack': case 'answer': case 'pong':
        this.lastPong = performance.now();
        if (msg.re) this._settle(msg.re, true, msg);
        break;
      case 'error':
        if (msg.re && msg.re === this._joinId) {
          if (this.resumeToken && RESUME_FALLBACK_CODES.has(msg.code)) {
            // The resume token no longer works (e.g. the grace period ended): join afresh.
            this.resumeToken = null;
            const id = `j${++this.seq}`; this._joinId = id;
            this._sendRaw({ ...this._joinMessage(), id });
            return;
          }
          this.final = true;
          if (this._firstWelcome) { this._firstWelcome.reject(Object.assign(new Error(msg.message_zh), msg)); this._firstWelcome = null; }
          this._setState('closed', { reason: msg.code, message_zh: msg.message_zh });
          try { this.ws.close(); } catch {}
        } else if (msg.re) {
          this._settle(msg.re, false, msg);
        }
        break;
      case 'denied': case 'removed': case 'session_ended':
        this.final = true;
        break;
      default: break;
    }
    this._emit(msg.type, msg);
    this._emit('message', msg);
  }

  _startPing(heartbeatS) {
    clearInterval(this.pingTimer);
    this.lastPong = performance.now();
    const every = Math.min(10, Math.max(3, heartbeatS / 2)) * 1000;
    this.pingTimer = setInterval(() => {
      if (performance.now() - this.lastPong > every * 2.5) {
        // No answer for a while: the network or the server is gone. Reconnect now.
        try { this.ws.close(); } catch {}
        this._onClose({ code: 1006, reason: 'ping timeout' });
        return;
      }
      this.request({ type: 'ping' }, every).catch(() => {});
    }, every);
  }

  _onClose(ev) {
    if (this.ws && this.ws._handled) return;
    if (this.ws) { this.ws._handled = true; this.ws.onclose = null; this.ws.onmessage = null; }
    clearInterval(this.pingTimer);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(Object.assign(new Error('connection lost'), { code: 'connection_lost' }));
    }
    this.pending.clear();
    if (this.final || FINAL_CLOSE_CODES.has(ev.code)) {
      this.final = true;
      this._setState('closed', { reason: ev.code });
      return;
    }
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    this.attempt += 1;
    this._setState('reconnecting');
    const delay = Math.min(8000, 500 * 2 ** Math.min(this.attempt - 1, 4)) * (0.8 + Math.random() * 0.4);
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = setTimeout(() => this._open(), delay);
  }

  /** Leave on purpose: no reconnect. */
  async leave() {
    this.final = true;
    try { await this.request({ type: 'leave' }, 2000); } catch {}
    try { this.ws && this.ws.close(1000, 'bye'); } catch {}
    clearInterval(this.pingTimer);
    this._setState('closed', { reason: 'left' });
  }
}
